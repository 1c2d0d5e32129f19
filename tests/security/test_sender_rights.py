"""Sender rights: every ticket action (upsert, delete, reconcile) passes the policy's organization and
ticket-source checks, on the config it sends and on the config stored under the id it names.

Each test goes through the `requests` trigger as the host runs it and asserts the end state: the
request recorded as rejected with the rule, the message completed, the desired state untouched and
nothing written to the clouds."""

from __future__ import annotations

import pytest
import yaml

from reconciler.core.policy import parse_policy
from reconciler.core.validation import Document
from reconciler.state.requests import RequestRecord
from tests.security.conftest import Host, config, ticket

CONTOSO_ID = "contoso/payments/kv-reader"


async def recorded(host: Host, request_id: str) -> RequestRecord:
    record: RequestRecord | None = await (await host.service()).request(request_id)
    assert record is not None, f"request {request_id} was not recorded"
    return record


async def applied_contoso_config(host: Host) -> None:
    """ServiceNow may manage contoso: its upsert is accepted and reconciled into the clouds."""
    await host.deliver(ticket("CHG-1", config=config(host.sim.tenant_id)))
    assert (await recorded(host, "CHG-1")).outcome == "accepted"
    assert await host.deliver_reconciles() == 1
    assert (await recorded(host, "CHG-1")).outcome == "applied"


async def assert_refused(host: Host, request_id: str, rule: str, clouds_before: object) -> None:
    record = await recorded(host, request_id)
    assert record.outcome == "rejected" and f"[{rule}]" in record.reason, record.reason
    assert host.settled()
    assert await host.deliver_reconciles() == 0
    assert await host.cloud_state() == clouds_before


@pytest.mark.parametrize("action", ["delete", "reconcile"])
async def test_a_source_cannot_act_on_a_config_outside_its_projects(host: Host, action: str) -> None:
    await applied_contoso_config(host)
    before = await host.cloud_state()
    await host.deliver(ticket("JIRA-1", action, source="jira", configId=CONTOSO_ID))
    await assert_refused(host, "JIRA-1", "source-not-allowed", before)
    stored = await (await host.service())._stores.configs.get(CONTOSO_ID)
    assert stored is not None and not stored.deleted and stored.generation == 1


@pytest.mark.parametrize("source", [None, "unknown-system"])
async def test_a_ticket_without_a_listed_source_is_refused_when_the_policy_lists_sources(
    host: Host, source: str | None
) -> None:
    await applied_contoso_config(host)
    before = await host.cloud_state()
    await host.deliver(ticket("ANON-1", "delete", source=source, configId=CONTOSO_ID))
    await assert_refused(host, "ANON-1", "source-not-allowed", before)
    await host.deliver(ticket("ANON-2", source=source, config=config(host.sim.tenant_id, name="other")))
    await assert_refused(host, "ANON-2", "source-not-allowed", before)


async def test_an_upsert_cannot_take_over_another_projects_config_by_its_explicit_id(host: Host) -> None:
    await applied_contoso_config(host)
    before = await host.cloud_state()
    hijack = config(host.sim.tenant_id, organization="fabrikam", project="storefront", id=CONTOSO_ID)
    await host.deliver(ticket("JIRA-2", source="jira", config=hijack))
    record = await recorded(host, "JIRA-2")
    assert record.outcome == "rejected" and "outside the sender's rights" in record.reason, record.reason
    await assert_refused(host, "JIRA-2", "source-not-allowed", before)
    stored = await (await host.service())._stores.configs.get(CONTOSO_ID)
    assert stored is not None and stored.config.organization == "contoso" and stored.generation == 1


async def test_a_source_manages_exactly_its_projects(host: Host) -> None:
    web = config(host.sim.tenant_id, organization="fabrikam", project="storefront")
    await host.deliver(ticket("JIRA-3", source="jira", config=web))
    assert (await recorded(host, "JIRA-3")).outcome == "accepted"
    api = config(host.sim.tenant_id, organization="fabrikam", project="api")
    await host.deliver(ticket("JIRA-4", source="jira", config=api))
    record = await recorded(host, "JIRA-4")
    assert record.outcome == "rejected" and "may not manage project 'fabrikam/api'" in record.reason
    await host.deliver(ticket("JIRA-5", "delete", source="jira", configId="fabrikam/storefront/kv-reader"))
    assert (await recorded(host, "JIRA-5")).outcome == "accepted"
    assert host.settled()


async def test_delete_and_reconcile_pass_the_organization_allow_list(
    host: Host, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A delete used to skip it: once contoso leaves the policy, no ticket touches its configs."""
    await applied_contoso_config(host)
    before = await host.cloud_state()
    await host.use_policy(
        "apiVersion: wif-reconciler/v1\nkind: GrantPolicy\norganizations: [fabrikam]\n"
        "roles: [Key Vault Reader]\nscopes: [/subscriptions/*/resourceGroups/*]\n",
        monkeypatch,
    )
    for n, action in enumerate(["delete", "reconcile"]):
        await host.deliver(ticket(f"ORG-{n}", action, configId=CONTOSO_ID))
        await assert_refused(host, f"ORG-{n}", "organization-not-allowed", before)
    stored = await (await host.service())._stores.configs.get(CONTOSO_ID)
    assert stored is not None and not stored.deleted


@pytest.mark.parametrize(
    ("sources", "problem"),
    [
        ("[]", "non-empty list"),
        ("[{name: Jira, organizations: [contoso]}]", "lower-case"),
        ("[{name: jira}]", "may manage nothing"),
        ("[{name: jira, projects: [web]}]", "expected 'organization/project'"),
        ("[{name: jira, organizations: [evilcorp]}]", "organization 'evilcorp' is not in the policy"),
        ("[{name: jira, organizations: [contoso]}, {name: jira, projects: [contoso/x]}]", "listed twice"),
        ("[{name: jira, organizations: [contoso], queues: [x]}]", "expected a mapping"),
    ],
)
def test_ticket_sources_that_make_no_sense_are_policy_errors(sources: str, problem: str) -> None:
    text = (
        "apiVersion: wif-reconciler/v1\nkind: GrantPolicy\norganizations: [contoso]\n"
        f"roles: [Reader]\nscopes: [/subscriptions/*]\nticketSources: {sources}\n"
    )
    policy, problems = parse_policy(Document("policy.yaml", 1, yaml.safe_load(text)))
    assert policy is None and any(problem in str(p) for p in problems), problems

"""Each kind of drift, injected into the simulator after a converged apply: one apply repairs it,
and the plan after that is empty."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from cloudsim.state import FederatedCredential, ProjectReference, ServiceEndpoint, new_id
from reconciler.core.model import TOKEN_EXCHANGE_AUDIENCE as AUDIENCE
from reconciler.core.model import FederationConfig, PipelineAccess
from reconciler.engine.run import RunReport, Status
from tests.engine.conftest import Tenant
from tests.simulator.test_ado_sdk import b64url_guid


@dataclass
class Converged:
    tenant: Tenant
    config: FederationConfig
    app: dict[str, Any]

    def endpoint(self) -> ServiceEndpoint:
        org = self.tenant.sim.world.organization(self.config.organization)
        assert org is not None
        return next(e for e in org.endpoints if e.name == self.config.connection_name)

    def credentials(self) -> list[Any]:
        app = self.tenant.sim.world.application_by_app_id(self.app["appId"])
        assert app is not None
        return list(app.federated_credentials)

    def assignments(self) -> list[Any]:
        principal = self.app["servicePrincipalId"]
        return [ra for ra in self.tenant.sim.world.role_assignments if ra.principal_id == principal]


@pytest.fixture
async def converged(tenant: Tenant) -> Converged:
    app = await tenant.app("sc-payments-kv-reader")
    config = tenant.config("kv-reader", app["appId"])
    report = await tenant.run([config])
    assert report.all_converged, report.outcomes
    return Converged(tenant, config, app)


async def repair_and_check(state: Converged) -> RunReport:
    report = await state.tenant.run([state.config], pipelines=True)
    assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
    await state.tenant.sim.admin.reset_counters()
    after = await state.tenant.run([state.config], dry_run=True, pipelines=True)
    assert after.plan.is_empty, [f"{a.kind}: {a.drift}" for a in after.plan.actions]
    assert await state.tenant.writes() == 0
    return report


def kinds(report: RunReport) -> list[str]:
    return [str(a.kind) for a in report.plan.actions]


async def delete_credential(state: Converged) -> None:
    await state.tenant.sim.admin.delete_fic(state.app["appId"], state.config.credential_name)


async def change_subject(state: Converged) -> None:
    await state.tenant.sim.admin.change_fic(
        state.app["appId"], state.config.credential_name, subject="sc://x/y/z"
    )


async def change_issuer(state: Converged) -> None:
    await state.tenant.sim.admin.change_fic(
        state.app["appId"], state.config.credential_name, issuer="https://vstoken.dev.azure.com/0000"
    )


async def delete_role_assignment(state: Converged) -> None:
    (assignment,) = state.assignments()
    await state.tenant.sim.admin.delete_role_assignment(assignment.id)


async def recreate_connection(state: Converged) -> None:
    await state.tenant.sim.admin.recreate_connection(state.config.organization, state.endpoint().id)


async def point_connection_elsewhere(state: Converged) -> None:
    other = await state.tenant.app("someone-else")
    state.endpoint().parameters["serviceprincipalid"] = other["appId"]  # someone edited it in the portal


async def remove_pipeline_permission(state: Converged) -> None:
    state.endpoint().pipeline_permissions = {"allPipelines": None, "pipelines": []}


DRIFTS: dict[str, tuple[Callable[[Converged], Awaitable[None]], list[str]]] = {
    "credential deleted": (delete_credential, ["create-credential"]),
    "credential with a wrong subject": (change_subject, ["update-credential"]),
    "credential with a wrong issuer": (change_issuer, ["update-credential"]),
    "role assignment missing": (delete_role_assignment, ["create-role-assignment"]),
    # A recreated connection has a new id (so a new subject) and no pipeline permissions.
    "connection recreated with a new id": (recreate_connection, ["update-credential", "authorize-pipelines"]),
    "connection pointing at another app": (point_connection_elsewhere, ["update-connection"]),
    "pipeline permission missing": (remove_pipeline_permission, ["authorize-pipelines"]),
}


@pytest.mark.parametrize("drift", list(DRIFTS), ids=list(DRIFTS))
async def test_one_apply_repairs_the_drift(converged: Converged, drift: str) -> None:
    inject, expected = DRIFTS[drift]
    await inject(converged)
    report = await repair_and_check(converged)
    assert kinds(report) == expected


async def test_missing_connection_is_created_then_its_credential_from_the_returned_subject(
    tenant: Tenant,
) -> None:
    app = await tenant.app("sc-payments-kv-reader")
    config = tenant.config("kv-reader", app["appId"])
    report = await tenant.run([config])
    assert kinds(report) == [
        "create-connection",
        "create-credential",
        "create-role-assignment",
        "authorize-pipelines",
    ]
    state = Converged(tenant, config, app)
    endpoint = state.endpoint()
    (credential,) = state.credentials()
    assert credential.subject == endpoint.parameters.get(
        "workloadIdentityFederationSubject"
    ) or credential.subject.endswith(endpoint.id)
    assert endpoint.data["creationMode"] == "Manual"
    (assignment,) = state.assignments()
    assert assignment.principal_type == "ServicePrincipal"
    await repair_and_check(state)


async def test_secret_based_connection_is_converted_in_place(converged: Converged) -> None:
    before = converged.endpoint().id
    await converged.tenant.sim.admin.convert_connection_to_secret(converged.config.organization, before)
    report = await repair_and_check(converged)
    # The credential it already has trusts what the connection will present again: ADO converts.
    assert kinds(report) == ["convert-connection"]
    assert converged.endpoint().id == before
    assert converged.endpoint().scheme == "WorkloadIdentityFederation"


def add_manual_secret_connection(tenant: Tenant, config: FederationConfig, app_id: str) -> ServiceEndpoint:
    """A connection made by hand in the portal: secret-based, creationMode Manual."""
    organization = tenant.sim.world.organization(config.organization)
    assert organization is not None
    project = organization.project(config.project)
    assert project is not None
    endpoint = ServiceEndpoint(
        id=new_id(),
        name=config.connection_name,
        type="AzureRM",
        url="https://management.azure.com/",
        scheme="ServicePrincipal",
        parameters={
            "tenantid": config.tenant_id,
            "serviceprincipalid": app_id,
            "authenticationType": "spnKey",
            "serviceprincipalkey": "made-by-hand",
        },
        data={
            "subscriptionId": config.subscription_id,
            "subscriptionName": config.subscription_name,
            "environment": "AzureCloud",
            "scopeLevel": "Subscription",
            "creationMode": "Manual",
        },
        project_refs=[ProjectReference(project_id=project.id, name=config.connection_name)],
    )
    organization.endpoints.append(endpoint)
    return endpoint


async def test_manual_secret_connection_without_a_credential_is_upgraded_in_one_pass(tenant: Tenant) -> None:
    """ADO (and the strict simulator) converts a manual connection only once its app trusts it."""
    assert tenant.sim.world.settings.ado_conversion_requires_fic  # Azure's rule is the default
    app = await tenant.app("sc-payments-manual")
    config = tenant.config("manual-conn", app["appId"])
    endpoint = add_manual_secret_connection(tenant, config, app["appId"])
    state = Converged(tenant, config, app)
    assert state.credentials() == []

    report = await repair_and_check(state)
    assert kinds(report)[:2] == ["create-credential", "convert-connection"]
    assert state.endpoint().id == endpoint.id and state.endpoint().scheme == "WorkloadIdentityFederation"
    (credential,) = state.credentials()
    organization_id = tenant.sim.world.organizations[0].id
    devops = "rISbSSETf0KqFyZ8ppdXmA"
    assert (credential.issuer, credential.subject) == (
        f"https://login.microsoftonline.com/{config.tenant_id}/v2.0",
        f"/eid1/c/pub/t/{b64url_guid(config.tenant_id)}/a/{devops}/sc/{organization_id}/{endpoint.id}",
    )


async def test_refused_conversion_is_retried_once_then_names_the_trust_and_the_portal_action(
    tenant: Tenant,
) -> None:
    """ADO's subject differs from the computed one (here: the organization id's case, which
    matters): the first refusal may be Entra's propagation delay, the second needs a person."""
    organization = tenant.sim.world.organizations[0]
    organization.id = organization.id.upper()
    app = await tenant.app("sc-payments-refused")
    config = tenant.config("refused-conn", app["appId"])
    endpoint = add_manual_secret_connection(tenant, config, app["appId"])

    first = await tenant.run([config])
    (outcome,) = first.outcomes
    assert outcome.status is Status.FAILED_TEMPORARY and outcome.retry_after == 60, outcome
    second = await tenant.run([config])
    (outcome,) = second.outcomes
    assert [str(a.kind) for a in second.plan.actions][:1] == ["convert-connection"]
    assert outcome.status is Status.FAILED_PERMANENT, outcome
    computed = f"/sc/{organization.id.lower()}/{endpoint.id}"
    assert (
        computed in outcome.reason
        and f"https://login.microsoftonline.com/{config.tenant_id}/v2.0" in outcome.reason
    )
    assert "Federated credentials > Add credential > Other issuer" in outcome.reason
    assert "could not be upgraded" in outcome.reason  # ADO's own words come along
    assert Converged(tenant, config, app).endpoint().scheme == "ServicePrincipal"


async def test_legacy_issuer_is_moved_in_one_pass_and_only_the_owned_credential_replaced(
    converged: Converged,
) -> None:
    endpoint = converged.endpoint()
    await converged.tenant.sim.admin.mark_connection_legacy(converged.config.organization, endpoint.id)
    organization = converged.tenant.sim.world.organization("contoso")
    assert organization is not None
    legacy_issuer = f"https://vstoken.dev.azure.com/{organization.id}"
    legacy_subject = f"sc://contoso/payments/{converged.config.connection_name}"
    # Our credential still trusts the legacy issuer, as it did before ADO's change...
    await converged.tenant.sim.admin.change_fic(
        converged.app["appId"], converged.config.credential_name, issuer=legacy_issuer, subject=legacy_subject
    )
    # ...and someone added one of their own for another legacy subject: it must survive.
    app = converged.tenant.sim.world.application_by_app_id(converged.app["appId"])
    assert app is not None
    foreign = FederatedCredential(
        id=new_id(),
        name="by-hand",
        issuer=legacy_issuer,
        subject="sc://contoso/payments/other",
        audiences=[AUDIENCE],
    )
    app.federated_credentials.append(foreign)
    report = await repair_and_check(converged)
    # The new trust first (ADO moves the connection only then), the old one once it has moved.
    assert kinds(report) == ["create-credential", "migrate-connection-issuer", "delete-credential"]
    assert [f.target for f in report.plan.findings] == [
        f"credential 'by-hand' on app {converged.app['appId']}"
    ]
    moved = converged.endpoint()
    assert moved.id == endpoint.id and moved.issuer_format == "entra"
    ours = [c for c in converged.credentials() if c is not foreign]
    assert [c.issuer for c in ours] == [
        f"https://login.microsoftonline.com/{converged.config.tenant_id}/v2.0"
    ]
    assert foreign in converged.credentials()


async def test_managed_role_assignment_no_longer_wanted_is_removed_foreign_kept(converged: Converged) -> None:
    from dataclasses import replace

    narrower = replace(converged.config, role_grants=())
    report = await converged.tenant.run([narrower])
    assert report.all_converged
    assert kinds(report) == ["delete-role-assignment"]
    assert converged.assignments() == []


async def test_dry_run_sends_no_write(converged: Converged) -> None:
    await delete_credential(converged)
    await delete_role_assignment(converged)
    await converged.tenant.sim.admin.reset_counters()
    report = await converged.tenant.run([converged.config], dry_run=True)
    assert sorted(kinds(report)) == ["create-credential", "create-role-assignment"]
    assert {o.status for o in report.outcomes} == {Status.DRIFTED}
    assert await converged.tenant.writes() == 0


async def test_access_for_listed_pipelines_converges_and_reads_back_as_wanted(tenant: Tenant) -> None:
    app = await tenant.app("sc-listed")
    config = tenant.config("listed", app["appId"], pipelines=PipelineAccess(pipeline_ids=frozenset({3, 5})))
    report = await tenant.run([config])
    assert report.all_converged
    after = await tenant.run([config], dry_run=True, pipelines=True)
    assert after.plan.is_empty

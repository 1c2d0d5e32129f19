"""Config validation: every problem names the source, the document, the field and what is expected."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from reconciler.core.model import MAX_CREDENTIALS_PER_APP, PruneMode
from reconciler.core.validation import Document, derive_config_id, parse_configs

APP = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
SUB = "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
VALID: dict[str, Any] = {
    "apiVersion": "wif-reconciler/v1",
    "kind": "FederationConfig",
    "organization": "contoso",
    "project": "Payments Team",
    "tenantId": "72F988BF-86F1-41AF-91AB-2D7CD011DB47",
    "serviceConnection": {"name": "KV Reader", "subscriptionId": SUB, "subscriptionName": "Payments Prod"},
    "application": {"appId": APP},
    "roleAssignments": [
        {
            "role": "Key Vault Reader",
            "scope": f"/subscriptions/{SUB}/resourceGroups/rg-pay/providers/Microsoft.KeyVault/vaults/kv",
        }
    ],
}


def variant(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(VALID)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        target = body
        for parent in parents:
            target = target[parent]
        if value is ...:
            del target[last]
        else:
            target[last] = value
    return body


def problems_of(*bodies: object) -> list[str]:
    _, problems = parse_configs(Document("configs.yaml", i, b) for i, b in enumerate(bodies, start=1))
    return [str(p) for p in problems]


def test_valid_config_is_normalised() -> None:
    configs, problems = parse_configs([Document("configs.yaml", 1, VALID)])
    assert problems == []
    (config,) = configs
    assert config.id == "contoso/payments-team/kv-reader"
    assert config.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert config.credential_name == "contoso--payments-team--kv-reader"
    assert config.role_grants[0].scope.endswith(
        "/resourceGroups/rg-pay/providers/microsoft.keyvault/vaults/kv"
    )
    assert config.role_grants[0].role_id == "21090545-7ca7-4776-b22c-e363652d74d2"
    assert config.pipelines.all_pipelines and config.prune is PruneMode.MANAGED


def test_derived_id_is_stable_and_explicit_id_wins() -> None:
    assert derive_config_id("Contoso", "My Project", "kv reader!") == "contoso/my-project/kv-reader"
    configs, _ = parse_configs([Document("f", 1, variant(id="payments/kv"))])
    assert configs[0].id == "payments/kv"


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"tenantId": "not-a-guid"}, "configs.yaml, document 1, tenantId: expected a GUID"),
        ({"serviceConnection__subscriptionId": "123"}, "serviceConnection.subscriptionId: expected a GUID"),
        ({"application__appId": "x"}, "application.appId: expected a GUID"),
        (
            {"roleAssignments": [{"role": "Reader", "scope": "/subscriptions/x/rg"}]},
            "roleAssignments[0].scope: expected an ARM scope",
        ),
        (
            {"roleAssignments": [{"role": "Reader", "scope": "/subscriptions/abc/resourceGroups/rg"}]},
            "must be a GUID",
        ),
        (
            {"roleAssignments": [{"role": "Key Vault Janitor", "scope": f"/subscriptions/{SUB}"}]},
            "roleAssignments[0].role: unknown role 'Key Vault Janitor'",
        ),
        (
            {"roleAssignments": [{"role": "Reader", "scope": f"/subscriptions/{SUB}", "condition": "x"}]},
            "roleAssignments[0].condition: unknown field",
        ),
        ({"colour": "blue"}, "colour: unknown field"),
        (
            {"serviceConnection__credentialName": "a"},
            "serviceConnection.credentialName: expected 3-120 characters",
        ),
        ({"serviceConnection__credentialName": "-bad-start"}, "Entra's rule"),
        ({"serviceConnection__credentialName": "x" * 121}, "credentialName: expected 3-120"),
        (
            {"serviceConnection__pipelines": ["1"]},
            "serviceConnection.pipelines: expected 'all' or a list of pipeline ids",
        ),
        ({"application": ...}, "application: is required"),
        ({"application": {"displayName": "x"}}, "application.appId: is required unless create: true"),
        (
            {"application": {"appId": APP, "create": True, "displayName": "x"}},
            "must not be given with create: true",
        ),
        ({"prune": "everything"}, "prune: expected 'managed' or 'none'"),
        ({"apiVersion": "v2"}, "apiVersion: expected 'wif-reconciler/v1'"),
        ({"organization": "bad org!"}, "organization: expected an Azure DevOps organization name"),
        ({"project": ""}, "project: expected a non-empty string"),
        ({"id": "Has Spaces"}, "id: expected lower-case letters"),
    ],
)
def test_each_problem_names_document_field_and_expectation(changes: dict[str, Any], expected: str) -> None:
    problems = problems_of(variant(**changes))
    assert any(expected in p for p in problems), problems


def test_every_problem_is_reported_not_just_the_first() -> None:
    problems = problems_of(variant(tenantId="x", prune="x", colour="x"))
    assert len(problems) == 3


def test_a_document_that_is_not_a_mapping_is_rejected() -> None:
    assert problems_of(["a", "list"]) == ["configs.yaml, document 1: expected a mapping, got list"]


def test_duplicate_ids_across_documents() -> None:
    problems = problems_of(VALID, VALID)
    assert any(
        "document 2, id: duplicate config id 'contoso/payments-team/kv-reader' "
        "(first in configs.yaml, document 1)" in p
        for p in problems
    )


def test_more_than_twenty_credentials_on_one_app_is_rejected() -> None:
    bodies = [variant(serviceConnection__name=f"c{i}") for i in range(MAX_CREDENTIALS_PER_APP + 1)]
    problems = problems_of(*bodies)
    assert any("21 configs use application" in p and "at most 20" in p for p in problems), problems
    assert problems_of(*bodies[:MAX_CREDENTIALS_PER_APP]) == []


def test_credential_names_must_be_unique_per_app() -> None:
    first = variant(serviceConnection__credentialName="shared-name")
    second = variant(serviceConnection__name="other", serviceConnection__credentialName="Shared-Name")
    assert any("credential name 'Shared-Name' is already used" in p for p in problems_of(first, second))


def test_two_configs_cannot_manage_the_same_connection() -> None:
    problems = problems_of(variant(id="a/one"), variant(id="a/two"))
    assert any(
        "service connection contoso/Payments Team/KV Reader is already managed" in p for p in problems
    ), problems

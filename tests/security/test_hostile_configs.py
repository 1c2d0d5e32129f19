"""Config fields that passed validation and failed only in the clouds (second hostile review of
the grant path): such a config got its application, credential, role assignments and connection
written, then failed at the last step on every pass, half-applied for good. Each is now refused
where it enters (a ticket, a file), with a one-line problem naming the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.functions as func
import pytest
import yaml

import function_app
from reconciler.core.validation import Document, parse_config
from reconciler.documents import InputError, load_configs
from tests.security.conftest import Host, config, ticket
from tests.security.test_hostile_tickets import assert_rejected

INT32_MAX = 2**31 - 1


def parsed(**connection: Any) -> tuple[object, list[str]]:
    body = config("72f988bf-86f1-41af-91ab-2d7cd011db47")
    body["serviceConnection"].update(connection)
    found, problems = parse_config(
        Document("t", 1, {"apiVersion": "wif-reconciler/v1", "kind": "FederationConfig", **body})
    )
    return found, [str(p) for p in problems]


@pytest.mark.parametrize("pipeline", [INT32_MAX + 1, 10**17, -1, 0])
def test_a_pipeline_id_azure_devops_cannot_hold_is_refused_in_a_file(tmp_path: Path, pipeline: int) -> None:
    """ADO's pipeline ids are Int32s: a larger one failed the pipeline permissions call, the last
    step of a config's apply, after the connection and its credential were made."""
    body = config("72f988bf-86f1-41af-91ab-2d7cd011db47")
    body["serviceConnection"]["pipelines"] = [12, pipeline]
    path = tmp_path / "configs.yaml"
    path.write_text(yaml.safe_dump({"apiVersion": "wif-reconciler/v1", "kind": "FederationConfig", **body}))
    with pytest.raises(InputError) as refused:
        load_configs([path])
    (problem,) = refused.value.problems
    assert "serviceConnection.pipelines" in problem and f"from 1 to {INT32_MAX}" in problem


def test_the_largest_int32_pipeline_id_is_still_accepted() -> None:
    found, problems = parsed(pipelines=[1, INT32_MAX])
    assert found is not None and not problems


async def test_a_ticket_with_a_pipeline_id_beyond_int32_is_recorded_as_rejected(host: Host) -> None:
    body = config(host.sim.tenant_id)
    body["serviceConnection"]["pipelines"] = [INT32_MAX + 1]
    await assert_rejected(host, ticket("PIPE-1", config=body), "PIPE-1", "does not match the ticket schema")
    record = await (await host.service()).request("PIPE-1")
    assert record is not None and "pipelines" in json.dumps(record.reason)


async def test_a_route_config_id_in_the_wrong_case_says_ids_are_lower_case(host: Host) -> None:
    """`Contoso~Payments~KV-Reader` used `~` as told; the answer must say what is wrong with it."""
    request = func.HttpRequest(
        "GET", "/api/configs/x/plan", body=b"", route_params={"config_id": "Contoso~Payments~KV-Reader"}
    )
    response = await function_app.http_plan(request)
    assert response.status_code == 400
    detail = json.loads(response.get_body())["detail"]
    assert "lower-case" in detail and "'Contoso~Payments~KV-Reader'" in detail, detail


LONG_BUT_VALID = (
    "/subscriptions/6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f/resourceGroups/"
    + "g" * 90
    + "/providers/Microsoft.Web/sites/"
    + "s" * 60
    + "/slots/"
    + "t" * 59
)


def test_a_valid_scope_longer_than_256_characters_is_accepted() -> None:
    """ARM ids of nested resources pass 256 characters (resource groups of 90, names of 260): such a
    grant was refused with "expected at most 256 printable characters", though the scope rule, the
    ticket schema and docs/security.md all say 1024."""
    assert len(LONG_BUT_VALID) > 256
    body = config("72f988bf-86f1-41af-91ab-2d7cd011db47")
    body["roleAssignments"] = [{"role": "Key Vault Reader", "scope": LONG_BUT_VALID}]
    found, problems = parse_config(
        Document("t", 1, {"apiVersion": "wif-reconciler/v1", "kind": "FederationConfig", **body})
    )
    assert found is not None, problems


def test_a_scope_beyond_1024_characters_is_refused_by_the_scope_rule() -> None:
    body = config("72f988bf-86f1-41af-91ab-2d7cd011db47")
    body["roleAssignments"] = [{"role": "Key Vault Reader", "scope": LONG_BUT_VALID + "/x/y" * 200}]
    _found, problems = parse_config(
        Document("t", 1, {"apiVersion": "wif-reconciler/v1", "kind": "FederationConfig", **body})
    )
    assert [str(p) for p in problems] == [
        "t, document 1, roleAssignments[0].scope: expected at most 1024 printable characters"
    ]


@pytest.mark.parametrize("field", ["name", "project", "displayName"])
def test_a_decomposed_accent_is_refused_with_what_is_wrong(field: str) -> None:
    """`kv-re\u0301ader` (e and a combining acute, as macOS writes it) reads as `kv-réader` but is
    another name to Azure DevOps: refused as before, now saying why instead of "compatibility
    characters ... like U+FF0F"."""
    body = config("72f988bf-86f1-41af-91ab-2d7cd011db47")
    decomposed = "kv-re\u0301ader"
    if field == "name":
        body["serviceConnection"]["name"] = decomposed
    elif field == "project":
        body["project"] = decomposed
    else:
        body["application"]["displayName"] = decomposed
    _found, problems = parse_config(
        Document("t", 1, {"apiVersion": "wif-reconciler/v1", "kind": "FederationConfig", **body})
    )
    assert problems and "composed form (NFC)" in str(problems[0]), problems
    composed = dict(body)
    found, _ = parse_config(
        Document(
            "t",
            1,
            {
                "apiVersion": "wif-reconciler/v1",
                "kind": "FederationConfig",
                **{**composed, "project": "payments"},
                "serviceConnection": {**body["serviceConnection"], "name": "kv-r\u00e9ader"},
                "application": {"displayName": "sc-r\u00e9ader", "create": True},
            },
        )
    )
    assert found is not None

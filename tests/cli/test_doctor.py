"""`python -m reconciler doctor` as an operator runs it: a subprocess against the simulator in its own
process (the identity's rights are what its state grants), Azurite's tables and the Service Bus peer."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import yaml

from cloudsim.state import builtin_role_definitions
from cloudsim.testing import start_simulator_process
from reconciler.state.stores import open_stores
from servicebus_peer import QueueSpec, running_peer

ROOT = Path(__file__).resolve().parents[2]
TENANT: dict[str, Any] = yaml.safe_load((ROOT / "examples" / "tenant.yaml").read_text(encoding="utf-8"))
ME = TENANT["caller_object_id"]
PAYMENTS_SUB = "6b1e2c5a-3f4d-4e8a-9c7b-1a2b3c4d5e6f"
WEB_SUB = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
KV_READER_APP = "0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
QUEUES = [QueueSpec("requests"), QueueSpec("reconcile", requires_session=True), QueueSpec("events")]


def tenant(change: Callable[[dict[str, Any]], None] = lambda _: None) -> dict[str, Any]:
    """The demo tenant (every right granted), changed by `change`."""
    state: dict[str, Any] = json.loads(json.dumps(TENANT))
    change(state)
    return state


def reconciler_role(name: str, *assignable_scopes: str) -> dict[str, Any]:
    """A custom role with the reconciler's RBAC actions (infra/app/rbac-admin-subscription.bicep's)."""
    return {
        "id": "0d0c7000-0000-4000-8000-000000000003",
        "role_name": name,
        "actions": [
            "Microsoft.Authorization/roleAssignments/read",
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "Microsoft.Authorization/roleDefinitions/read",
        ],
        "role_type": "CustomRole",
        "assignable_scopes": list(assignable_scopes),
    }


@asynccontextmanager
async def simulator(state: dict[str, Any], tmp_path: Path) -> AsyncIterator[dict[str, str]]:
    path = tmp_path / "tenant.json"
    path.write_text(json.dumps(state), encoding="utf-8")
    process, env = await start_simulator_process(path)
    try:
        yield env
    finally:
        process.send_signal(signal.SIGTERM)
        await process.wait()


def doctor(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "reconciler", "doctor", "--configs", "examples/configs.yaml"]
    return subprocess.run(
        [*command, "--cloud", "simulator", *args],
        cwd=ROOT,
        env={**os.environ, "WIF_POLICY_FILE": "policy.yaml", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def findings(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    report = json.loads(result.stdout)
    return {f"{f['area']}: {f['subject']}": f for f in report["findings"]}


async def test_everything_in_place_exits_0(tmp_path: Path, table_settings: dict[str, str]) -> None:
    await _in_place(table_settings)
    with running_peer(QUEUES) as peer:
        async with simulator(tenant(), tmp_path) as env:
            settings = {**env, **table_settings, "ServiceBusConnection": peer.connection_string}
            result = doctor(settings, "--output", "json")
            table = doctor(settings)
    assert result.returncode == 0, result.stdout + result.stderr
    found = findings(result)
    assert {key: f["verdict"] for key, f in found.items() if f["verdict"] != "ok"} == {}
    for sub in (PAYMENTS_SUB, WEB_SUB):  # read from Event Grid (examples/tenant.yaml's system topics)
        events = found[f"Drift events: Event Grid event subscription on subscription {sub}"]
        assert events["detail"] == (
            "wif-role-assignments on system topic evgt-wif-demo delivers role-assignment writes and "
            "deletes to the events queue"
        )
    assert found["Drift events: queue events"]["verdict"] == "ok"
    signed_in = found[f"Sign-in: tenant {TENANT['tenant_id']}"]
    assert signed_in["detail"] == "the Graph token's tid; every config names it (4)"
    assert set(found) >= {
        "Microsoft Graph: application permission Application.ReadWrite.OwnedBy",
        f"Microsoft Graph: owner of adopted application {KV_READER_APP}",
        "Azure DevOps: member of organization contoso",
        "Azure DevOps: Endpoint Administrator in contoso/payments",
        "Azure DevOps: member of organization fabrikam",
        "Azure DevOps: Endpoint Administrator in fabrikam/storefront",
        "Tables: table federationconfigs",
        "Service Bus: queue requests",
        "Service Bus: queue reconcile",
        "Service Bus: queue events",
    }
    rbac = [f for key, f in found.items() if key.startswith("Azure RBAC")]
    assert len(rbac) == 2 and all("Role Based Access Control Administrator" in f["detail"] for f in rbac)
    assert table.returncode == 0 and "Everything the reconciler needs is in place." in table.stdout
    assert "not checked by doctor" not in table.stdout
    assert f"identity {ME}" in table.stdout


async def _in_place(table_settings: dict[str, str]) -> None:
    async with await open_stores(table_settings, None):
        pass  # the app creates its tables when it starts


def _events_to_another_queue_and_no_topic(state: dict[str, Any]) -> None:
    web = state["system_topics"][1]
    state["system_topics"] = [web]  # none on the payments subscription
    web["event_subscriptions"][0]["queue_id"] = web["event_subscriptions"][0]["queue_id"].replace(
        "/queues/events", "/queues/requests"
    )


async def test_a_missing_event_subscription_is_named_with_its_fix(
    tmp_path: Path, table_settings: dict[str, str]
) -> None:
    await _in_place(table_settings)
    with running_peer(QUEUES) as peer:
        async with simulator(tenant(_events_to_another_queue_and_no_topic), tmp_path) as env:
            settings = {**env, **table_settings, "ServiceBusConnection": peer.connection_string}
            result = doctor(settings, "--output", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = findings(result)
    assert [key for key, f in found.items() if f["verdict"] != "ok"] == [
        f"Drift events: Event Grid event subscription on subscription {sub}"
        for sub in (PAYMENTS_SUB, WEB_SUB)
    ]
    payments, web = (
        found[f"Drift events: Event Grid event subscription on subscription {s}"]
        for s in (PAYMENTS_SUB, WEB_SUB)
    )
    assert payments["verdict"] == web["verdict"] == "missing"
    assert payments["detail"].startswith("no event subscription of its system topic (0 found) delivers")
    assert web["detail"].startswith("no event subscription of its system topic (1 found) delivers")
    for sub, finding in ((PAYMENTS_SUB, payments), (WEB_SUB, web)):
        assert finding["fix"].startswith(
            f"azd provision with driftEvents on (the default) and subscription {sub}"
        )
        assert f"az eventgrid system-topic list --subscription {sub}" in finding["fix"]


def _no_event_grid_read(state: dict[str, Any]) -> None:
    """The reconciler's own custom role (infra/app/rbac-admin-subscription.bicep): no `*/read`."""
    role = reconciler_role(
        "WIF Reconciler Role Assignments", f"/subscriptions/{PAYMENTS_SUB}", f"/subscriptions/{WEB_SUB}"
    )
    state["role_definitions"] = [r.to_json() for r in builtin_role_definitions()] + [role]
    for assignment in state["role_assignments"]:
        assignment["role_definition_guid"] = role["id"]


async def test_without_event_grid_read_the_check_is_skipped_and_nothing_fails(
    tmp_path: Path, table_settings: dict[str, str]
) -> None:
    await _in_place(table_settings)
    with running_peer(QUEUES) as peer:
        async with simulator(tenant(_no_event_grid_read), tmp_path) as env:
            settings = {**env, **table_settings, "ServiceBusConnection": peer.connection_string}
            result = doctor(settings, "--output", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    found = findings(result)
    skipped = {key: f for key, f in found.items() if f["verdict"] != "ok"}
    assert set(skipped) == {
        f"Drift events: Event Grid event subscription on subscription {sub}"
        for sub in (PAYMENTS_SUB, WEB_SUB)
    }
    for key, finding in skipped.items():
        sub = key.rsplit(" ", 1)[1]
        assert finding["verdict"] == "skipped"
        assert finding["detail"].startswith(
            "not checked: the identity may not read Event Grid there (it needs Reader, or "
            "Microsoft.EventGrid/systemTopics/read and systemTopics/eventSubscriptions/read, "
            f"on subscription {sub})"
        )
        assert (
            "az eventgrid system-topic event-subscription show --name wif-role-assignments"
            in finding["detail"]
        )


def _take_rights_away(state: dict[str, Any]) -> None:
    state["graph_app_roles"] = {}
    contoso, fabrikam = state["organizations"]
    contoso["members"] = []
    fabrikam["projects"][0]["endpoint_administrators"] = []
    state["role_assignments"] = [a for a in state["role_assignments"] if WEB_SUB not in a["scope"]]


async def test_each_missing_right_is_named_with_its_fix(
    tmp_path: Path, table_settings: dict[str, str]
) -> None:
    with running_peer([QueueSpec("requests")]) as peer:  # no `reconcile` queue, and no tables yet
        async with simulator(tenant(_take_rights_away), tmp_path) as env:
            settings = {**env, **table_settings, "ServiceBusConnection": peer.connection_string}
            result = doctor(settings, "--output", "json")
            table = doctor(settings)
    assert result.returncode == 1, result.stdout + result.stderr
    found = findings(result)
    missing = {key: f for key, f in found.items() if f["verdict"] == "missing"}

    graph = missing["Microsoft Graph: application permission Application.ReadWrite.OwnedBy"]
    assert "appRoleAssignedTo" in graph["fix"] and ME in graph["fix"]
    assert "18a4783c-866b-4cc7-a460-3d5e5662c884" in graph["fix"]
    assert found["Microsoft Graph: adopted applications"]["verdict"] == "skipped"

    member = missing["Azure DevOps: member of organization contoso"]
    assert "401" in member["detail"] and "dev.azure.com/contoso/_settings/users" in member["fix"]
    assert found["Azure DevOps: Endpoint Administrator in contoso/payments"]["verdict"] == "skipped"
    assert found["Azure DevOps: member of organization fabrikam"]["verdict"] == "ok"
    admin = missing["Azure DevOps: Endpoint Administrator in fabrikam/storefront"]
    assert (
        "fabrikam/storefront/_settings/adminservices" in admin["fix"]
        and "Endpoint Administrator" in admin["fix"]
    )

    rbac = [f for key, f in missing.items() if key.startswith("Azure RBAC")]
    # No role there at all: ARM refuses even the listing (roleAssignments/read), at the subscription
    # and then at the resource group of the target scope, so the read is what is named.
    assert [f["subject"] for f in rbac] == [
        f"role assignments read in /subscriptions/{WEB_SUB}/resourceGroups/rg-web"
    ]
    assert f"(and in /subscriptions/{WEB_SUB})" in rbac[0]["detail"]
    assert all(f"--assignee-object-id {ME}" in f["fix"] and "azd provision" in f["fix"] for f in rbac)
    assert any(
        k.startswith("Azure RBAC") and PAYMENTS_SUB in k and f["verdict"] == "ok" for k, f in found.items()
    )

    tables = [f for key, f in missing.items() if key.startswith("Tables")]
    assert len(tables) == 4 and all("az storage table create" in f["fix"] for f in tables)
    assert missing["Service Bus: queue reconcile"]["fix"] == "infra/ creates the queues: azd provision"
    assert found["Service Bus: queue requests"]["verdict"] == "ok"
    assert missing["Drift events: queue events"]["detail"] == "it does not exist"

    assert table.returncode == 1
    assert table.stdout.count("      fix: ") == len(missing)
    assert f"{len(missing)} missing, 0 not checked" in table.stdout
    assert "Traceback" not in table.stdout + table.stderr


def _narrower_roles_and_a_foreign_app(state: dict[str, Any]) -> None:
    """The RBAC role is a custom role narrower than RBAC Administrator (by actions, not by name);
    on the second subscription one without delete; the kv-reader app lost its owner."""
    custom = [
        {
            "id": "0d0c7000-0000-4000-8000-00000000000" + str(n),
            "role_name": name,
            "actions": actions,
            "role_type": "CustomRole",
            "assignable_scopes": [f"/subscriptions/{PAYMENTS_SUB}", f"/subscriptions/{WEB_SUB}"],
        }
        for n, name, actions in (
            (
                1,
                "WIF Reconciler Role Assignments",
                [
                    "Microsoft.Authorization/roleAssignments/read",
                    "Microsoft.Authorization/roleAssignments/write",
                    "Microsoft.Authorization/roleAssignments/delete",
                    "Microsoft.Authorization/roleDefinitions/read",
                ],
            ),
            (2, "Grant only", ["Microsoft.Authorization/roleAssignments/write"]),
        )
    ]
    state["role_definitions"] = [r.to_json() for r in builtin_role_definitions()] + custom
    payments, web = state["role_assignments"]
    payments["role_definition_guid"] = custom[0]["id"]
    web["role_definition_guid"] = custom[1]["id"]
    state["applications"][0]["owners"] = []


async def test_rights_are_judged_by_effective_permissions_and_ownership(tmp_path: Path) -> None:
    async with simulator(tenant(_narrower_roles_and_a_foreign_app), tmp_path) as env:
        result = doctor(env, "--output", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    found = findings(result)
    owner = found[f"Microsoft Graph: owner of adopted application {KV_READER_APP}"]
    assert owner["verdict"] == "missing"
    assert owner["fix"].endswith(f"az ad app owner add --id {KV_READER_APP} --owner-object-id {ME}")
    assert (
        found["Microsoft Graph: owner of adopted application 1a2b3c4d-5e6f-4a1b-8c2d-3e4f5a6b7c8d"]["verdict"]
        == "ok"
    )
    payments = [f for k, f in found.items() if k.startswith("Azure RBAC") and PAYMENTS_SUB in k]
    assert [f["verdict"] for f in payments] == ["ok"]
    assert "WIF Reconciler Role Assignments" in payments[0]["detail"]
    web = [f for k, f in found.items() if k.startswith("Azure RBAC") and WEB_SUB in k]
    assert web and all(f["verdict"] == "missing" for f in web)
    # Write alone is not enough: ARM refuses the listing the reconciler reads first (roleAssignments/read).
    assert [f["subject"] for f in web] == [
        f"role assignments read in /subscriptions/{WEB_SUB}/resourceGroups/rg-web"
    ]
    assert "roleAssignments/read" in web[0]["detail"] and web[0]["fix"]


def _rights_on_resource_groups_only(state: dict[str, Any]) -> None:
    """A deployment with WIF_RBAC_TARGET_RESOURCE_GROUPS (docs/deploy.md): the RBAC role on rg-pay,
    and on rg-web a custom role assignable there only; rg-pay-staging is left without a role."""
    payments, web = state["role_assignments"]
    payments["scope"] = f"/subscriptions/{PAYMENTS_SUB}/resourceGroups/rg-pay"
    web["scope"] = f"/subscriptions/{WEB_SUB}/resourceGroups/rg-web"
    group_role = reconciler_role("WIF Reconciler in rg-web", web["scope"])
    state["role_definitions"] = [r.to_json() for r in builtin_role_definitions()] + [group_role]
    web["role_definition_guid"] = group_role["id"]


async def test_rights_on_resource_groups_only_are_read_at_the_groups(tmp_path: Path) -> None:
    async with simulator(tenant(_rights_on_resource_groups_only), tmp_path) as env:
        result = doctor(env, "--output", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    rbac = {f["subject"]: f for k, f in findings(result).items() if k.startswith("Azure RBAC")}
    pay, web = (f"/subscriptions/{PAYMENTS_SUB}/resourceGroups", f"/subscriptions/{WEB_SUB}/resourceGroups")
    held = "role assignments write and delete on"
    assert {subject: f["verdict"] for subject, f in rbac.items()} == {
        f"{held} 1 target scope(s) in {pay}/rg-pay": "ok",
        f"role assignments read in {pay}/rg-pay-staging": "missing",
        f"{held} 2 target scope(s) in {web}/rg-web": "ok",
    }, rbac
    # The custom role's definition is read at the group, where it is assignable.
    assert "WIF Reconciler in rg-web" in rbac[f"{held} 2 target scope(s) in {web}/rg-web"]["detail"]
    staging = rbac[f"role assignments read in {pay}/rg-pay-staging"]
    assert (
        "rg-pay-staging" in staging["fix"] and f"(and in /subscriptions/{PAYMENTS_SUB})" in staging["detail"]
    )


async def test_configs_of_another_tenant_are_named(tmp_path: Path) -> None:
    examples = yaml.safe_load_all((ROOT / "examples" / "configs.yaml").read_text(encoding="utf-8"))
    elsewhere = list(examples)[2]  # kv-secrets: an application the reconciler creates
    elsewhere["serviceConnection"]["name"] = "kv-secrets-elsewhere"
    elsewhere["application"]["displayName"] = "sc-payments-kv-secrets-elsewhere"
    elsewhere["tenantId"] = "0c1d2e3f-0000-4000-8000-000000000001"
    other = tmp_path / "elsewhere.yaml"
    other.write_text(yaml.safe_dump(elsewhere), encoding="utf-8")
    async with simulator(tenant(), tmp_path) as env:
        result = doctor(env, "--configs", str(other), "--output", "json")
    assert result.returncode == 1, result.stdout + result.stderr
    signed_in = findings(result)[f"Sign-in: tenant {TENANT['tenant_id']}"]
    assert signed_in["verdict"] == "missing"
    assert (
        "0c1d2e3f-0000-4000-8000-000000000001: contoso/payments/kv-secrets-elsewhere" in signed_in["detail"]
    )
    assert "tenantId" in signed_in["fix"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_an_unreachable_endpoint_is_one_clear_line(tmp_path: Path) -> None:
    async with simulator(tenant(), tmp_path) as env:
        closed = f"https://127.0.0.1:{_closed_port()}"
        arm_down = doctor({**env, "WIF_ARM_URL": closed})
        ado_down = doctor({**env, "WIF_ADO_URL": closed}, "--output", "json")
        no_identity = doctor({**env, "IDENTITY_ENDPOINT": f"{closed}/msi/token"})
    for result in (arm_down, ado_down, no_identity):
        assert result.returncode == 1, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in arm_down.stdout.splitlines() if "[error]" in line]
    assert len(errors) == 1 and "Azure RBAC" not in errors[0] and "could not check" in errors[0]
    assert "ARM connection failed" in errors[0]
    assert "[ok] member of organization contoso" in arm_down.stdout  # the other systems are still checked
    ado = [f for f in json.loads(ado_down.stdout)["findings"] if f["area"] == "Azure DevOps"]
    assert [f["verdict"] for f in ado] == ["error"] and "Azure DevOps connection failed" in ado[0]["detail"]
    signed_out = [line for line in no_identity.stdout.splitlines() if "[error]" in line]
    assert len(signed_out) == 1 and "a token for Microsoft Graph" in signed_out[0]


async def test_bad_settings_and_input_exit_2_with_one_line(tmp_path: Path) -> None:
    async with simulator(tenant(), tmp_path) as env:
        table = doctor({**env, "WIF_TABLE_ENDPOINT": "http://plain.example"})
        bus = doctor({**env, "ServiceBusConnection__fullyQualifiedNamespace": " "}, "--cloud", "nowhere")
        policy = doctor(env, "--policy", str(tmp_path / "missing.yaml"))
    assert table.returncode == 2 and "WIF_TABLE_ENDPOINT must be an https URL" in table.stderr
    assert bus.returncode == 2 and "nowhere" in bus.stderr
    assert policy.returncode == 2 and "missing.yaml" in policy.stderr
    for result in (table, bus, policy):
        assert "Traceback" not in result.stderr and result.stderr.startswith("error:")

"""A config the plan fails changes nothing (second hostile review of the grant path).

`PlanError` says so, but a config whose credential name was taken on a shared application (two
connections `kv.reader` and `kv-reader` whose derived credential names are both
`contoso--payments--kv-reader`, or an explicit `credentialName` another config uses) still got
its connection created, its pipelines authorized and its role assignments granted, and only its
credential was refused: a connection that can never sign in, and roles granted for a config
reported `failed-permanent`. Through the pure planner and then end to end.
"""

from __future__ import annotations

from reconciler.core.actions import ActionKind
from reconciler.core.model import FederatedCredential, ObservedState
from reconciler.core.plan import ErrorCode, plan
from tests.core.builders import app, assignment, config, connection, credential_for, policy
from tests.security.tenancy_world import (
    Tenant,
    azurite_tables,
    cloud_env,
    cloud_simulator,
    servicebus_peer,
    table_settings,
    tenant,
)

__all__ = ["azurite_tables", "cloud_env", "cloud_simulator", "servicebus_peer", "table_settings", "tenant"]


def test_a_config_whose_credential_name_is_taken_gets_no_connection_pipelines_or_roles() -> None:
    first, second = config("kv-reader"), config("kv.reader")
    assert first.credential_name == second.credential_name  # '.' folds to '-' in a credential name
    first_connection = connection(first)
    observed = ObservedState(
        applications=(app(credential_for(first, first_connection)),),
        role_assignments=(assignment(owner=first.id),),
        connections=(first_connection,),
    )
    result = plan([first, second], observed, policy())
    assert [(e.config_id, e.code) for e in result.errors] == [(second.id, ErrorCode.CREDENTIAL_NAME_TAKEN)]
    assert [a for a in result.actions if second.id in a.config_ids] == []


def test_a_foreign_credential_of_the_name_blocks_a_new_connection_too() -> None:
    kv = config()
    squatter = FederatedCredential("f1", kv.credential_name, "https://issuer", "someone-else")
    result = plan([kv], ObservedState(applications=(app(squatter),)), policy())
    assert [e.code for e in result.errors] == [ErrorCode.CREDENTIAL_NAME_TAKEN]
    assert result.is_empty, [a.kind for a in result.actions]


def test_the_other_configs_of_the_application_still_converge() -> None:
    first, second, third = config("kv-reader"), config("kv.reader"), config("deploy")
    first_connection = connection(first)
    observed = ObservedState(
        applications=(app(credential_for(first, first_connection)),),
        role_assignments=(assignment(owner=first.id),),
        connections=(first_connection,),
    )
    result = plan([first, second, third], observed, policy())
    assert [e.config_id for e in result.errors] == [second.id]
    assert {a.kind for a in result.actions if third.id in a.config_ids} >= {
        ActionKind.CREATE_CONNECTION,
        ActionKind.CREATE_CREDENTIAL,
    }


async def test_through_the_app_the_second_connection_is_never_created(tenant: Tenant) -> None:
    await tenant.send(tenant.ticket("CHG-1", name="kv-reader"))
    await tenant.deliver_reconciles()
    assert (await tenant.outcome("CHG-1"))[0] == "applied"
    await tenant.send(tenant.ticket("CHG-2", name="kv.reader"))
    await tenant.deliver_reconciles()
    outcome, reason = await tenant.outcome("CHG-2")
    assert outcome == "failed" and "already has a credential named 'contoso--payments--kv-reader'" in reason
    assert [c.name for c in tenant.connections("payments")] == ["kv-reader"]

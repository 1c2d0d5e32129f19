"""A service connection Azure DevOps reports not ready (`isReady: false`, `operationStatus`): the
reconciler says so with ADO's own message, writes nothing to it, and never loops on it.

`isReady` and `operationStatus` ({state, statusMessage}: "Error message during creation/deletion of
endpoint") are in the serviceEndpoint 7.1 spec; listings leave such connections out unless
`includeFailed=true`, the name ADO gives them.
"""

from __future__ import annotations

import pytest

from reconciler.engine.run import Status
from tests.engine.conftest import Tenant
from tests.engine.test_drift import Converged, kinds

FAILED = {
    "state": "Failed",
    "statusMessage": "Failed to obtain the Json Web Token(JWT) using service principal",
}


@pytest.fixture
async def converged(tenant: Tenant) -> Converged:
    app = await tenant.app("sc-payments-ready")
    config = tenant.config("ready-conn", app["appId"])
    report = await tenant.run([config])
    assert report.all_converged, report.outcomes
    return Converged(tenant, config, app)


@pytest.mark.parametrize("secret", [False, True], ids=["otherwise-converged", "secret-scheme"])
async def test_a_connection_ado_reports_failed_is_reported_with_ado_s_message_and_left_alone(
    converged: Converged, secret: bool
) -> None:
    tenant, org = converged.tenant, converged.config.organization
    endpoint = converged.endpoint()
    if secret:  # drift too: a conversion would otherwise be planned
        await tenant.sim.admin.convert_connection_to_secret(org, endpoint.id)
    await tenant.sim.admin.change_connection(org, endpoint.id, isReady=False, operationStatus=FAILED)
    await tenant.sim.admin.reset_counters()

    for _ in range(2):  # the same answer each pass: nothing is retried in a loop
        report = await tenant.run([converged.config], pipelines=True)
        (outcome,) = report.outcomes
        assert outcome.status is Status.FAILED_PERMANENT, outcome
        assert "not ready" in outcome.reason and FAILED["statusMessage"] in outcome.reason, outcome.reason
        assert kinds(report) == []
    assert await tenant.writes() == 0


async def test_a_write_ado_answers_failed_fails_the_config_and_is_not_repeated(tenant: Tenant) -> None:
    await tenant.sim.admin.update_settings(ado_endpoint_write_state="Failed")
    app = await tenant.app("sc-payments-failing")
    config = tenant.config("failing-conn", app["appId"])

    first = await tenant.run([config])
    (outcome,) = first.outcomes
    assert kinds(first)[:1] == ["create-connection"]
    assert outcome.status is Status.FAILED_PERMANENT, outcome
    assert "Failed to prepare the service connection" in outcome.reason, outcome.reason
    state = Converged(tenant, config, app)
    assert not state.endpoint().is_ready and state.credentials() == []  # no credential for it

    await tenant.sim.admin.reset_counters()
    second = await tenant.run([config])
    (outcome,) = second.outcomes
    assert outcome.status is Status.FAILED_PERMANENT and "not ready" in outcome.reason, outcome
    assert kinds(second) == [] and await tenant.writes() == 0  # not created a second time


async def test_a_conversion_still_in_progress_is_looked_at_again_and_then_converges(tenant: Tenant) -> None:
    app = await tenant.app("sc-payments-slow")
    config = tenant.config("slow-conn", app["appId"])
    assert (await tenant.run([config])).all_converged
    state = Converged(tenant, config, app)
    org = config.organization
    await tenant.sim.admin.convert_connection_to_secret(org, state.endpoint().id)
    await tenant.sim.admin.update_settings(ado_endpoint_write_state="InProgress")

    first = await tenant.run([config])
    (outcome,) = first.outcomes
    assert "convert-connection" in kinds(first)
    assert outcome.status is Status.FAILED_TEMPORARY and outcome.retry_after, outcome
    assert "InProgress" in outcome.reason, outcome.reason

    # ADO finishes: the next pass finds nothing to do.
    await tenant.sim.admin.update_settings(ado_endpoint_write_state="Ready")
    await tenant.sim.admin.change_connection(
        org, state.endpoint().id, isReady=True, operationStatus={"state": "Ready", "statusMessage": ""}
    )
    await tenant.sim.admin.reset_counters()
    after = await tenant.run([config])
    assert after.all_converged and kinds(after) == [], after.outcomes
    assert await tenant.writes() == 0

"""What an HTTP error means, decided once for the three adapters: the status mapping, and Retry-After
in both of its forms (seconds or an HTTP date, RFC 9110), also as the simulator sends them."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from cloudsim.faults import Faults
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.core.identifiers import ArmScope
from reconciler.failures import (
    NotFound,
    PermanentFailure,
    TemporaryFailure,
    failure_for_status,
    retry_after_seconds,
)
from tests.engine.conftest import Tenant

NOW = datetime(2026, 11, 26, 14, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("1.5", 1.5),
        ("Thu, 26 Nov 2026 14:00:30 GMT", 30.0),  # IMF-fixdate, the form senders must use
        ("Thursday, 26-Nov-26 14:01:00 GMT", 60.0),  # obsolete RFC 850 form, which recipients accept
        ("Thu Nov 26 14:00:05 2026", 5.0),  # obsolete asctime form: no zone, GMT by definition
        ("Thu, 26 Nov 2026 13:00:00 GMT", 0.0),  # in the past: now
        ("", 7.0),
        (None, 7.0),
        ("soon", 7.0),
        ("-3", 7.0),
        ("\uff11\uff12", 7.0),  # digits, but not ASCII ones (fullwidth one, two)
    ],
)
def test_retry_after_is_read_as_seconds_or_as_an_http_date(header: str | None, seconds: float) -> None:
    assert retry_after_seconds(header, default=7.0, now=NOW) == seconds


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, PermanentFailure),
        (403, PermanentFailure),
        (404, NotFound),
        (408, TemporaryFailure),
        (409, PermanentFailure),
        (429, TemporaryFailure),
        (500, TemporaryFailure),
        (503, TemporaryFailure),
    ],
)
def test_every_adapter_maps_a_status_the_same_way(status: int, kind: type[Exception]) -> None:
    failure = failure_for_status(status, "answered", code="Code", retry_after=12.0)
    assert type(failure) is kind and failure.status == status and failure.code == "Code"
    if isinstance(failure, TemporaryFailure):
        assert failure.retry_after == 12.0


async def test_a_retry_after_date_from_arm_and_ado_is_a_temporary_failure_with_that_delay(
    tenant: Tenant, adapters: tuple[ArmAdapter, AdoAdapter]
) -> None:
    arm, ado = adapters
    throttled = Faults(error_rate=1.0, error_statuses=[429], retry_after_s=40, retry_after_date=True)
    await tenant.sim.admin.set_faults({"arm": throttled, "ado": throttled})
    org = tenant.sim.world.organizations[0]
    with pytest.raises(TemporaryFailure) as from_arm:
        await arm.list_assignments(ArmScope.parse(f"/subscriptions/{SAMPLE_SUBSCRIPTION}"))
    with pytest.raises(TemporaryFailure) as from_ado:
        await ado.list_connections(org.name, org.projects[0].name)
    for failure in (from_arm.value, from_ado.value):
        assert failure.status == 429
        assert 30.0 <= failure.retry_after <= 40.0  # the date's whole seconds, less the time taken

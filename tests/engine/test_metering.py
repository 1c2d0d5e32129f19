"""Every API's request meter counts every attempt, the ones the SDKs' retries send included: the
figures agree with what the simulator served, request for request, 429s and all."""

from __future__ import annotations

from azure.identity.aio import ManagedIdentityCredential

from cloudsim.faults import Faults
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.graph import GraphAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.core.identifiers import ArmScope, Guid
from tests.engine.conftest import Tenant

CALLS = 4  # per API, one after another, so that the seeded faults fall the same way every run


async def test_retried_429s_are_counted_per_attempt_the_same_way_for_every_api(tenant: Tenant) -> None:
    # A third of the requests answered 429 (Retry-After: 1 s), at random from a
    # fixed seed; the SDKs retry each until it succeeds.
    throttled = Faults(error_rate=0.3, error_statuses=[429], retry_after_s=1, seed=3)
    await tenant.sim.admin.set_faults({"graph": throttled, "arm": throttled, "ado": throttled})
    meter = RequestMeter()
    org = tenant.sim.world.organizations[0]
    async with ManagedIdentityCredential(connection_verify=tenant.cloud.ca_bundle) as credential:
        graph = GraphAdapter(credential, tenant.cloud, meter)
        arm = ArmAdapter(credential, tenant.cloud, meter, retry_total=10)
        ado = AdoAdapter(credential, tenant.cloud, meter, retry_total=10)
        try:
            for _ in range(CALLS):
                await graph.count_applications()  # one top-level GET each (no $batch)
                await arm.list_assignments(ArmScope(subscription=Guid(SAMPLE_SUBSCRIPTION)))
                await arm.list_event_routes(Guid(SAMPLE_SUBSCRIPTION))  # the SDK's pipeline, our request
                await ado.list_connections(org.name, org.projects[0].name)
        finally:
            await graph.close()
            await arm.close()
            await ado.close()

    served = await tenant.sim.admin.counters()
    assert "systemTopics.list" in served["arm"]["operations"]
    for api in ("graph", "arm", "ado"):
        # Some attempts were throttled and retried, and each call ended in a success; the meter saw
        # each attempt the simulator served.
        assert served[api]["throttled"] > 0, api
        assert meter.throttled(api) == served[api]["throttled"], api
        assert meter.reads(api) == served[api]["reads"], api
        assert meter.writes(api) == served[api]["writes"] == 0, api
    for api in ("graph", "ado"):  # one request a call: the attempts are the calls plus the 429s
        assert meter.reads(api) == CALLS + served[api]["throttled"], api

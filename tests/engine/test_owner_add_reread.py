"""Adding an application owner that is one already: Graph's 400 is decided by the status and a
re-read of the owners (`GET /applications/{id}/owners`), not by the wording of its message, which
Graph does not document. The re-read is sent only on a 400 whose text is not the known one."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from azure.identity.aio import ManagedIdentityCredential

from cloudsim.faults import Faults
from cloudsim.state import World, new_id
from reconciler.adapters.graph import GraphAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.failures import PermanentFailure
from tests.engine.conftest import Tenant

# Graph's answer for another duplicate reference; any wording but the known one will do.
OTHER_WORDING = (
    "A conflicting object with one or more of the specified property values is present in the directory."
)
LIST, ADD = "applications.owners.list", "applications.owners.add"


@pytest.fixture
async def graph(tenant: Tenant) -> AsyncIterator[GraphAdapter]:
    """The adapter as the simulator's managed identity, granted what adding an owner needs."""
    world = World.from_json(await tenant.sim.admin.dump_state())
    world.graph_app_roles[world.caller_object_id] = ["Application.ReadWrite.All", "Directory.Read.All"]
    await tenant.sim.admin.load_state(world)
    async with ManagedIdentityCredential(connection_verify=tenant.cloud.ca_bundle) as credential:
        adapter = GraphAdapter(credential, tenant.cloud, RequestMeter())
        try:
            yield adapter
        finally:
            await adapter.close()


async def foreign_app(tenant: Tenant, extra_owners: int = 0) -> tuple[str, str]:
    """A foreign application with `extra_owners` other owners, and the object id of its principal."""
    seeded = await tenant.sim.admin.seed_application(f"made-by-hand-{new_id()[:8]}", owned=False)
    if extra_owners:
        world = World.from_json(await tenant.sim.admin.dump_state())
        app = world.application(str(seeded["id"]))
        assert app is not None
        app.owners.extend(new_id() for _ in range(extra_owners))
        await tenant.sim.admin.load_state(world)
    return str(seeded["id"]), str(seeded["servicePrincipalId"])


async def operations(tenant: Tenant) -> dict[str, dict[str, int]]:
    counters = await tenant.sim.admin.counters()
    found: dict[str, dict[str, int]] = counters["graph"]["operations"]
    return found


async def test_an_owner_already_there_is_recognised_whatever_graph_calls_it(
    tenant: Tenant, graph: GraphAdapter
) -> None:
    # 150 other owners: Graph pages the listing (100 by default), and the principal is on the 2nd page.
    object_id, principal = await foreign_app(tenant, extra_owners=150)
    await tenant.sim.admin.update_settings(graph_duplicate_owner_message=OTHER_WORDING)
    await tenant.sim.admin.reset_counters()

    assert await graph.add_application_owner(object_id, principal) is True
    assert LIST not in await operations(tenant)  # a success reads nothing

    assert await graph.add_application_owner(object_id, principal) is False  # a harmless retry
    served = await operations(tenant)
    assert served[ADD]["writes"] == 2
    assert served[LIST]["reads"] == 2  # the re-read, both of its pages


async def test_the_known_wording_needs_no_re_read(tenant: Tenant, graph: GraphAdapter) -> None:
    object_id, principal = await foreign_app(tenant)
    assert await graph.add_application_owner(object_id, principal) is True
    await tenant.sim.admin.reset_counters()

    assert await graph.add_application_owner(object_id, principal) is False
    assert LIST not in await operations(tenant)


async def test_a_400_for_an_owner_not_there_still_fails(tenant: Tenant, graph: GraphAdapter) -> None:
    object_id, principal = await foreign_app(tenant, extra_owners=3)
    # Every owner add answered 400 (the fault's Request_BadRequest), the principal no owner.
    refused = Faults(error_rate=1.0, error_statuses=[400], operations=[ADD])
    await tenant.sim.admin.set_faults({"graph": refused})
    await tenant.sim.admin.reset_counters()

    with pytest.raises(PermanentFailure) as failed:
        await graph.add_application_owner(object_id, principal)
    assert failed.value.status == 400
    assert (await operations(tenant))[LIST]["reads"] == 1
    world = World.from_json(await tenant.sim.admin.dump_state())
    app = world.application(object_id)
    assert app is not None and principal not in app.owners

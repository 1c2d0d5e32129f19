"""`POST /applications/{id}/owners/$ref` through msgraph-sdk: who may add an owner, and Graph's
answers for a duplicate and an unknown directory object.

Source: learn.microsoft.com graph/api/application-post-owners (docs/simulator.md, "Graph owners").
"""

from __future__ import annotations

import pytest
from azure.identity.aio import ManagedIdentityCredential
from msgraph.generated.models.reference_create import ReferenceCreate
from msgraph.graph_service_client import GraphServiceClient

from cloudsim.state import World, new_id
from cloudsim.testing import RunningSimulator

from .conftest import graph_client
from .test_graph_owners import assert_denied, owned_app_ids, refused
from .test_people import _person_graph


def reference(sim: RunningSimulator, object_id: str) -> ReferenceCreate:
    return ReferenceCreate(odata_id=f"{sim.graph_url}/v1.0/directoryObjects/{object_id}")


async def add_owner(graph: GraphServiceClient, app_object_id: str, body: ReferenceCreate) -> None:
    await graph.applications.by_application_id(app_object_id).owners.ref.post(body)


async def _app_graph(
    sim: RunningSimulator, roles: list[str]
) -> tuple[str, GraphServiceClient, ManagedIdentityCredential]:
    """The simulator's managed identity, granted exactly `roles` in Graph."""
    world = World.from_json(await sim.admin.dump_state())
    world.graph_app_roles[world.caller_object_id] = roles
    await sim.admin.load_state(world)
    credential = ManagedIdentityCredential(connection_verify=str(sim.ca_path))
    return world.caller_object_id, graph_client(sim, credential), credential


async def test_owned_by_is_not_enough_to_add_an_owner_even_to_an_app_it_owns(
    cloud_env: RunningSimulator,
) -> None:
    own = await cloud_env.admin.seed_application("its own")
    other = await cloud_env.admin.seed_application("another")
    identity, graph, credential = await _app_graph(
        cloud_env, ["Application.ReadWrite.OwnedBy", "Directory.Read.All"]
    )
    async with credential:
        assert_denied(await refused(add_owner(graph, str(own["id"]), reference(cloud_env, identity))))
        other_principal = str(other["servicePrincipalId"])
        assert_denied(await refused(add_owner(graph, str(own["id"]), reference(cloud_env, other_principal))))


async def test_an_app_with_read_write_all_adds_an_owner_once_and_names_unknown_objects(
    cloud_env: RunningSimulator,
) -> None:
    foreign = await cloud_env.admin.seed_application("someone else's", owned=False)
    identity, graph, credential = await _app_graph(cloud_env, ["Application.ReadWrite.All"])
    async with credential:  # Directory.Read.All is needed with it
        assert_denied(await refused(add_owner(graph, str(foreign["id"]), reference(cloud_env, identity))))

    identity, graph, credential = await _app_graph(
        cloud_env, ["Application.ReadWrite.All", "Directory.Read.All"]
    )
    async with credential:
        await add_owner(graph, str(foreign["id"]), reference(cloud_env, identity))
        assert str(foreign["appId"]) in await owned_app_ids(graph, identity)

        duplicate = await refused(add_owner(graph, str(foreign["id"]), reference(cloud_env, identity)))
        assert duplicate.response_status_code == 400 and duplicate.error is not None
        assert duplicate.error.code == "Request_BadRequest"
        assert str(duplicate.error.message).startswith("One or more added object references already exist")

        unknown = await refused(add_owner(graph, str(foreign["id"]), reference(cloud_env, new_id())))
        assert unknown.response_status_code == 404 and unknown.error is not None
        assert unknown.error.code == "Request_ResourceNotFound"

        no_app = await refused(add_owner(graph, new_id(), reference(cloud_env, identity)))
        assert no_app.response_status_code == 404


async def test_a_person_adds_an_owner_to_an_app_they_own_or_as_an_administrator(
    cloud_env: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = await cloud_env.admin.seed_application("someone else's", owned=False)
    identity = World.from_json(await cloud_env.admin.dump_state()).caller_object_id
    scopes = ["Application.ReadWrite.All", "Directory.Read.All"]

    _oid, graph, credential = await _person_graph(cloud_env, monkeypatch, [], scopes)
    async with credential:  # neither an owner nor an administrator
        assert_denied(await refused(add_owner(graph, str(foreign["id"]), reference(cloud_env, identity))))

    admin = ["Cloud Application Administrator"]
    _oid, graph, credential = await _person_graph(
        cloud_env, monkeypatch, admin, ["Application.ReadWrite.All"]
    )
    async with credential:  # an administrator, without Directory.Read.All
        assert_denied(await refused(add_owner(graph, str(foreign["id"]), reference(cloud_env, identity))))

    oid, graph, credential = await _person_graph(cloud_env, monkeypatch, [], scopes)
    await cloud_env.admin.add_owner(str(foreign["appId"]), oid)
    async with credential:  # an owner now: a plain user may add another
        await add_owner(graph, str(foreign["id"]), reference(cloud_env, identity))
        assert str(foreign["appId"]) in await owned_app_ids(graph, identity)

    other = await cloud_env.admin.seed_application("another one", owned=False)
    _oid, graph, credential = await _person_graph(
        cloud_env, monkeypatch, admin, ["Directory.AccessAsUser.All"]
    )
    async with credential:  # an administrator with `az login`'s Directory.AccessAsUser.All
        await add_owner(graph, str(other["id"]), reference(cloud_env, identity))
        assert str(other["appId"]) in await owned_app_ids(graph, identity)


async def test_the_owners_of_an_application_are_listed_as_directory_objects(
    cloud_env: RunningSimulator,
) -> None:
    """`GET /applications/{id}/owners` (graph/api/application-list-owners): 200 and directoryObject
    objects with their type; readable with Application.Read.All, not without a read permission."""
    foreign = await cloud_env.admin.seed_application("someone else's", owned=False)
    other = await cloud_env.admin.seed_application("another")
    person = new_id()
    await cloud_env.admin.add_owner(str(foreign["appId"]), str(other["servicePrincipalId"]))
    await cloud_env.admin.add_owner(str(foreign["appId"]), person)

    _identity, graph, credential = await _app_graph(cloud_env, ["Application.Read.All"])
    async with credential:
        owners = graph.applications.by_application_id(str(foreign["id"])).owners
        page = await owners.get()
        assert page is not None and page.value is not None
        found = {str(item.id): item.odata_type for item in page.value}
        assert set(found) == {str(other["servicePrincipalId"]), person}
        assert found[str(other["servicePrincipalId"])] == "#microsoft.graph.servicePrincipal"

    _identity, graph, credential = await _app_graph(cloud_env, [])
    async with credential:
        assert_denied(await refused(graph.applications.by_application_id(str(foreign["id"])).owners.get()))

"""People: delegated tokens (`idtyp: user`, `scp`, a user's `oid`, no `roles`) and what Graph lets a
person do with them: their delegated permissions and directory roles, never the app's permissions.

Sources: docs/simulator.md, "People".
"""

from __future__ import annotations

import base64
import json

import pytest
from azure.identity.aio import ManagedIdentityCredential
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_service_client import GraphServiceClient

from cloudsim import tokens
from cloudsim.rights import add_person
from cloudsim.state import World
from cloudsim.testing import RunningSimulator, person_env

from .conftest import graph_client
from .test_graph_owners import credential as fic
from .test_graph_owners import owned_app_ids

GRAPH = "https://graph.microsoft.com/.default"


def claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    decoded: dict[str, object] = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return decoded


def test_app_tokens_say_app_and_delegated_tokens_say_user_with_scopes_and_no_roles() -> None:
    app, _ = tokens.mint(GRAPH, "tenant", "identity", roles=["Application.ReadWrite.OwnedBy"])
    assert claims(app)["idtyp"] == "app" and claims(app)["roles"] == ["Application.ReadWrite.OwnedBy"]
    assert "scp" not in claims(app)
    scopes = ["Application.ReadWrite.All", "User.Read"]
    person, _ = tokens.mint(GRAPH, "tenant", "user", roles=["ignored"], scopes=scopes)
    assert claims(person)["idtyp"] == "user"
    assert claims(person)["scp"] == "Application.ReadWrite.All User.Read"
    assert "roles" not in claims(person) and claims(person)["oid"] == "user"
    assert tokens.scopes_of(f"Bearer {person}") == frozenset(scopes)
    assert tokens.scopes_of(f"Bearer {app}") is None


async def _person_graph(
    sim: RunningSimulator, monkeypatch: pytest.MonkeyPatch, directory_roles: list[str], scopes: list[str]
) -> tuple[str, GraphServiceClient, ManagedIdentityCredential]:
    world = World.from_json(await sim.admin.dump_state())
    person = add_person(world, directory_roles)
    person.graph_scopes = scopes
    await sim.admin.load_state(world)
    monkeypatch.setenv("IDENTITY_ENDPOINT", person_env(sim.env, person.object_id)["IDENTITY_ENDPOINT"])
    credential = ManagedIdentityCredential(connection_verify=str(sim.ca_path))
    return person.object_id, graph_client(sim, credential), credential


async def test_a_persons_token_carries_their_oid_and_scopes(
    cloud_env: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    oid, _graph, credential = await _person_graph(cloud_env, monkeypatch, [], ["Application.ReadWrite.All"])
    async with credential:
        token = (await credential.get_token(GRAPH)).token
        arm = (await credential.get_token("https://management.azure.com/.default")).token
    assert claims(token)["oid"] == oid and claims(token)["idtyp"] == "user"
    assert claims(token)["scp"] == "Application.ReadWrite.All" and "roles" not in claims(token)
    assert claims(arm)["scp"] == "user_impersonation"


async def test_owned_objects_of_a_user_is_not_found(
    cloud_env: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    oid, graph, credential = await _person_graph(cloud_env, monkeypatch, [], ["Application.Read.All"])
    async with credential:
        with pytest.raises(ODataError) as raised:
            await owned_app_ids(graph, oid)
    assert raised.value.response_status_code == 404
    assert raised.value.error is not None and raised.value.error.code == "Request_ResourceNotFound"


async def test_a_person_writes_an_app_they_do_not_own_only_with_an_admin_role(
    cloud_env: RunningSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = await cloud_env.admin.seed_application("someone else's", owned=False)
    _oid, graph, credential = await _person_graph(cloud_env, monkeypatch, [], ["Application.ReadWrite.All"])
    credentials = graph.applications.by_application_id(str(foreign["id"])).federated_identity_credentials
    async with credential:
        with pytest.raises(ODataError) as refused:
            await credentials.post(fic("plain-user"))
    assert refused.value.response_status_code == 403

    admin_roles = ["Cloud Application Administrator"]
    _oid, graph, credential = await _person_graph(cloud_env, monkeypatch, admin_roles, ["User.Read"])
    credentials = graph.applications.by_application_id(str(foreign["id"])).federated_identity_credentials
    async with credential:
        with pytest.raises(ODataError) as unscoped:  # the role alone is not enough: the scope is needed
            await credentials.post(fic("no-scope"))
    assert unscoped.value.response_status_code == 403

    scopes = ["Application.ReadWrite.All"]
    _oid, graph, credential = await _person_graph(cloud_env, monkeypatch, admin_roles, scopes)
    credentials = graph.applications.by_application_id(str(foreign["id"])).federated_identity_credentials
    async with credential:
        created = await credentials.post(fic("administrator"))
    assert created is not None and created.name == "administrator"

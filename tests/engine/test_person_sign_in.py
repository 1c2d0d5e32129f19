"""The engine signed in as a person (a delegated token): it does not read what the token's user owns
(a user has no service principal: Graph answers 404), and the owner rule, which models the deployed
identity's Application.ReadWrite.OwnedBy, does not block; the person's own rights decide."""

from __future__ import annotations

import base64
import json

import pytest

from cloudsim.rights import add_person
from cloudsim.state import World
from cloudsim.testing import person_env
from cloudsim.tokens import mint
from reconciler.adapters.graph import token_is_delegated
from reconciler.engine.run import Status
from tests.engine.conftest import Tenant

GRAPH = "https://graph.microsoft.com"


def _without_idtyp(token: str) -> str:
    """A token as Entra issues it without the `idtyp` claim (it is documented as optional)."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    del claims["idtyp"]
    encoded = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{encoded}.{signature}"


def test_delegated_tokens_are_told_from_app_only_ones_by_idtyp_else_by_scp() -> None:
    app, _ = mint(GRAPH, "tenant", "identity", roles=["Application.ReadWrite.OwnedBy"])
    person, _ = mint(GRAPH, "tenant", "user", scopes=["Application.ReadWrite.All"])
    assert not token_is_delegated(app) and token_is_delegated(person)
    assert not token_is_delegated(_without_idtyp(app)) and token_is_delegated(_without_idtyp(person))
    assert not token_is_delegated("not-a-jwt")


async def sign_in_as_person(tenant: Tenant, monkeypatch: pytest.MonkeyPatch, roles: list[str]) -> str:
    world = World.from_json(await tenant.sim.admin.dump_state())
    person = add_person(world, roles)
    await tenant.sim.admin.load_state(world)
    monkeypatch.setenv("IDENTITY_ENDPOINT", person_env(tenant.sim.env, person.object_id)["IDENTITY_ENDPOINT"])
    return person.object_id


async def test_an_application_administrator_adopts_an_app_the_identity_does_not_own(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = await tenant.sim.admin.seed_application("sc-made-by-hand", owned=False)
    configs = [tenant.config("on-foreign", foreign["appId"])]
    as_identity = await tenant.run(configs)
    assert as_identity.outcomes[0].status is Status.BLOCKED

    await sign_in_as_person(tenant, monkeypatch, ["Cloud Application Administrator"])
    await tenant.sim.admin.reset_counters()
    report = await tenant.run(configs)

    assert report.all_converged, [(o.config_id, o.reason) for o in report.outcomes]
    adopted = tenant.sim.world.application_by_app_id(foreign["appId"])
    assert adopted is not None and len(adopted.federated_credentials) == 1
    counters = await tenant.sim.admin.counters()
    assert "servicePrincipals.ownedObjects" not in counters["graph"]["operations"]


async def test_a_person_without_the_right_fails_on_graphs_refusal_not_on_the_owner_rule(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    foreign = await tenant.sim.admin.seed_application("sc-made-by-hand", owned=False)
    await sign_in_as_person(tenant, monkeypatch, [])  # no directory role, not an owner
    report = await tenant.run([tenant.config("on-foreign", foreign["appId"])])

    outcome = report.outcomes[0]
    assert outcome.status is Status.FAILED_PERMANENT and "403" in outcome.reason, outcome.reason
    assert "does not own" not in outcome.reason

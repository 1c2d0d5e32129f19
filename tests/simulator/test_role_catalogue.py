"""The simulator's built-in roles and the product's catalogue (reconciler/core/roles.py) agree.

Both list Azure's built-in roles on their own (the simulator never imports the product), so
a typo in a GUID or a name, or a role one side thinks can change access and the other does
not, would let the tests pass against a simulator that no longer behaves like Azure.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from cloudsim.state import builtin_role_definitions
from reconciler.core.roles import BUILTIN_ROLES, builtin_role, is_privileged

ROOT = Path(__file__).resolve().parents[2]
SIMULATED = builtin_role_definitions()


def test_every_simulated_built_in_role_has_the_products_id_and_name() -> None:
    product = {role.id: role.name for role in BUILTIN_ROLES}
    simulated = {role.id: role.role_name for role in SIMULATED}
    assert len(simulated) == len(SIMULATED), "the simulator lists a role id twice"
    assert {i: product.get(i) for i in simulated} == simulated


def test_the_simulator_and_the_product_class_the_same_roles_as_privileged() -> None:
    for simulated in SIMULATED:
        known = builtin_role(simulated.id)
        assert known is not None, simulated.role_name
        by_simulator = is_privileged(tuple(simulated.actions), tuple(simulated.not_actions))
        assert by_simulator == known.privileged, simulated.role_name
    privileged = {r.role_name for r in SIMULATED if is_privileged(tuple(r.actions), tuple(r.not_actions))}
    assert privileged == {"Owner", "User Access Administrator", "Role Based Access Control Administrator"}


def test_the_simulator_knows_every_role_the_shipped_policy_allows() -> None:
    policy = yaml.safe_load((ROOT / "policy.yaml").read_text(encoding="utf-8"))
    simulated = {role.role_name for role in SIMULATED}
    assert set(policy["roles"]) <= simulated

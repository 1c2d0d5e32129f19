"""The built-in role catalogue and the privileged-role rule: effective permissions, as Azure has them."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.core.roles import (
    BUILTIN_ROLES,
    PRIVILEGED_OPERATIONS,
    builtin_role,
    is_privileged,
    privileged_witness,
)

CONTRIBUTOR_NOT_ACTIONS = (
    "Microsoft.Authorization/*/Delete",
    "Microsoft.Authorization/*/Write",
    "Microsoft.Authorization/elevateAccess/Action",
)


def matches(pattern: str, operation: str) -> bool:
    """ARM's matching, written independently of the product: `*` is any text, ASCII case ignored."""
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, operation, re.DOTALL | re.IGNORECASE | re.ASCII) is not None


def allowed(actions: tuple[str, ...], not_actions: tuple[str, ...], operation: str) -> bool:
    """Azure's effective permission: some action matches and no not-action does."""
    return any(matches(a, operation) for a in actions) and not any(matches(n, operation) for n in not_actions)


def test_the_privileged_built_in_roles_are_the_three_that_manage_access() -> None:
    privileged = {role.name for role in BUILTIN_ROLES if role.privileged}
    assert privileged == {"Owner", "User Access Administrator", "Role Based Access Control Administrator"}


@pytest.mark.parametrize("kept", CONTRIBUTOR_NOT_ACTIONS)
def test_contributor_is_not_privileged_only_because_of_each_of_its_not_actions(kept: str) -> None:
    contributor = builtin_role("Contributor")
    assert contributor is not None and not contributor.privileged
    fewer = tuple(n for n in contributor.not_actions if n != kept)
    assert is_privileged(contributor.actions, fewer)


@pytest.mark.parametrize(
    ("actions", "not_actions"),
    [
        (("*",), ("Microsoft.Authorization/roleAssignments/write",)),  # roleDefinitions/write is left
        (("*",), ("Microsoft.Authorization/*/Write", "Microsoft.Authorization/*/Delete")),  # elevateAccess
        (("Microsoft.Authorization/*",), ("Microsoft.Authorization/*/write",)),  # deletes are left
        (("*/write",), ("Microsoft.Authorization/roleAssignments/write",)),
        (("Microsoft.Authorization/roleDefinitions/write", "*/read"), ()),
        (("Microsoft.Authorization/elevateAccess/Action",), ()),
        (("MICROSOFT.AUTHORIZATION/ROLEASSIGNMENTS/WRITE",), ()),  # ARM ignores case
        (("Microsoft.Authorization/policyAssignments/delete",), ()),
        (("Microsoft.*",), CONTRIBUTOR_NOT_ACTIONS[:2]),
        # `*` is ARM's only wildcard: brackets and question marks are literal and exclude nothing.
        (
            ("*",),
            ("Microsoft.Authorization/[a-z]*", "Microsoft.Authorization/?*", *CONTRIBUTOR_NOT_ACTIONS[1:]),
        ),
        # A look-alike letter (the Kelvin sign) is not the letter ARM compares.
        (("Microsoft.Authorization/locks/*",), ("Microsoft.Authorization/loc\u212as/*",)),
    ],
)
def test_wildcards_with_only_some_not_actions_are_privileged(
    actions: tuple[str, ...], not_actions: tuple[str, ...]
) -> None:
    assert is_privileged(actions, not_actions)
    witness = privileged_witness(actions, not_actions)
    assert witness is not None and allowed(actions, not_actions, witness)


@pytest.mark.parametrize(
    ("actions", "not_actions"),
    [
        (("*/read",), ()),
        (("Microsoft.Authorization/*/read", "Microsoft.KeyVault/*"), ()),
        (("Microsoft.Authorization/*",), ("Microsoft.Authorization/*",)),
        (("*",), tuple(n.upper() for n in CONTRIBUTOR_NOT_ACTIONS)),
        (("Microsoft.Authorization/roleAssignments/writeback",), ()),  # not an operation we call privileged
        ((), ()),
    ],
)
def test_roles_that_cannot_change_access_are_not_privileged(
    actions: tuple[str, ...], not_actions: tuple[str, ...]
) -> None:
    assert not is_privileged(actions, not_actions)


def test_lookup_by_name_is_case_insensitive_and_by_id() -> None:
    by_name = builtin_role("key vault reader")
    by_id = builtin_role("21090545-7CA7-4776-B22C-E363652D74D2")
    assert by_name is not None and by_name == by_id
    assert builtin_role("Key Vault Janitor") is None


# ---------------------------------------------------------------- properties (hypothesis)

SEGMENTS = (
    "Microsoft.Authorization",
    "Microsoft.Compute",
    "roleAssignments",
    "roleDefinitions",
    "policyAssignments",
    "elevateAccess",
    "locks",
    "virtualMachines",
    "write",
    "delete",
    "read",
    "action",
)


def any_case(text: str) -> st.SearchStrategy[str]:
    return st.lists(st.booleans(), min_size=len(text), max_size=len(text)).map(
        lambda upper: "".join(c.upper() if u else c.lower() for c, u in zip(text, upper, strict=True))
    )


@st.composite
def privileged_operations(draw: st.DrawFn) -> str:
    """A concrete operation under Microsoft.Authorization that changes access."""
    if draw(st.booleans()):
        return draw(any_case("Microsoft.Authorization/elevateAccess/action"))
    resource = draw(
        st.sampled_from(["roleAssignments", "roleDefinitions", "policyAssignments", "locks"])
        | st.from_regex(r"[A-Za-z]{1,10}(/[A-Za-z]{1,10})?", fullmatch=True)
    )
    verb = draw(st.sampled_from(["write", "delete", "Write", "Delete"]))
    return f"Microsoft.Authorization/{resource}/{verb}"


@st.composite
def generalised(draw: st.DrawFn, operation: str) -> str:
    """A pattern that matches `operation`: some segments, or parts of them, replaced by `*`."""
    parts = []
    for segment in operation.split("/"):
        how = draw(st.sampled_from(["keep", "keep", "star", "prefix"]))
        parts.append(segment if how == "keep" else "*" if how == "star" else segment[:2] + "*")
    pattern = "/".join(parts)
    return draw(any_case(pattern))


@st.composite
def patterns(draw: st.DrawFn) -> str:
    """An ARM action pattern from the vocabulary above, with wildcards anywhere."""
    segments = draw(st.lists(st.sampled_from([*SEGMENTS, "*", "*"]), min_size=1, max_size=4))
    return draw(any_case("/".join(segments)))


@given(privileged_operations().flatmap(lambda op: st.tuples(st.just(op), generalised(op))), st.data())
def test_a_role_whose_effective_permissions_allow_a_privileged_operation_is_privileged(
    operation_and_pattern: tuple[str, str], data: st.DataObject
) -> None:
    operation, pattern = operation_and_pattern
    actions = (pattern, *data.draw(st.lists(patterns(), max_size=3)))
    not_actions = tuple(data.draw(st.lists(patterns(), max_size=4)))
    witness = privileged_witness(actions, not_actions)
    if allowed(actions, not_actions, operation):
        assert is_privileged(actions, not_actions), (actions, not_actions, operation)
    if witness is not None:  # never a false alarm: the witness is allowed and privileged
        assert allowed(actions, not_actions, witness)
        assert any(matches(p, witness) for p in PRIVILEGED_OPERATIONS)
    assert is_privileged(actions, not_actions) == (witness is not None)


@given(
    st.lists(patterns(), max_size=4),
    st.permutations(CONTRIBUTOR_NOT_ACTIONS).flatmap(lambda ns: st.tuples(*(any_case(n) for n in ns))),
    st.lists(patterns(), max_size=3),
)
def test_not_actions_that_remove_every_privileged_operation_make_a_role_not_privileged(
    actions: list[str], removed: tuple[str, ...], others: list[str]
) -> None:
    assert not is_privileged(("*", *actions), (*others, *removed))

"""Built-in Azure role definitions the reconciler knows by name, and the privileged-role rule.

The ids are Azure's fixed built-in role definition GUIDs (the same in every tenant and
cloud). The actions are the parts of each definition that matter to the privileged
check.

A role is privileged when its effective permissions (`actions` minus `notActions`, as Azure
evaluates them) still allow a write or a delete under Microsoft.Authorization (role
assignments, role definitions, policy assignments, locks...) or `elevateAccess`: a principal
holding one could grant itself anything. These are exactly the operations Microsoft's
Contributor role removes with its `notActions` to keep it from managing access.
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

PRIVILEGED_OPERATIONS = (
    "Microsoft.Authorization/*/write",
    "Microsoft.Authorization/*/delete",
    "Microsoft.Authorization/elevateAccess/action",
)

# Work the search may do (automaton steps) before it gives up: real definitions need a few
# thousand (Contributor's under 10,000), this is about half a second. A definition that
# needs more is classed privileged rather than searched for long (fail closed).
_SEARCH_BUDGET = 1_000_000

# ARM compares operation strings case-insensitively. Only ASCII letters are folded: a
# look-alike such as the Kelvin sign must not match the "k" ARM would not match it to.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_NAMESPACE = "microsoft.authorization/"


@dataclass(frozen=True)
class RoleDefinition:
    """The parts of an Azure role definition the policy reasons about."""

    id: str  # the role definition GUID, lower case
    name: str
    actions: tuple[str, ...] = ()
    not_actions: tuple[str, ...] = ()

    @property
    def privileged(self) -> bool:
        """True when the effective permissions can change access (see the module's docstring)."""
        return is_privileged(self.actions, self.not_actions)


@lru_cache(maxsize=1024)
def is_privileged(actions: tuple[str, ...], not_actions: tuple[str, ...]) -> bool:
    """Whether `actions` minus `not_actions` still allow any of PRIVILEGED_OPERATIONS."""
    return privileged_witness(actions, not_actions) is not None


def privileged_witness(actions: Sequence[str], not_actions: Sequence[str]) -> str | None:
    """A privileged operation (lower case) the permissions allow, or None when there is none.

    When the search runs out of budget it returns what it has read so far: undecided counts
    as privileged.

    Wildcards make the operations a role allows an infinite set, so instead of listing
    operations this searches for a string that a privileged pattern and an action match and
    no not-action matches: a breadth-first walk over the product of the patterns' automata.
    A character no pattern names stands for every such character (`*` is the only wildcard).
    """
    privileged = [_Glob(p) for p in PRIVILEGED_OPERATIONS]
    allowed = [_Glob(p) for p in actions if _Glob(p).may_match_under(_NAMESPACE)]
    denied = [_Glob(p) for p in not_actions if _Glob(p).may_match_under(_NAMESPACE)]
    globs = [*privileged, *allowed, *denied]
    alphabet = sorted({c for g in globs for c in g.pattern if c != "*"})
    alphabet.append(next(chr(n) for n in range(0x21, 0x110000) if chr(n) not in alphabet))
    moves = [[g.literal_positions(c) for g in globs] for c in alphabet]
    ends = (len(privileged), len(privileged) + len(allowed))

    def verdict(states: tuple[int, ...]) -> bool | None:
        """True: a witness ends here; False: none can follow; None: keep reading."""
        mine, theirs, excluded = states[: ends[0]], states[ends[0] : ends[1]], states[ends[1] :]
        if _accepts(privileged, mine) and _accepts(allowed, theirs) and not _accepts(denied, excluded):
            return True
        return None if any(mine) and any(theirs) else False

    start = tuple(g.start for g in globs)
    frontier, seen, budget = [(start, "")], {start}, _SEARCH_BUDGET
    while frontier:
        next_frontier = []
        for states, text in frontier:
            found = verdict(states)
            if found:
                return text
            if found is False:
                continue
            budget -= len(alphabet) * len(globs)
            if budget < 0:
                return text  # too complex to decide: fail closed
            for char, literal in zip(alphabet, moves, strict=True):
                following = tuple(g.step(s, m) for g, s, m in zip(globs, states, literal, strict=True))
                if following not in seen:
                    seen.add(following)
                    next_frontier.append((following, text + char))
        frontier = next_frontier
    return None


def allows(actions: Sequence[str], not_actions: Sequence[str], operation: str) -> bool:
    """Whether `actions` minus `not_actions` allow this one concrete operation (no wildcards in it).

    ARM's evaluation: some action matches the operation and no not-action does (`*` matches
    any text, ASCII letters compared without case).
    """
    wanted = operation.translate(_ASCII_LOWER)
    return any(_Glob(a).matches(wanted) for a in actions) and not any(
        _Glob(n).matches(wanted) for n in not_actions
    )


class _Glob:
    """An ARM operation pattern as an automaton: a state is a bit set of positions in the
    pattern, and `*` (the only wildcard) matches any characters, `/` included."""

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern.translate(_ASCII_LOWER)
        self.stars = self.literal_positions("*")
        self.start = self._closure(1)

    def literal_positions(self, char: str) -> int:
        return sum(1 << i for i, c in enumerate(self.pattern) if c == char)

    def step(self, states: int, literal: int) -> int:
        return self._closure(((states & literal) << 1) | (states & self.stars))

    def accepts(self, states: int) -> bool:
        return bool(states >> len(self.pattern) & 1)

    def matches(self, text: str) -> bool:
        """Whether the pattern matches this (lower-case) text."""
        states = self.start
        for char in text:
            states = self.step(states, self.literal_positions(char))
        return self.accepts(states)

    def may_match_under(self, prefix: str) -> bool:
        """Whether some string starting with `prefix` could match (a quick filter, never wrong)."""
        fixed = self.pattern.split("*", 1)[0]
        if "*" not in self.pattern:
            return fixed.startswith(prefix)
        return fixed.startswith(prefix) or prefix.startswith(fixed)

    def _closure(self, states: int) -> int:
        # A `*` may match nothing, so being before it is also being after it.
        while (more := states | (states & self.stars) << 1) != states:
            states = more
        return states


def _accepts(globs: Sequence[_Glob], states: Sequence[int]) -> bool:
    return any(g.accepts(s) for g, s in zip(globs, states, strict=True))


_READ_ALL = ("*/read",)

BUILTIN_ROLES: tuple[RoleDefinition, ...] = (
    RoleDefinition("8e3af657-a8ff-443c-a75c-2fe8c4bcb635", "Owner", ("*",)),
    RoleDefinition(
        "b24988ac-6180-42a0-ab88-20f7382dd24c",
        "Contributor",
        ("*",),
        (
            "Microsoft.Authorization/*/Delete",
            "Microsoft.Authorization/*/Write",
            "Microsoft.Authorization/elevateAccess/Action",
            "Microsoft.Blueprint/blueprintAssignments/write",
            "Microsoft.Blueprint/blueprintAssignments/delete",
            "Microsoft.Compute/galleries/share/action",
        ),
    ),
    RoleDefinition("acdd72a7-3385-48ef-bd42-f606fba81ae7", "Reader", _READ_ALL),
    RoleDefinition(
        "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
        "User Access Administrator",
        ("*/read", "Microsoft.Authorization/*", "Microsoft.Support/*"),
    ),
    RoleDefinition(
        "f58310d9-a9f6-439a-9e8d-f62e7b41a168",
        "Role Based Access Control Administrator",
        (
            "Microsoft.Authorization/roleAssignments/write",
            "Microsoft.Authorization/roleAssignments/delete",
            "*/read",
            "Microsoft.Support/*",
        ),
    ),
    RoleDefinition("21090545-7ca7-4776-b22c-e363652d74d2", "Key Vault Reader", _READ_ALL),
    RoleDefinition("4633458b-17de-408a-b874-0445c86b69e6", "Key Vault Secrets User", ()),
    RoleDefinition("b86a8fe4-44ce-4948-aee5-eccb2c155cd7", "Key Vault Secrets Officer", _READ_ALL),
    RoleDefinition("12338af0-0e69-4776-bea7-57ae8d297424", "Key Vault Crypto User", ()),
    RoleDefinition("a4417e6f-fecd-4de8-b567-7b0420556985", "Key Vault Certificates Officer", _READ_ALL),
    RoleDefinition("00482a5a-887f-4fb3-b363-3b7fe8e74483", "Key Vault Administrator", _READ_ALL),
    RoleDefinition("2a2b9908-6ea1-4ae2-8e65-a410df84e7d1", "Storage Blob Data Reader", ()),
    RoleDefinition("ba92f5b4-2d11-453d-a403-e96b0029c9fe", "Storage Blob Data Contributor", ()),
    RoleDefinition("7f951dda-4ed3-4680-a7ca-43fe172d538d", "AcrPull", ()),
    RoleDefinition("8311e382-0749-4cb8-b61a-304f252e45ec", "AcrPush", ()),
    RoleDefinition("de139f84-1756-47ae-9be6-808fbbe84772", "Website Contributor", _READ_ALL),
)

_BY_NAME = {role.name.lower(): role for role in BUILTIN_ROLES}
_BY_ID = {role.id: role for role in BUILTIN_ROLES}


def builtin_role(name_or_id: str) -> RoleDefinition | None:
    """The built-in role with this display name (case-insensitive) or GUID, if known."""
    key = name_or_id.strip().lower()
    return _BY_ID.get(key) or _BY_NAME.get(key)

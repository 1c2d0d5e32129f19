"""The grant policy: what any config may ask for, whoever wrote it.

A ticket must never grant more than the platform team allows, so every config is
checked against an allow-list of organizations, roles and scope prefixes. Roles that can
write role assignments are privileged (a principal holding one could grant itself
anything) and are denied unless the policy names them in `privilegedRoles`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.core.identifiers import Guid, IdentifierError, ScopePattern
from reconciler.core.model import CustomRole, FederationConfig, RoleGrant
from reconciler.core.roles import ROLE_ASSIGNMENT_WRITE, builtin_role, grants
from reconciler.core.validation import API_VERSION, Document, Problem

POLICY_KIND = "GrantPolicy"
_POLICY_FIELDS = {"apiVersion", "kind", "organizations", "roles", "privilegedRoles", "scopes"}


class Rule(StrEnum):
    ORGANIZATION = "organization-not-allowed"
    ROLE = "role-not-allowed"
    PRIVILEGED = "privileged-role"
    UNKNOWN_ROLE = "role-not-classified"
    SCOPE = "scope-not-allowed"


@dataclass(frozen=True)
class Violation:
    """Which config asked for what, and which rule forbids it."""

    config_id: str
    rule: Rule
    subject: str  # the organization or the grant that broke the rule
    message: str

    def __str__(self) -> str:
        return f"{self.config_id}: {self.message} [{self.rule}]"


@dataclass(frozen=True)
class GrantPolicy:
    organizations: frozenset[str]  # lower case
    role_ids: frozenset[str]  # allowed role definition GUIDs
    privileged_role_ids: frozenset[str]  # privileged roles explicitly allowed
    scopes: tuple[ScopePattern, ...]

    def check(self, config: FederationConfig, custom_roles: Iterable[CustomRole] = ()) -> list[Violation]:
        """Every rule the config breaks; an empty list means it may be applied."""
        violations: list[Violation] = []
        if config.organization.lower() not in self.organizations:
            violations.append(
                Violation(
                    config.id,
                    Rule.ORGANIZATION,
                    config.organization,
                    f"organization {config.organization!r} is not in the policy's organizations",
                )
            )
        known = {role.id: role for role in custom_roles}
        for grant in config.role_grants:
            violations.extend(self._check_grant(config.id, grant, known))
        return violations

    def _check_grant(
        self, config_id: str, grant: RoleGrant, custom: Mapping[str, CustomRole]
    ) -> list[Violation]:
        found: list[Violation] = []

        def deny(rule: Rule, message: str) -> None:
            found.append(Violation(config_id, rule, grant.label, message))

        privileged = _is_privileged(grant.role_id, custom)
        if privileged is None and grant.role_id not in self.role_ids | self.privileged_role_ids:
            deny(
                Rule.UNKNOWN_ROLE,
                f"role {grant.role_name or grant.role_id} is unknown, so it may be privileged",
            )
        elif privileged and grant.role_id not in self.privileged_role_ids:
            deny(
                Rule.PRIVILEGED,
                f"role {grant.role_name or grant.role_id} can write role assignments and is not listed "
                "in the policy's privilegedRoles",
            )
        elif not privileged and grant.role_id not in self.role_ids:
            deny(Rule.ROLE, f"role {grant.role_name or grant.role_id} is not in the policy's roles")
        if not any(pattern.covers(grant.arm_scope) for pattern in self.scopes):
            deny(Rule.SCOPE, f"scope {grant.scope} is not under any of the policy's scopes")
        return found


def _is_privileged(role_id: str, custom: Mapping[str, CustomRole]) -> bool | None:
    """True or False when the role's permissions are known, None when they are not."""
    builtin = builtin_role(role_id)
    if builtin is not None:
        return builtin.can_write_role_assignments
    role = custom.get(role_id)
    if role is None:
        return None
    return grants(role.actions, role.not_actions, ROLE_ASSIGNMENT_WRITE)


def parse_policy(document: Document) -> tuple[GrantPolicy | None, list[Problem]]:
    problems: list[Problem] = []

    def fail(field: str, message: str) -> None:
        problems.append(Problem(document.source, document.index, field, message))

    body = document.body
    if not isinstance(body, Mapping):
        fail("", "expected a mapping with organizations, roles and scopes")
        return None, problems
    for key in body:
        if key not in _POLICY_FIELDS:
            fail(str(key), f"unknown field; expected one of {', '.join(sorted(_POLICY_FIELDS))}")
    if body.get("apiVersion") != API_VERSION:
        fail("apiVersion", f"expected {API_VERSION!r}, got {body.get('apiVersion')!r}")
    if body.get("kind") != POLICY_KIND:
        fail("kind", f"expected {POLICY_KIND!r}, got {body.get('kind')!r}")
    organizations = _strings(body, "organizations", fail)
    roles = _role_ids(body, "roles", fail)
    privileged = _role_ids(body, "privilegedRoles", fail, required=False)
    scopes = _scope_patterns(body, fail)
    if problems:
        return None, problems
    policy = GrantPolicy(
        organizations=frozenset(o.lower() for o in organizations),
        role_ids=frozenset(roles),
        privileged_role_ids=frozenset(privileged),
        scopes=tuple(scopes),
    )
    return policy, []


def _strings(body: Mapping[str, Any], key: str, fail: Any, *, required: bool = True) -> list[str]:
    value = body.get(key)
    if value is None and not required:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        fail(key, "expected a list of non-empty strings")
        return []
    return [v.strip() for v in value]


def _role_ids(body: Mapping[str, Any], key: str, fail: Any, *, required: bool = True) -> list[str]:
    ids: list[str] = []
    for role in _strings(body, key, fail, required=required):
        builtin = builtin_role(role)
        if builtin is not None:
            ids.append(builtin.id)
        elif Guid.is_valid(role):
            ids.append(str(Guid(role)))
        else:
            fail(key, f"unknown role {role!r}: use a built-in role name or a role definition GUID")
    return ids


def _scope_patterns(body: Mapping[str, Any], fail: Any) -> list[ScopePattern]:
    patterns: list[ScopePattern] = []
    for position, text in enumerate(_strings(body, "scopes", fail)):
        try:
            patterns.append(ScopePattern(text))
        except IdentifierError as error:
            fail(f"scopes[{position}]", f"expected an ARM scope prefix, '*' for one segment; {error.message}")
    return patterns

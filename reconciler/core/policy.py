"""The grant policy: what any config may ask for, whoever wrote it.

A ticket must never grant more than the platform team allows, so every config is
checked against an allow-list of organizations, roles and scope prefixes. Roles that can
write role assignments are privileged (a principal holding one could grant itself
anything) and are denied unless the policy names them in `privilegedRoles`.

Sender rights: `ticketSources` may name the ticketing systems and the organizations and
projects each may manage. Every ticket action (upsert, delete, reconcile) passes the same
organization and source checks, on the config it sends and on the config it touches.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from reconciler.core.model import CustomRole, FederationConfig, RoleGrant, normalise_scope
from reconciler.core.roles import ROLE_ASSIGNMENT_WRITE, builtin_role, grants
from reconciler.core.validation import API_VERSION, Document, Problem

POLICY_KIND = "GrantPolicy"
_POLICY_FIELDS = {
    "apiVersion",
    "kind",
    "organizations",
    "roles",
    "privilegedRoles",
    "scopes",
    "ticketSources",
}
_SOURCE_FIELDS = {"name", "organizations", "projects"}
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # the ticket's `source`, as the schema says


class Rule(StrEnum):
    ORGANIZATION = "organization-not-allowed"
    ROLE = "role-not-allowed"
    PRIVILEGED = "privileged-role"
    UNKNOWN_ROLE = "role-not-classified"
    SCOPE = "scope-not-allowed"
    SOURCE = "source-not-allowed"


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
class ScopePattern:
    """An allowed scope prefix; `*` stands for exactly one path segment."""

    pattern: str

    def covers(self, scope: str) -> bool:
        return self._regex.match(scope) is not None

    @property
    def _regex(self) -> re.Pattern[str]:
        segments = [r"[^/]+" if s == "*" else re.escape(s) for s in self.pattern.strip("/").split("/")]
        return re.compile("^/" + "/".join(segments) + "(/|$)")


@dataclass(frozen=True)
class TicketSource:
    """A ticketing system (a ticket's `source`) and the organizations and projects it may manage."""

    name: str
    organizations: frozenset[str]  # lower case: every project of these
    projects: frozenset[tuple[str, str]]  # lower case (organization, project)

    def may_manage(self, organization: str, project: str) -> bool:
        org = organization.lower()
        return org in self.organizations or (org, project.lower()) in self.projects


@dataclass(frozen=True)
class GrantPolicy:
    organizations: frozenset[str]  # lower case
    role_ids: frozenset[str]  # allowed role definition GUIDs
    privileged_role_ids: frozenset[str]  # privileged roles explicitly allowed
    scopes: tuple[ScopePattern, ...]
    # Empty: tickets are not checked by source. Otherwise every ticket must name one of these.
    ticket_sources: tuple[TicketSource, ...] = ()

    def check(self, config: FederationConfig, custom_roles: Iterable[CustomRole] = ()) -> list[Violation]:
        """Every rule the config breaks; an empty list means it may be applied."""
        violations = self._check_organization(config)
        known = {role.id: role for role in custom_roles}
        for grant in config.role_grants:
            violations.extend(self._check_grant(config.id, grant, known))
        return violations

    def check_sender(self, config: FederationConfig, source: str | None) -> list[Violation]:
        """The organization and project checks of a ticket action on `config`, whatever the action.

        A delete or reconcile ticket carries only an id: this is checked on the stored config it
        names, so no ticket can reach a config in an organization or project its source may not
        manage. (An upsert also passes `check` on the config it sends.)
        """
        return self._check_organization(config) + self._check_source(config, source)

    def _check_organization(self, config: FederationConfig) -> list[Violation]:
        if config.organization.lower() in self.organizations:
            return []
        message = f"organization {config.organization!r} is not in the policy's organizations"
        return [Violation(config.id, Rule.ORGANIZATION, config.organization, message)]

    def _check_source(self, config: FederationConfig, source: str | None) -> list[Violation]:
        if not self.ticket_sources:
            return []
        where = f"{config.organization}/{config.project}"
        rights = next((s for s in self.ticket_sources if s.name == source), None)
        if rights is None:
            names = ", ".join(s.name for s in self.ticket_sources)
            message = f"ticket source {source!r} is not one of the policy's ticketSources ({names})"
            return [Violation(config.id, Rule.SOURCE, str(source), message)]
        if rights.may_manage(config.organization, config.project):
            return []
        message = f"ticket source {source!r} may not manage project {where!r}"
        return [Violation(config.id, Rule.SOURCE, where, message)]

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
        if not any(pattern.covers(grant.scope) for pattern in self.scopes):
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
    scopes = _strings(body, "scopes", fail)
    for scope in scopes:
        if not scope.startswith("/"):
            fail("scopes", f"expected ARM scope prefixes starting with '/', got {scope!r}")
    allowed = frozenset(o.lower() for o in organizations)
    sources = _ticket_sources(body.get("ticketSources"), allowed, fail)
    if problems:
        return None, problems
    policy = GrantPolicy(
        organizations=allowed,
        role_ids=frozenset(roles),
        privileged_role_ids=frozenset(privileged),
        scopes=tuple(ScopePattern(normalise_scope(s)) for s in scopes),
        ticket_sources=sources,
    )
    return policy, []


def _ticket_sources(value: Any, organizations: frozenset[str], fail: Any) -> tuple[TicketSource, ...]:
    """`ticketSources`: a list of {name, organizations, projects}; absent means no source checks."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value:
        fail("ticketSources", "expected a non-empty list of {name, organizations, projects}")
        return ()
    sources: list[TicketSource] = []
    for index, entry in enumerate(value):
        field = f"ticketSources[{index}]"
        source = _ticket_source(entry, field, organizations, fail)
        if source is not None and any(s.name == source.name for s in sources):
            fail(f"{field}.name", f"source {source.name!r} is listed twice")
        elif source is not None:
            sources.append(source)
    return tuple(sources)


def _ticket_source(entry: Any, field: str, organizations: frozenset[str], fail: Any) -> TicketSource | None:
    if not isinstance(entry, Mapping) or set(entry) - _SOURCE_FIELDS:
        fail(field, "expected a mapping with name, and organizations and/or projects")
        return None
    name = entry.get("name")
    if not isinstance(name, str) or not SOURCE_NAME.fullmatch(name):
        fail(
            f"{field}.name",
            "expected 1-64 lower-case letters, digits and '-', starting with a letter or digit",
        )
        return None
    orgs = _strings(entry, "organizations", lambda _, m: fail(f"{field}.organizations", m), required=False)
    projects: set[tuple[str, str]] = set()
    for item in _strings(entry, "projects", lambda _, m: fail(f"{field}.projects", m), required=False):
        org, slash, project = item.partition("/")
        if not slash or not org or not project.strip() or "/" in project:
            fail(f"{field}.projects", f"expected 'organization/project', got {item!r}")
        else:
            projects.add((org.strip().lower(), project.strip().lower()))
    for org in {o.lower() for o in orgs} | {org for org, _ in projects}:
        if org not in organizations:
            fail(field, f"organization {org!r} is not in the policy's organizations")
    if not orgs and not projects:
        fail(field, "expected organizations or projects: a source that may manage nothing is a mistake")
    return TicketSource(name, frozenset(o.lower() for o in orgs), frozenset(projects))


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
        elif re.fullmatch(r"[0-9a-fA-F-]{36}", role):
            ids.append(role.lower())
        else:
            fail(key, f"unknown role {role!r}: use a built-in role name or a role definition GUID")
    return ids

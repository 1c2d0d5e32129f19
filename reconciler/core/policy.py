"""The grant policy: what any config may ask for, whoever wrote it.

A ticket must never grant more than the platform team allows, so every config is
checked against an allow-list of organizations, roles and scope prefixes. Roles whose
effective permissions can change access are privileged (a principal holding one could grant
itself anything, see core/roles.py) and are denied unless the policy names them in
`privilegedRoles`. An application claimed by one ADO project (reconciler.core.tenancy) serves
other projects only where `sharedApplications` names it and them.

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

from reconciler.core.identifiers import Guid, IdentifierError, OrganizationName, ScopePattern
from reconciler.core.model import ApplicationRef, CustomRole, FederationConfig, RoleGrant
from reconciler.core.roles import builtin_role, is_privileged
from reconciler.core.tenancy import Tenant, app_key, claim_key
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
    "sharedApplications",
}
_SOURCE_FIELDS = {"name", "organizations", "projects"}
SOURCE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")  # the ticket's `source`, as the schema says
_SHARE_FIELDS = {"appId", "displayName", "projects"}


class Rule(StrEnum):
    ORGANIZATION = "organization-not-allowed"
    ROLE = "role-not-allowed"
    PRIVILEGED = "privileged-role"
    UNKNOWN_ROLE = "role-not-classified"
    SCOPE = "scope-not-allowed"
    SOURCE = "source-not-allowed"
    # Not a policy rule but Entra's: the reconciler's identity may write only to applications it
    # owns (Application.ReadWrite.OwnedBy); a person must add it as owner (reconciler.core.plan).
    NOT_OWNER = "application-not-owned-by-reconciler"
    # Nor this: an adopted application's owners name the ADO project allowed to use it in its
    # tenant tag (reconciler.core.tenancy); without one it belongs to nobody yet.
    NOT_TAGGED = "application-not-tagged"


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
class SharedApplication:
    """An application that configs of the listed projects may use, whoever claimed it first."""

    application: str  # its claim key (reconciler.core.tenancy.claim_key)
    projects: frozenset[str]  # `organization/project` or `organization/*`, lower case

    def allows(self, tenant: Tenant) -> bool:
        return str(tenant) in self.projects or f"{tenant.organization}/*" in self.projects


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
    shared_applications: tuple[SharedApplication, ...] = ()
    # Empty: tickets are not checked by source. Otherwise every ticket must name one of these.
    ticket_sources: tuple[TicketSource, ...] = ()

    def may_use_application(self, keys: Iterable[str], owner: Tenant | None, tenant: Tenant) -> bool:
        """Whether a config of `tenant` may use the application known by these claim keys.

        Its own tenant's, or an unclaimed one, always; another tenant's only when shared with it.
        """
        if owner is None or owner == tenant:
            return True
        names = set(keys)
        return any(s.application in names and s.allows(tenant) for s in self.shared_applications)

    def check(
        self, config: FederationConfig, custom_roles: Iterable[CustomRole] | None = None
    ) -> list[Violation]:
        """Every rule the config breaks; an empty list means it may be applied.

        `custom_roles` are the definitions read from ARM for the roles the built-in catalogue
        does not know. Without them (a ticket or a file checked before anything is read) a
        custom role passes on the lists alone and the plan checks it again with its definition;
        with them, a role whose definition was not found is treated as privileged.
        """
        violations = self._check_organization(config)
        known = None if custom_roles is None else {role.id: role for role in custom_roles}
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
        self, config_id: str, grant: RoleGrant, custom: Mapping[str, CustomRole] | None
    ) -> list[Violation]:
        found: list[Violation] = []

        def deny(rule: Rule, message: str) -> None:
            found.append(Violation(config_id, rule, grant.label, message))

        role_problem = self._role_problem(grant, custom)
        if role_problem is not None:
            deny(*role_problem)
        if not any(pattern.covers(grant.arm_scope) for pattern in self.scopes):
            deny(Rule.SCOPE, f"scope {grant.scope} is not under any of the policy's scopes")
        return found

    def _role_problem(
        self, grant: RoleGrant, custom: Mapping[str, CustomRole] | None
    ) -> tuple[Rule, str] | None:
        """The rule the grant's role breaks and why, or None when the role may be granted."""
        role = grant.role_name or grant.role_id
        privileged = _is_privileged(grant.role_id, custom)
        if privileged is None:
            if custom is None:  # definitions not read yet: the lists decide, the plan checks again
                if grant.role_id in self.role_ids | self.privileged_role_ids:
                    return None
                return Rule.UNKNOWN_ROLE, f"role {role} is unknown, so it may be privileged"
            if grant.role_id in self.privileged_role_ids:  # fail closed: unknown counts as privileged
                return None
            return (
                Rule.UNKNOWN_ROLE,
                f"role {role} has no definition the reconciler could read, so it may be privileged "
                "and is allowed only when the policy's privilegedRoles lists it",
            )
        if privileged and grant.role_id not in self.privileged_role_ids:
            return (
                Rule.PRIVILEGED,
                f"role {role} can change access (a write or delete under Microsoft.Authorization, "
                "or elevateAccess) and is not listed in the policy's privilegedRoles",
            )
        if not privileged and grant.role_id not in self.role_ids:
            return Rule.ROLE, f"role {role} is not in the policy's roles"
        return None


def _is_privileged(role_id: str, custom: Mapping[str, CustomRole] | None) -> bool | None:
    """True or False when the role's permissions are known, None when they are not."""
    builtin = builtin_role(role_id)
    if builtin is not None:
        return builtin.privileged
    role = (custom or {}).get(role_id)
    if role is None:
        return None
    return is_privileged(role.actions, role.not_actions)


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
    organizations = _organizations(body, fail)
    roles = _role_ids(body, "roles", fail)
    privileged = _role_ids(body, "privilegedRoles", fail, required=False)
    scopes = _scope_patterns(body, fail)
    shared = _shared_applications(body.get("sharedApplications"), fail)
    allowed = frozenset(o.lower() for o in organizations)
    sources = _ticket_sources(body.get("ticketSources"), allowed, fail)
    if problems:
        return None, problems
    policy = GrantPolicy(
        organizations=allowed,
        role_ids=frozenset(roles),
        privileged_role_ids=frozenset(privileged),
        scopes=tuple(scopes),
        shared_applications=shared,
        ticket_sources=sources,
    )
    return policy, []


def _shared_applications(value: Any, fail: Any) -> tuple[SharedApplication, ...]:
    """`sharedApplications: [{appId | displayName, projects: [org/project | org/*, ...]}]`."""
    if value is None:
        return ()
    if not isinstance(value, list):
        fail("sharedApplications", "expected a list of {appId or displayName, projects}")
        return ()
    shared: list[SharedApplication] = []
    for n, entry in enumerate(value):
        where = f"sharedApplications[{n}]"
        if not isinstance(entry, Mapping):
            fail(where, "expected a mapping with appId or displayName, and projects")
            continue
        for key in entry:
            if key not in _SHARE_FIELDS:
                fail(f"{where}.{key}", f"unknown field; expected one of {', '.join(sorted(_SHARE_FIELDS))}")
        application = _shared_application_key(entry, where, fail)
        projects = _shared_projects(entry.get("projects"), f"{where}.projects", fail)
        if application and projects:
            shared.append(SharedApplication(application, projects))
    return tuple(shared)


def _shared_application_key(entry: Mapping[str, Any], where: str, fail: Any) -> str | None:
    app_id, display_name = entry.get("appId"), entry.get("displayName")
    if (app_id is None) == (display_name is None):
        fail(where, "expected exactly one of appId and displayName")
        return None
    if app_id is not None:
        if not isinstance(app_id, str) or not Guid.is_valid(app_id):
            fail(f"{where}.appId", f"expected a GUID, got {app_id!r}")
            return None
        return app_key(app_id)
    if not isinstance(display_name, str) or not display_name.strip():
        fail(f"{where}.displayName", "expected a non-empty string")
        return None
    return claim_key(ApplicationRef(display_name=display_name.strip(), create=True))


def _shared_projects(value: Any, where: str, fail: Any) -> frozenset[str]:
    if not isinstance(value, list) or not value:
        fail(where, "expected a non-empty list of organization/project (or organization/*)")
        return frozenset()
    projects: set[str] = set()
    for item in value:
        tenant = Tenant.parse(item) if isinstance(item, str) else None
        if tenant is None:
            fail(where, f"expected organization/project or organization/*, got {item!r}")
            continue
        projects.add(str(tenant))
    return frozenset(projects)


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
        tenant = Tenant.parse(item)
        if tenant is None or tenant.project == "*":
            fail(
                f"{field}.projects",
                f"expected 'organization/project' that Azure DevOps accepts, got {item!r}",
            )
        else:
            projects.add((tenant.organization, tenant.project))
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


def _organizations(body: Mapping[str, Any], fail: Any) -> list[str]:
    """ADO organization names: anything else (`*`, `org/project`, a URL) could never match a config."""
    found: list[str] = []
    for position, text in enumerate(_strings(body, "organizations", fail)):
        try:
            found.append(str(OrganizationName(text, f"organizations[{position}]")))
        except IdentifierError as error:
            fail(error.field, error.message)
    return found


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
            fail(f"scopes[{position}]", f"expected an ARM scope prefix, '*' for one name; {error.message}")
    return patterns

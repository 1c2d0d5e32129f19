"""The rights of a caller in each simulated API, strict by default, and the tenant setup that grants them.

A right is missing unless the world grants it (docs/simulator.md, "Rights"):
- Microsoft Graph: the application permissions in the `roles` claim of the caller's token
  (`World.graph_app_roles`, minted into the token by the managed-identity endpoint);
- Azure DevOps: membership of the organization (`Organization.members`) and the Endpoint
  Administrator role on a project's service connections (`Project.endpoint_administrators`);
- ARM: role assignments of the caller at or above a scope whose role's effective permissions
  (actions minus notActions) allow the operation.

`grant_reconciler_rights` is the tenant setup a deployment does for the reconciler's identity
(docs/deploy.md); the sample world, the generator and examples/tenant.yaml run it or spell it out.
"""

from __future__ import annotations

import re
import uuid

from cloudsim.state import Person, RoleAssignment, RoleDefinition, World

GRAPH_OWNED_BY = "Application.ReadWrite.OwnedBy"
# Application permissions that allow reading applications and service principals, and writing them
# (learn.microsoft.com graph/api/application-list, application-post-applications: "Permissions").
GRAPH_READ_ROLES = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.OwnedBy",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
    }
)
GRAPH_WRITE_ROLES = frozenset({"Application.ReadWrite.OwnedBy", "Application.ReadWrite.All"})
# A person's (delegated) token: the delegated permissions in its `scp` claim that allow the same
# (the same pages: Application.ReadWrite.OwnedBy is an application permission only), ...
GRAPH_READ_SCOPES = frozenset(
    {
        "Application.Read.All",
        "Application.ReadWrite.All",
        "Directory.Read.All",
        "Directory.ReadWrite.All",
        "Directory.AccessAsUser.All",
    }
)
GRAPH_WRITE_SCOPES = frozenset({"Application.ReadWrite.All", "Directory.AccessAsUser.All"})
# ... and, to change an application the person does not own, one of these directory roles
# (learn.microsoft.com graph/api/application-update, "Permissions": in delegated scenarios the
# signed-in user must be an owner or hold a supported Microsoft Entra role).
APPLICATION_ADMIN_ROLES = frozenset(
    {"Application Administrator", "Cloud Application Administrator", "Global Administrator"}
)
# Adding an owner to an application (learn.microsoft.com graph/api/application-post-owners,
# "Permissions"): an app needs Application.ReadWrite.All ("Application.ReadWrite.OwnedBy isn't
# sufficient to add another owner") or Directory.ReadWrite.All, with Directory.Read.All; a person
# the delegated Application.ReadWrite.All and Directory.Read.All, or Directory.ReadWrite.All
# (Directory.AccessAsUser.All, which `az login` tokens carry, acts as the user across the directory).
OWNER_ADD_ROLES = frozenset({"Application.ReadWrite.All", "Directory.ReadWrite.All"})
DIRECTORY_READ_ROLES = frozenset({"Directory.Read.All", "Directory.ReadWrite.All"})
_AS_USER = "Directory.AccessAsUser.All"
OWNER_ADD_SCOPES = frozenset({"Application.ReadWrite.All", "Directory.ReadWrite.All", _AS_USER})
DIRECTORY_READ_SCOPES = frozenset({"Directory.Read.All", "Directory.ReadWrite.All", _AS_USER})
RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"  # Role Based Access Control Administrator
# Azure DevOps ServiceEndpoints security namespace: Use 1, Administer 2, Create 4, ViewAuthorization 8,
# ViewEndpoint 16; the Endpoint Administrator role holds them all.
SERVICE_ENDPOINTS_NAMESPACE = "49b48001-ca20-4adc-8111-5b60c903a50c"
ENDPOINT_ADMINISTRATOR_BITS = 1 | 2 | 4 | 8 | 16


def operation_allowed(definition: RoleDefinition, operation: str) -> bool:
    """ARM's evaluation: an action matches and no notAction does (`*` any text, case ignored)."""
    return any(_matches(a, operation) for a in definition.actions) and not any(
        _matches(n, operation) for n in definition.not_actions
    )


def _matches(pattern: str, operation: str) -> bool:
    regex = ".*".join(re.escape(part) for part in pattern.split("*"))
    return re.fullmatch(regex, operation, re.IGNORECASE | re.DOTALL) is not None


def scope_is_within(inner: str, outer: str) -> bool:
    """Whether scope `inner` is `outer` or below it (case-insensitive; `/` is the root)."""
    inner, outer = _normal(inner), _normal(outer)
    return outer in ("/", inner) or inner.startswith(outer + "/")


def _normal(scope: str) -> str:
    return "/" + scope.strip("/").lower() if scope.strip("/") else "/"


def rbac_allows(world: World, principal: str, scope: str, operation: str) -> bool:
    """Whether the principal's role assignments at or above `scope` allow `operation` there.

    Conditions (ABAC) on an assignment are not evaluated: a conditioned assignment counts as
    granting its role's permissions (docs/simulator.md lists this as a gap)."""
    for assignment in world.role_assignments:
        if assignment.principal_id != principal or not scope_is_within(scope, assignment.scope):
            continue
        definition = world.role_definition(assignment.role_definition_guid)
        if definition is not None and operation_allowed(definition, operation):
            return True
    return False


def grant_reconciler_rights(world: World, principal: str | None = None) -> World:
    """What a deployment grants the reconciler's identity (by default the caller the simulator issues
    tokens to): Graph `Application.ReadWrite.OwnedBy`; membership of every organization and Endpoint
    Administrator in every project; Role Based Access Control Administrator on every subscription
    the world lists. Idempotent; returns the world."""
    who = principal or world.caller_object_id
    roles = world.graph_app_roles.setdefault(who, [])
    if GRAPH_OWNED_BY not in roles:
        roles.append(GRAPH_OWNED_BY)
    return _grant_devops_and_rbac(world, who, "ServicePrincipal")


def add_person(world: World, directory_roles: list[str] | None = None) -> Person:
    """A person who runs the CLI with `az login`: by default a Cloud Application Administrator with
    the Azure DevOps and RBAC rights the reconciler's identity gets (granted to the user), so that
    their own rights, not the deployed identity's, decide what they may do."""
    roles = ["Cloud Application Administrator"] if directory_roles is None else list(directory_roles)
    person = Person(directory_roles=roles)
    world.people.append(person)
    _grant_devops_and_rbac(world, person.object_id, "User")
    return person


def _grant_devops_and_rbac(world: World, who: str, principal_type: str) -> World:
    for organization in world.organizations:
        if who not in organization.members:
            organization.members.append(who)
        for project in organization.projects:
            if who not in project.endpoint_administrators:
                project.endpoint_administrators.append(who)
    for subscription in world.settings.subscriptions:
        scope = f"/subscriptions/{subscription}"
        name = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{scope}|{RBAC_ADMINISTRATOR}|{who}"))
        if not any(a.name == name for a in world.role_assignments):
            world.role_assignments.append(
                RoleAssignment(
                    name=name,
                    scope=scope,
                    role_definition_guid=RBAC_ADMINISTRATOR,
                    principal_id=who,
                    principal_type=principal_type,
                    description="the RBAC administrator role (tenant setup)",
                    created_at=0.0,
                    updated_at=0.0,
                )
            )
    return world

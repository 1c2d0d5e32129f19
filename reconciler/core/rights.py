"""What the reconciler's own identity needs in each system, and the step that grants a missing piece.

`python -m reconciler doctor` reads the facts with read-only calls (the claims of its own tokens,
Azure DevOps' permission answers, role assignments and role definitions); the rules that judge
them, and the fixes they print, live here, pure, so they are tested without I/O. The facts and
their sources are in docs/doctor.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from reconciler.core.identifiers import ArmScope, IdentifierError
from reconciler.core.model import CustomRole, FederationConfig, RoleAssignment
from reconciler.core.policy import GrantPolicy
from reconciler.core.roles import allows

# Microsoft Graph application permission (an app role of Microsoft Graph, the same id in every tenant).
GRAPH_PERMISSION = "Application.ReadWrite.OwnedBy"
GRAPH_PERMISSION_ID = "18a4783c-866b-4cc7-a460-3d5e5662c884"
# Broader permissions that include what OwnedBy allows: they work, but are more than needed.
GRAPH_BROADER_PERMISSIONS = ("Application.ReadWrite.All", "Directory.ReadWrite.All")
# What the reconciler does with role assignments at a target scope.
RBAC_OPERATIONS = (
    "Microsoft.Authorization/roleAssignments/write",
    "Microsoft.Authorization/roleAssignments/delete",
)
# Azure DevOps' security namespace for service connections and the bits the reconciler needs on a
# project's connections (token `endpoints/{projectId}`): Administer (update, convert, delete,
# authorize pipelines) and Create. The Endpoint Administrator role holds both.
SERVICE_ENDPOINTS_NAMESPACE = "49b48001-ca20-4adc-8111-5b60c903a50c"
ENDPOINT_ADMINISTER = 2
ENDPOINT_CREATE = 4


class Verdict(StrEnum):
    OK = "ok"
    MISSING = "missing"  # the identity lacks it: `fix` says how to grant it
    ERROR = "error"  # it could not be checked (unreachable, refused, malformed settings)
    SKIPPED = "skipped"  # nothing to check here, or doctor does not check it: why, and how to verify


@dataclass(frozen=True)
class Finding:
    area: str  # the system: Microsoft Graph, Azure DevOps, Azure RBAC, Tables, Service Bus
    subject: str  # what was checked, e.g. "member of organization contoso"
    verdict: Verdict
    detail: str = ""  # what was found
    fix: str = ""  # for MISSING: the command or portal step that grants it


# ---------------------------------------------------------------- Microsoft Graph


def graph_permission(roles: Iterable[str], principal_id: str) -> Finding:
    """The application permission, judged from the `roles` claim of the identity's Graph token."""
    held = set(roles)
    subject = f"application permission {GRAPH_PERMISSION}"
    if GRAPH_PERMISSION in held:
        return Finding("Microsoft Graph", subject, Verdict.OK, "in the token's roles claim")
    broader = [p for p in GRAPH_BROADER_PERMISSIONS if p in held]
    if broader:
        return Finding(
            "Microsoft Graph",
            subject,
            Verdict.OK,
            f"held through {', '.join(broader)}, which is more than the reconciler needs",
        )
    shown = ", ".join(sorted(held)) or "none"
    return Finding(
        "Microsoft Graph",
        subject,
        Verdict.MISSING,
        f"the token's roles claim holds: {shown}",
        fix=(
            "an Entra admin (Privileged Role Administrator) grants it once: "
            "GRAPH_SP_ID=$(az ad sp show --id 00000003-0000-0000-c000-000000000000 --query id -o tsv); "
            'az rest --method POST --uri "https://graph.microsoft.com/v1.0/servicePrincipals/$GRAPH_SP_ID/'
            f'appRoleAssignedTo" --body \'{{"principalId":"{principal_id}","resourceId":"\'$GRAPH_SP_ID\'",'
            f'"appRoleId":"{GRAPH_PERMISSION_ID}"}}\'  (or deploy with WIF_GRANT_GRAPH_APP_ROLE=true; '
            "docs/deploy.md); a new token carries it"
        ),
    )


def adopted_applications(configs: Iterable[FederationConfig]) -> dict[str, list[str]]:
    """Client id -> the ids of the configs that adopt it (configs that name an existing `appId`)."""
    adopted: dict[str, list[str]] = {}
    for config in configs:
        if config.application.app_id:
            adopted.setdefault(config.application.app_id.lower(), []).append(config.id)
    return adopted


def ownership(app_id: str, config_ids: Sequence[str], owned: bool | None, principal_id: str) -> Finding:
    """Whether the identity owns an adopted application (`owned` None: the application was not found)."""
    subject = f"owner of adopted application {app_id}"
    used_by = f"used by {', '.join(config_ids)}"
    if owned:
        return Finding("Microsoft Graph", subject, Verdict.OK, used_by)
    if owned is None:
        return Finding(
            "Microsoft Graph",
            subject,
            Verdict.MISSING,
            f"no application with this client id in the tenant ({used_by})",
            fix="check the configs' application.appId, or name an application for the reconciler to create",
        )
    return Finding(
        "Microsoft Graph",
        subject,
        Verdict.MISSING,
        f"the identity is not among its owners, so Graph refuses its writes ({used_by})",
        fix=f"an owner of the app (or an Application Administrator): az ad app owner add --id {app_id} "
        f"--owner-object-id {principal_id}",
    )


# A person's delegated permissions (`scp`) that let them write applications in Graph (with, for an
# application they do not own, a directory role such as Cloud Application Administrator).
GRAPH_DELEGATED_WRITE = ("Application.ReadWrite.All", "Directory.AccessAsUser.All")
PERSON_SIGN_IN = "signed in as a person (a delegated token), not as the deployed identity"


def person_sign_in(principal_id: str) -> Finding:
    """What a doctor run by a person checks: their own rights, never the deployed identity's."""
    return Finding(
        "Sign-in",
        PERSON_SIGN_IN,
        Verdict.SKIPPED,
        f"user {principal_id}: the Graph token is delegated (idtyp user, scp), so the deployed identity's "
        "application permission and ownership of adopted applications are not checked (the Graph lines "
        "say how to verify them); the Azure DevOps, Azure RBAC, Tables, Service Bus and drift events lines "
        "check YOUR rights: what you may do with plan/apply, not what the deployed identity may do. Run "
        "doctor as the deployed identity to check it (docs/doctor.md)",
    )


def person_graph_permissions(scopes: Iterable[str]) -> list[Finding]:
    """A person's Graph rights, from the `scp` claim of their token, and the deployed identity's
    application permission, which a person's token cannot show (it carries no `roles` for it)."""
    held = set(scopes)
    writes = [s for s in GRAPH_DELEGATED_WRITE if s in held]
    shown = ", ".join(sorted(held)) or "none"
    yours = Finding(
        "Microsoft Graph",
        "your delegated permission to write applications",
        Verdict.OK if writes else Verdict.MISSING,
        f"the token's scp claim holds: {shown}",
        fix=""
        if writes
        else f"sign in with a client granted one of {', '.join(GRAPH_DELEGATED_WRITE)} (delegated) in Graph",
    )
    deployed = Finding(
        "Microsoft Graph",
        f"application permission {GRAPH_PERMISSION}",
        Verdict.SKIPPED,
        "not checked: it belongs to the deployed identity, and a person's token carries no application "
        "permissions; verify: az rest --method GET --uri https://graph.microsoft.com/v1.0/servicePrincipals/"
        f"<deployed identity object id>/appRoleAssignments lists appRoleId {GRAPH_PERMISSION_ID}",
    )
    return [yours, deployed]


def person_ownership(app_id: str, config_ids: Sequence[str], found: bool) -> Finding:
    """An adopted application, checked by a person: it exists; who owns it is the deployed identity's
    business, which a person's run does not see."""
    subject = f"owner of adopted application {app_id}"
    if not found:
        return ownership(app_id, config_ids, None, "")
    return Finding(
        "Microsoft Graph",
        subject,
        Verdict.SKIPPED,
        f"not checked as a person (used by {', '.join(config_ids)}): set WIF_IDENTITY_PRINCIPAL_ID to the "
        f"deployed identity's object id, or verify: az ad app owner list --id {app_id} --query [].id lists "
        "it (else its writes are refused)",
    )


# ---------------------------------------------------------------- Azure DevOps


def organizations_to_check(policy: GrantPolicy) -> list[str]:
    return sorted(policy.organizations)


def projects_to_check(policy: GrantPolicy, configs: Iterable[FederationConfig]) -> list[tuple[str, str]]:
    """(organization, project) pairs the identity must serve: each config's (in an allowed
    organization) and each project the policy names (shared applications, ticket sources)."""
    pairs = {
        (c.organization.lower(), c.project.lower())
        for c in configs
        if c.organization.lower() in policy.organizations
    }
    for shared in policy.shared_applications:
        for text in shared.projects:
            organization, _, project = text.partition("/")
            if project != "*":
                pairs.add((organization, project))
    for source in policy.ticket_sources:
        pairs.update(source.projects)
    return sorted(p for p in pairs if p[0] in policy.organizations)


def membership_fix(organization: str, principal_id: str) -> str:
    return (
        f"https://dev.azure.com/{organization}/_settings/users -> Add users -> the identity "
        f"(service principal, object id {principal_id}) -> access level Basic -> add it to the projects "
        "it serves (docs/deploy.md, 'Azure DevOps: by hand')"
    )


def endpoint_administrator_fix(organization: str, project: str, principal_id: str) -> str:
    return (
        f"https://dev.azure.com/{organization}/{project}/_settings/adminservices -> Security -> add the "
        f"identity (object id {principal_id}, or a group holding it) with the role Endpoint Administrator"
    )


# ---------------------------------------------------------------- Azure RBAC


def target_scopes(
    policy: GrantPolicy, configs: Iterable[FederationConfig]
) -> tuple[list[ArmScope], list[str]]:
    """The scopes where the reconciler writes role assignments, and the policy patterns it cannot expand.

    Every scope a config grants on that the policy allows, and every policy scope without a `*`
    (a fixed scope); a pattern with a `*` is checked through the configs that fall under it, and
    returned when none does (nothing names a concrete scope to check).
    """
    scopes: dict[str, ArmScope] = {}
    covered: set[str] = set()
    for config in configs:
        for grant in config.role_grants:
            patterns = [p for p in policy.scopes if p.covers(grant.arm_scope)]
            if patterns:
                scopes[grant.scope] = grant.arm_scope
                covered.update(p.pattern for p in patterns)
    unexpanded = []
    for pattern in policy.scopes:
        if "*" not in pattern.segments:
            try:
                fixed = ArmScope.parse(pattern.pattern)
            except IdentifierError:
                continue  # not a scope of its own (e.g. a bare `/subscriptions`): only a prefix
            scopes[str(fixed)] = fixed
        elif pattern.pattern not in covered:
            unexpanded.append(pattern.pattern)
    return sorted(scopes.values(), key=str), unexpanded


def applies_to(assignment: RoleAssignment, scope: ArmScope) -> bool:
    """Whether an assignment ARM listed for `scope` (at, above or below it) is at or above it.

    ARM lists only those three; one below the scope is the only kind that does not apply.
    Management-group and root assignments ARM lists for a subscription's scope are above it.
    """
    try:
        segments = ArmScope.parse(assignment.scope).segments
    except IdentifierError:
        return True  # the root `/`, or a scope outside our grammar that ARM says applies
    if segments[:2] != scope.segments[:2] and segments[0] != "subscriptions":
        return True  # a management group above the subscription
    return scope.segments[: len(segments)] == segments


def rbac_grants(
    scope: ArmScope, assignments: Iterable[RoleAssignment], roles: Mapping[str, CustomRole]
) -> dict[str, RoleAssignment | None]:
    """For each of RBAC_OPERATIONS, an assignment at or above `scope` whose role's effective
    permissions allow it, or None. Checked by permissions, not by role name, so a narrower
    custom role serves as well as Role Based Access Control Administrator."""
    applying = [a for a in assignments if applies_to(a, scope)]
    found: dict[str, RoleAssignment | None] = {}
    for operation in RBAC_OPERATIONS:
        found[operation] = next(
            (
                a
                for a in applying
                if a.role_id in roles
                and allows(roles[a.role_id].actions, roles[a.role_id].not_actions, operation)
            ),
            None,
        )
    return found


def rbac_fix(scope: ArmScope, principal_id: str) -> str:
    return (
        "grant the reconciler's RBAC administrator role there: add the scope to "
        "WIF_RBAC_TARGET_SUBSCRIPTION_IDS "
        "or WIF_RBAC_TARGET_RESOURCE_GROUPS and run `azd provision` (docs/deploy.md), or by hand: "
        f"az role assignment create --assignee-object-id {principal_id} --assignee-principal-type "
        f'ServicePrincipal --role "Role Based Access Control Administrator" --scope {scope} '
        "--condition-version 2.0 --condition <the condition in docs/deploy.md>"
    )

"""`python -m reconciler doctor`: does the identity the app runs as have what it needs? (as `flux check`)

With read-only calls it checks, in each system, the rights of the identity the credential signs in
as (run it as the app's identity: docs/doctor.md), and prints, per missing piece, the command or
portal step that grants it. Signed in as a person (a delegated token, as with `az login`), it says
so first: it then checks that person's rights, and skips, with how to verify them, what only the
deployed identity's token shows (its application permission, its ownership of adopted applications):

- Microsoft Graph: the application permission, from the `roles` claim of its Graph token (no
  request), and that it owns every application a config adopts (the engine's ownership reading);
- Azure DevOps: membership of each organization the policy names (connectionData answers members
  only) and the Endpoint Administrator rights (Administer and Create on service connections) in each
  project the configs and the policy name (Permissions - Has Permissions);
- Azure RBAC: at each target scope, role assignments write and delete, by the effective permissions
  of the roles assigned to it at or above the scope (not by a role's name);
- the app's tables and queues: they exist and it may read them (tables) and receive (queues);
- drift events: the `events` queue, and on each target subscription an Event Grid system topic with an
  event subscription delivering role-assignment writes and deletes to it (System Topics - List By
  Subscription; the reconciler's own role does not read Event Grid: without Reader there, the line is
  skipped with the `az` commands that verify it).

Exit codes: 0 everything is in place, 1 something is missing or could not be checked, 2 bad input
or settings (the policy, the configs, the cloud settings).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError

from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter, EventRoute
from reconciler.adapters.graph import GraphAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.cli.errors import NOT_SIGNED_IN
from reconciler.cli.sign_in import DEPLOYED_IDENTITY
from reconciler.cloud import Cloud, CloudError, cloud_from_settings
from reconciler.core.identifiers import ArmScope, Guid, IdentifierError
from reconciler.core.model import CustomRole, FederationConfig, RoleAssignment
from reconciler.core.policy import GrantPolicy
from reconciler.core.rights import (
    ENDPOINT_ADMINISTER,
    ENDPOINT_CREATE,
    GRAPH_PERMISSION,
    PERSON_SIGN_IN,
    RBAC_OPERATIONS,
    SERVICE_ENDPOINTS_NAMESPACE,
    Finding,
    Verdict,
    adopted_applications,
    endpoint_administrator_fix,
    graph_permission,
    membership_fix,
    organizations_to_check,
    ownership,
    person_graph_permissions,
    person_ownership,
    person_sign_in,
    projects_to_check,
    rbac_fix,
    rbac_grants,
    target_scopes,
)
from reconciler.documents import load_configs, load_policy
from reconciler.engine.run import default_credential
from reconciler.failures import Failure, NotFound
from reconciler.state.probes import check_queues, check_tables
from reconciler.state.queues import EVENTS_QUEUE, QueueSettingsError

EXIT_OK, EXIT_MISSING, EXIT_BAD_INPUT = 0, 1, 2
DEFAULT_POLICY = "policy.yaml"
# One retry at most: a check that cannot reach an API says so at once instead of backing off for a minute.
RETRY_TOTAL = 1
_CONNECTION_FAILED = "ConnectionError"


@dataclass
class Doctor:
    """What every check needs: the desired state, the identity, and one adapter per API."""

    policy: GrantPolicy
    configs: Sequence[FederationConfig]
    settings: Mapping[str, str]
    credential: AsyncTokenCredential
    principal_id: str
    graph_roles: frozenset[str]
    graph: GraphAdapter
    arm: ArmAdapter
    ado: AdoAdapter
    # A person signed in (a delegated token, as with `az login`): the checks are of their rights,
    # and what only the deployed identity's token shows is skipped with how to verify it.
    person: bool = False


Check = Callable[[Doctor], Awaitable[list[Finding]]]
# Checks other parts of the product add to the report, as (area, check): each returns its findings.
EXTRA_CHECKS: list[tuple[str, Check]] = []


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    doctor = commands.add_parser(
        "doctor",
        help="check, with read-only calls, that the identity the app runs as has every right it needs, "
        "and print the fix for each missing one",
    )
    doctor.add_argument(
        "--configs",
        type=Path,
        nargs="+",
        action="extend",
        default=[],
        metavar="FILE",
        help="the desired configs (`export` writes the table's): their projects, target scopes and adopted "
        "applications are checked too; without them, only what the policy names",
    )
    doctor.add_argument(
        "--policy", type=Path, help=f"grant policy (default: $WIF_POLICY_FILE or {DEFAULT_POLICY})"
    )
    doctor.add_argument(
        "--cloud",
        help="AzureCloud, AzureUSGovernment, AzureChinaCloud, or simulator/custom; "
        "default $WIF_CLOUD or AzureCloud",
    )
    doctor.add_argument("--output", choices=["table", "json"], default="table")
    doctor.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    policy = load_policy(args.policy or Path(os.environ.get("WIF_POLICY_FILE", DEFAULT_POLICY)))
    configs = load_configs(args.configs) if args.configs else []
    cloud = cloud_from_settings(os.environ, args.cloud)
    try:
        principal_id, findings = asyncio.run(diagnose(cloud, policy, configs, os.environ))
    except QueueSettingsError as error:
        raise CloudError(str(error)) from None  # a bad setting: exit 2, as every other one
    print(_as_json(principal_id, findings) if args.output == "json" else _as_table(principal_id, findings))
    failed = any(f.verdict in (Verdict.MISSING, Verdict.ERROR) for f in findings)
    return EXIT_MISSING if failed else EXIT_OK


async def diagnose(
    cloud: Cloud,
    policy: GrantPolicy,
    configs: Sequence[FederationConfig],
    settings: Mapping[str, str],
    credential: AsyncTokenCredential | None = None,
) -> tuple[str | None, list[Finding]]:
    """The identity's object id (None when it cannot sign in) and every finding, in report order."""
    token_source = credential or default_credential(cloud)
    meter = RequestMeter()
    graph = GraphAdapter(token_source, cloud, meter)
    arm = ArmAdapter(token_source, cloud, meter, retry_total=RETRY_TOTAL)
    ado = AdoAdapter(token_source, cloud, meter, retry_total=RETRY_TOTAL)
    try:
        try:
            roles = await graph.own_token_roles()
            principal_id = await graph.own_principal_id()
            person = await graph.own_token_is_delegated()
            tenant = await graph.own_tenant_id()
        except ClientAuthenticationError as error:
            detail = NOT_SIGNED_IN.format(cause=_one_line(error))  # the same advice as every command
            return None, [Finding("Sign-in", "a token for Microsoft Graph", Verdict.ERROR, detail)]
        except Failure as error:
            detail = f"{_one_line(error)} (it checks the identity it signs in as: docs/doctor.md)"
            return None, [Finding("Sign-in", "a token for Microsoft Graph", Verdict.ERROR, detail)]
        doctor = Doctor(policy, configs, settings, token_source, principal_id, roles, graph, arm, ado, person)
        checks: list[tuple[str, Check]] = [
            ("Microsoft Graph", _graph),
            ("Azure DevOps", _devops),
            ("Azure RBAC", _rbac),
            ("Tables", _tables),
            ("Service Bus", _queues),
            (DRIFT_EVENTS, _drift_events),
            *EXTRA_CHECKS,
        ]
        found = await asyncio.gather(*(_guarded(area, check, doctor) for area, check in checks))
        flat = [_tenant(tenant, configs), *(finding for findings in found for finding in findings)]
        if person:
            return principal_id, [person_sign_in(principal_id), *map(_as_yours, flat)]
        return principal_id, flat
    finally:
        await graph.close()
        await arm.close()
        await ado.close()
        if credential is None:
            await token_source.close()


def _tenant(tenant: str | None, configs: Sequence[FederationConfig]) -> Finding:
    """The tenant the credential signs in to (its Graph token's `tid`), against the configs'
    tenantId: the engine fails a config of another tenant (`tenant-mismatch`) and writes nothing."""
    if tenant is None:
        return _skipped(
            "Sign-in", "tenant", "the Graph token carries no tid claim: configs are not checked against it"
        )
    elsewhere: dict[str, list[str]] = defaultdict(list)
    for config in configs:
        if config.tenant_id.lower() != tenant.lower():
            elsewhere[config.tenant_id.lower()].append(config.id)
    if not elsewhere:
        named = f"; every config names it ({len(configs)})" if configs else ""
        return Finding("Sign-in", f"tenant {tenant}", Verdict.OK, f"the Graph token's tid{named}")
    listed = "; ".join(f"{t}: {', '.join(sorted(ids))}" for t, ids in sorted(elsewhere.items()))
    return Finding(
        "Sign-in",
        f"tenant {tenant}",
        Verdict.MISSING,
        f"configs name other tenants ({listed}): the reconciler fails them (tenant-mismatch) and writes "
        "nothing for them",
        fix="correct the configs' tenantId, or run a reconciler signed in to their tenant (AZURE_TENANT_ID "
        "with a person's sign-in; a deployment in that tenant)",
    )


def _as_yours(finding: Finding) -> Finding:
    """A finding of a person's run outside Graph: it judges their own rights, so a missing one is
    theirs to get; the fixes are written for the deployed identity (a service principal)."""
    if finding.area == "Microsoft Graph" or finding.verdict is not Verdict.MISSING:
        return finding
    return replace(
        finding,
        detail=f"your sign-in: {finding.detail}",
        fix=f"you lack it (a user, not a service principal: adapt the step below): {finding.fix}",
    )


async def _guarded(area: str, check: Check, doctor: Doctor) -> list[Finding]:
    """A check's findings; an error it did not expect becomes one line, so the others still report."""
    try:
        return await check(doctor)
    except (CloudError, QueueSettingsError):
        raise  # a bad setting: exit 2
    except Exception as error:  # an SDK error no adapter maps must not end in a traceback
        return [Finding(area, "the check", Verdict.ERROR, f"failed unexpectedly: {_one_line(error)}")]


# ---------------------------------------------------------------- Microsoft Graph


async def _graph(doctor: Doctor) -> list[Finding]:
    if doctor.person:
        return await _graph_as_person(doctor)
    permission = graph_permission(doctor.graph_roles, doctor.principal_id)
    findings = [permission]
    adopted = adopted_applications(doctor.configs)
    if not adopted:
        return findings
    if permission.verdict is not Verdict.OK:
        return [
            *findings,
            _skipped("Microsoft Graph", "adopted applications", f"until {GRAPH_PERMISSION} is granted"),
        ]
    try:
        owned = await doctor.graph.read_ownership()
        apps = {a.app_id.lower(): a for a in await doctor.graph.read_applications(sorted(adopted))}
    except Failure as failure:
        return [*findings, _error("Microsoft Graph", "the adopted applications and their owners", failure)]
    for app_id, config_ids in sorted(adopted.items()):
        app = apps.get(app_id)
        owns = None if app is None else owned is None or owned.owns(app)
        findings.append(ownership(app_id, config_ids, owns, doctor.principal_id))
    return findings


async def _graph_as_person(doctor: Doctor) -> list[Finding]:
    """A person's Graph rights (their delegated permissions), and of each adopted application that it
    exists and, with WIF_IDENTITY_PRINCIPAL_ID, whether the deployed identity owns it (a person's
    own token does not say who that identity is)."""
    findings = person_graph_permissions(await doctor.graph.own_token_scopes())
    adopted = adopted_applications(doctor.configs)
    if not adopted:
        return findings
    deployed = _deployed_identity(doctor.settings)
    try:
        apps = {a.app_id.lower(): a for a in await doctor.graph.read_applications(sorted(adopted))}
        # Given the deployed identity's object id, what it owns is readable by a person too.
        owned = await doctor.graph.read_ownership(deployed) if deployed else None
    except Failure as failure:
        return [*findings, _error("Microsoft Graph", "the adopted applications and their owners", failure)]
    if owned is None:
        return findings + [
            person_ownership(app_id, ids, app_id in apps) for app_id, ids in sorted(adopted.items())
        ]
    return findings + [
        ownership(app_id, ids, None if app_id not in apps else owned.owns(apps[app_id]), owned.principal_id)
        for app_id, ids in sorted(adopted.items())
    ]


def _deployed_identity(settings: Mapping[str, str]) -> str | None:
    """WIF_IDENTITY_PRINCIPAL_ID, the deployed identity's object id (`azd env get-values`), if set."""
    raw = settings.get(DEPLOYED_IDENTITY, "").strip()
    try:
        return str(Guid(raw, DEPLOYED_IDENTITY)) if raw else None
    except IdentifierError as error:
        raise CloudError(error.message) from None  # a bad setting: exit 2


# ---------------------------------------------------------------- Azure DevOps


async def _devops(doctor: Doctor) -> list[Finding]:
    projects = projects_to_check(doctor.policy, doctor.configs)
    findings: list[Finding] = []
    for organization in organizations_to_check(doctor.policy):
        try:
            user = await doctor.ado.authenticated_user(organization)
        except Failure as failure:
            if failure.code == _CONNECTION_FAILED:
                return [_error("Azure DevOps", "endpoint", failure)]
            findings.append(_membership_problem(organization, failure, doctor.principal_id))
            findings += [
                _skipped("Azure DevOps", f"Endpoint Administrator in {o}/{p}", "until it is a member")
                for o, p in projects
                if o == organization
            ]
            continue
        findings.append(
            Finding(
                "Azure DevOps", f"member of organization {organization}", Verdict.OK, f"signed in as {user}"
            )
        )
        for project in (p for o, p in projects if o == organization):
            findings.append(await _endpoint_administrator(doctor, organization, project))
    return findings


def _membership_problem(organization: str, failure: Failure, principal_id: str) -> Finding:
    subject = f"member of organization {organization}"
    if failure.status in (401, 403):
        return Finding(
            "Azure DevOps",
            subject,
            Verdict.MISSING,
            f"the organization refuses the identity ({failure.status})",
            fix=membership_fix(organization, principal_id),
        )
    if isinstance(failure, NotFound):
        return Finding(
            "Azure DevOps", subject, Verdict.ERROR, "no such organization: check the policy's organizations"
        )
    return _error("Azure DevOps", subject, failure)


async def _endpoint_administrator(doctor: Doctor, organization: str, project: str) -> Finding:
    subject = f"Endpoint Administrator in {organization}/{project}"
    try:
        project_id = await doctor.ado.project_id(organization, project)
        allowed = await doctor.ado.has_permission(
            organization,
            SERVICE_ENDPOINTS_NAMESPACE,
            ENDPOINT_ADMINISTER | ENDPOINT_CREATE,
            f"endpoints/{project_id}",
        )
    except NotFound:
        return Finding(
            "Azure DevOps",
            subject,
            Verdict.MISSING,
            "the project does not exist, or the identity is not a member of it",
            fix=membership_fix(organization, doctor.principal_id),
        )
    except Failure as failure:
        return _error("Azure DevOps", subject, failure)
    if allowed:
        return Finding("Azure DevOps", subject, Verdict.OK, "may create and administer service connections")
    return Finding(
        "Azure DevOps",
        subject,
        Verdict.MISSING,
        "it may not create and administer the project's service connections",
        fix=endpoint_administrator_fix(organization, project, doctor.principal_id),
    )


# ---------------------------------------------------------------- Azure RBAC


async def _rbac(doctor: Doctor) -> list[Finding]:
    scopes, unexpanded = target_scopes(doctor.policy, doctor.configs)
    findings = [
        _skipped("Azure RBAC", f"scopes under {pattern}", "no config names one: give --configs to check them")
        for pattern in unexpanded
    ]
    by_root: dict[ArmScope, list[ArmScope]] = defaultdict(list)
    for scope in scopes:
        by_root[scope.root].append(scope)
    for root, targets in sorted(by_root.items(), key=lambda item: str(item[0])):
        try:
            findings += await _rbac_at(doctor, root, targets)
        except Failure as failure:
            if failure.code == _CONNECTION_FAILED:
                return [_error("Azure RBAC", "endpoint", failure)]
            if failure.status != 403 or root.subscription is None:
                findings.append(_error("Azure RBAC", f"role assignments in {root}", failure))
                continue
            # The reconciler reads assignments before it writes them; a deployment whose role is
            # on resource groups only (docs/deploy.md) is refused the subscription and reads at
            # each group, as the engine does.
            findings += await _rbac_in_groups(doctor, root, targets, failure)
    return findings


async def _rbac_at(doctor: Doctor, where: ArmScope, targets: Sequence[ArmScope]) -> list[Finding]:
    """The identity's rights on `targets`, from its assignments at, above and below `where`."""
    assignments = await doctor.arm.list_assignments_of(where, doctor.principal_id)
    roles = await _role_definitions(doctor.arm, where, assignments)
    return _rbac_findings(where, targets, assignments, roles, doctor.principal_id)


async def _rbac_in_groups(
    doctor: Doctor, subscription: ArmScope, targets: Sequence[ArmScope], refused: Failure
) -> list[Finding]:
    """After ARM refused the subscription's listing: the targets in resource groups, judged from
    the listing at their group; a target at the subscription itself is missing the read."""
    findings: list[Finding] = []
    by_group: dict[ArmScope, list[ArmScope]] = defaultdict(list)
    for target in targets:
        if target.resource_group is None:
            findings.append(_read_refused(target, refused, doctor.principal_id))
        else:
            group = ArmScope(subscription=subscription.subscription, resource_group=target.resource_group)
            by_group[group].append(target)
    for group, in_group in sorted(by_group.items(), key=lambda item: str(item[0])):
        try:
            findings += await _rbac_at(doctor, group, in_group)
        except Failure as failure:
            if failure.status != 403:
                raise
            findings.append(_read_refused(group, failure, doctor.principal_id, also=subscription))
    return findings


def _read_refused(
    scope: ArmScope, failure: Failure, principal_id: str, also: ArmScope | None = None
) -> Finding:
    where = f" (and in {also})" if also else ""
    return Finding(
        "Azure RBAC",
        f"role assignments read in {scope}",
        Verdict.MISSING,
        f"ARM refused to list the identity's role assignments{where}: {failure.message}",
        fix=rbac_fix(scope, principal_id),
    )


async def _role_definitions(
    arm: ArmAdapter, where: ArmScope, assignments: Sequence[RoleAssignment]
) -> dict[str, CustomRole]:
    """The definitions of the identity's roles. Each is read where one of its assignments is, if at
    or below `where` (a custom role may be assignable on a resource group only), else at `where`;
    the identity may read where it listed."""
    read_at: dict[str, ArmScope] = {}
    for assignment in sorted(assignments, key=lambda a: a.scope):
        scope = _within(assignment.scope, where) or where
        read_at.setdefault(assignment.role_id, scope)
    found = await asyncio.gather(*(arm.get_role_definition(s, r) for r, s in sorted(read_at.items())))
    return {role.id: role for role in found if role is not None}


def _within(text: str, where: ArmScope) -> ArmScope | None:
    """`text` as a scope when it is `where` or below it."""
    try:
        scope = ArmScope.parse(text)
    except IdentifierError:
        return None  # the root `/`: above everything
    return scope if scope.segments[: len(where.segments)] == where.segments else None


def _rbac_findings(
    root: ArmScope,
    targets: Sequence[ArmScope],
    assignments: Sequence[RoleAssignment],
    roles: Mapping[str, CustomRole],
    principal_id: str,
) -> list[Finding]:
    findings: list[Finding] = []
    granted_by: set[str] = set()
    for target in targets:
        grants = rbac_grants(target, assignments, roles)
        missing = [operation.rsplit("/", 1)[-1] for operation, grant in grants.items() if grant is None]
        if missing:
            findings.append(
                Finding(
                    "Azure RBAC",
                    f"role assignments {' and '.join(missing)} at {target}",
                    Verdict.MISSING,
                    "no role assigned to the identity at or above the scope allows it",
                    fix=rbac_fix(target, principal_id),
                )
            )
        granted_by.update(f"{roles[g.role_id].name} at {g.scope}" for g in grants.values() if g is not None)
    held = len(targets) - len(findings)
    if held:
        operations = " and ".join(o.rsplit("/", 1)[-1] for o in RBAC_OPERATIONS)
        findings.insert(
            0,
            Finding(
                "Azure RBAC",
                f"role assignments {operations} on {held} target scope(s) in {root}",
                Verdict.OK,
                f"through {', '.join(sorted(granted_by))}",
            ),
        )
    return findings


# ---------------------------------------------------------------- tables and queues


async def _tables(doctor: Doctor) -> list[Finding]:
    return await check_tables(doctor.settings, doctor.credential)


async def _queues(doctor: Doctor) -> list[Finding]:
    return await check_queues(doctor.settings, doctor.credential)


# ---------------------------------------------------------------- drift events

DRIFT_EVENTS = "Drift events"
EVENT_SUBSCRIPTION = "wif-role-assignments"  # infra/app/events-topic-subscription.bicep
DRIFT_EVENT_TYPES = ("Microsoft.Resources.ResourceWriteSuccess", "Microsoft.Resources.ResourceDeleteSuccess")
_EVENT_GRID_READ = "Microsoft.EventGrid/systemTopics/read and systemTopics/eventSubscriptions/read"


async def _drift_events(doctor: Doctor) -> list[Finding]:
    """The `events` queue, and on each target subscription an Event Grid event subscription that
    delivers its role-assignment writes and deletes to it."""
    queue = await check_queues(doctor.settings, doctor.credential, [EVENTS_QUEUE])
    findings = [replace(f, area=DRIFT_EVENTS) for f in queue]
    scopes, unexpanded = target_scopes(doctor.policy, doctor.configs)
    subscriptions = sorted({s.subscription for s in scopes if s.subscription is not None})
    if unexpanded and not subscriptions:
        findings.append(
            _skipped(DRIFT_EVENTS, "event subscriptions", "no config names a subscription: give --configs")
        )
    findings += await asyncio.gather(*(_event_subscription(doctor.arm, s) for s in subscriptions))
    return findings


async def _event_subscription(arm: ArmAdapter, subscription: Guid) -> Finding:
    subject = f"Event Grid event subscription on subscription {subscription}"
    try:
        routes = await arm.list_event_routes(subscription)
    except Failure as failure:
        if failure.status == 403:  # the reconciler's own role does not read Event Grid: say so, not fail
            return Finding(
                DRIFT_EVENTS,
                subject,
                Verdict.SKIPPED,
                "not checked: the identity may not read Event Grid there (it needs Reader, or "
                f"{_EVENT_GRID_READ}, on subscription {subscription}); "
                f"verify: {_event_subscription_command(subscription)}",
            )
        if failure.code == _CONNECTION_FAILED:  # one error line for the endpoint: Azure RBAC's
            return _skipped(DRIFT_EVENTS, subject, "while ARM cannot be reached (Azure RBAC, endpoint)")
        return _error(DRIFT_EVENTS, subject, failure)
    delivering = next((r for r in routes if _delivers_drift_events(r)), None)
    if delivering is not None:
        topic = delivering.topic.resources[-1][1]
        return Finding(
            DRIFT_EVENTS,
            subject,
            Verdict.OK,
            f"{delivering.name} on system topic {topic} delivers role-assignment writes and deletes "
            f"to the {EVENTS_QUEUE} queue",
        )
    return Finding(
        DRIFT_EVENTS,
        subject,
        Verdict.MISSING,
        f"no event subscription of its system topic ({len(routes)} found) delivers ResourceWriteSuccess "
        f"and ResourceDeleteSuccess to a Service Bus queue `{EVENTS_QUEUE}`",
        fix=f"azd provision with driftEvents on (the default) and subscription {subscription} among "
        f"eventSubscriptionIds (infra/app/events-subscription.bicep); check: "
        f"{_event_subscription_command(subscription)}",
    )


def _delivers_drift_events(route: EventRoute) -> bool:
    """A Service Bus queue named `events`, sent both event types (an empty filter sends every type)."""
    if route.endpoint_type.lower() != "servicebusqueue":
        return False
    try:
        queue = ArmScope.parse(route.destination_id, "event subscription destination")
    except IdentifierError:
        return False
    sends = {t.lower() for t in route.event_types}
    return queue.resources[-1:] == (("queues", EVENTS_QUEUE),) and (
        not sends or {t.lower() for t in DRIFT_EVENT_TYPES} <= sends
    )


def _event_subscription_command(subscription: Guid) -> str:
    return (
        f"az eventgrid system-topic list --subscription {subscription} "
        "--query \"[?topicType=='Microsoft.Resources.Subscriptions'].[name,resourceGroup]\" -o tsv, then "
        f"az eventgrid system-topic event-subscription show --name {EVENT_SUBSCRIPTION} "
        f"--system-topic-name <name> --resource-group <resourceGroup> --subscription {subscription} "
        "--query deliveryWithResourceIdentity.destination.resourceId: the `events` queue"
    )


# ---------------------------------------------------------------- output


def _error(area: str, subject: str, failure: Failure) -> Finding:
    return Finding(area, subject, Verdict.ERROR, f"could not check: {_one_line(failure)}")


def _skipped(area: str, subject: str, why: str) -> Finding:
    return Finding(area, subject, Verdict.SKIPPED, f"not checked {why}")


def _one_line(error: BaseException) -> str:
    text = (error.message if isinstance(error, Failure) else str(error)).strip().splitlines()
    return text[0][:400] if text else type(error).__name__


def _as_table(principal_id: str | None, findings: Sequence[Finding]) -> str:
    person = any(f.subject == PERSON_SIGN_IN for f in findings)
    who = "the person signed in (not the deployed identity)" if person else "the identity"
    lines = [f"Checking the rights of {who} {principal_id or '(not signed in)'}"]
    area = ""
    for finding in findings:
        if finding.area != area:
            area = finding.area
            lines += ["", area]
        detail = f": {finding.detail}" if finding.detail else ""
        lines.append(f"  [{finding.verdict}] {finding.subject}{detail}")
        if finding.fix:
            lines.append(f"      fix: {finding.fix}")
    missing = sum(f.verdict is Verdict.MISSING for f in findings)
    errors = sum(f.verdict is Verdict.ERROR for f in findings)
    lines.append("")
    if missing or errors:
        lines.append(
            f"{missing} missing, {errors} not checked: apply the fixes above, then run "
            "`python -m reconciler doctor` again."
        )
    elif person:
        lines.append(
            "Everything you need to run plan and apply yourself is in place; the deployed identity was not "
            "checked: run doctor as it."
        )
    else:
        lines.append("Everything the reconciler needs is in place.")
    if skipped := sum(f.verdict is Verdict.SKIPPED for f in findings):
        lines.append(f"{skipped} not checked by doctor ([skipped]): each line says how to verify it.")
    return "\n".join(lines)


def _as_json(principal_id: str | None, findings: Sequence[Finding]) -> str:
    return json.dumps(
        {
            "principalId": principal_id,
            "ok": not any(f.verdict in (Verdict.MISSING, Verdict.ERROR) for f in findings),
            "findings": [asdict(f) for f in findings],
        },
        indent=2,
    )

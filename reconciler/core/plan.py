"""plan(desired, observed, policy) -> Plan: the pure diff at the heart of the reconciler.

No I/O, no clock, no SDK types. Configs that share an application are planned together,
so that removing one never removes what another still wants. Only objects that carry the
reconciler's marker are ever deleted; unmarked ones are adopted when they match exactly
and reported as foreign otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from reconciler.core.actions import (
    Action,
    ActionKind,
    ApplicationAction,
    AppTarget,
    ConnectionAction,
    CredentialAction,
    Drift,
    DriftKind,
    PipelineAction,
    RoleAssignmentAction,
)
from reconciler.core.identifiers import CredentialName
from reconciler.core.issuers import Trust, entra_trust
from reconciler.core.model import (
    APPLICATION_TAG,
    DEPLOYED_IDENTITY_VARIABLE,
    MAX_CREDENTIALS_PER_APP,
    TOKEN_EXCHANGE_AUDIENCE,
    WORKLOAD_IDENTITY_SCHEME,
    Application,
    ApplicationRef,
    ConnectionKey,
    FederatedCredential,
    FederationConfig,
    ObservedState,
    PipelineAccess,
    PruneMode,
    RoleAssignment,
    ServiceConnection,
    owner_of,
    role_assignment_name,
)
from reconciler.core.policy import GrantPolicy, Rule, Violation
from reconciler.core.roles import builtin_role
from reconciler.core.tenancy import TENANT_TAG_PREFIX, Tenant, app_key, claim_key, tenant_of_tags, tenant_tag


class ErrorCode(StrEnum):
    APPLICATION_NOT_FOUND = "application-not-found"
    APPLICATION_NOT_OWNED = "application-not-owned"
    APPLICATION_AMBIGUOUS = "application-ambiguous"
    CREDENTIAL_NAME_TAKEN = "credential-name-taken"
    CREDENTIAL_LIMIT = "credential-limit"
    CONNECTION_NOT_READY = "connection-not-ready"
    APPLICATION_CLAIMED = "application-claimed"  # another ADO project claimed the application
    CONNECTION_CLAIMED = "connection-claimed"  # the connection carries another config's marker
    ORGANIZATION_UNKNOWN = "organization-unknown"  # its id, which a converted connection's subject carries
    DEPLOYED_IDENTITY_UNKNOWN = "deployed-identity-unknown"  # a person would create an app it cannot own
    TENANT_MISMATCH = "tenant-mismatch"  # the config names a tenant the reconciler does not sign in to
    # A role it asks for is held only under an ABAC condition, by an assignment the reconciler did not create
    ROLE_CONDITIONED = "role-assignment-conditioned"


class FindingKind(StrEnum):
    FOREIGN = "foreign"  # unmarked and not wanted: reported, never touched
    ADOPTED = "adopted"  # unmarked but exactly what a config wants: used as is
    ORPHANED = "orphaned"  # marked for a config that is neither desired nor retired
    KEPT = "kept"  # marked and not wanted, but its config says prune: none
    OVERRULED = "claim-overruled"  # a claim row of an adopted application that its tenant tag contradicts


@dataclass(frozen=True)
class PlanError:
    """Why a config cannot be planned; nothing is changed for it."""

    config_id: str
    code: ErrorCode
    message: str

    def __str__(self) -> str:
        return f"{self.config_id}: {self.message} [{self.code}]"


@dataclass(frozen=True)
class Finding:
    kind: FindingKind
    config_ids: tuple[str, ...]
    target: str
    detail: str


@dataclass(frozen=True)
class Plan:
    actions: tuple[Action, ...] = ()
    violations: tuple[Violation, ...] = ()
    errors: tuple[PlanError, ...] = ()
    findings: tuple[Finding, ...] = ()
    # config id -> client id of the existing application it resolved to (absent: to be created)
    applications: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        return not self.actions


def plan(
    configs: Sequence[FederationConfig],
    observed: ObservedState,
    policy: GrantPolicy,
    retired: Sequence[FederationConfig] = (),
    *,
    claims: Mapping[str, Tenant] | None = None,
    applied: Mapping[str, str] | None = None,
) -> Plan:
    """The actions that make `observed` match `configs`, in dependency order.

    `retired` are configs that were deleted from the desired state: what they own is
    removed (when their prune mode allows) unless a desired config still wants it.
    `claims` (claim key -> tenant, see reconciler.core.tenancy) say which ADO project each
    application belongs to: nothing is written to an application for a config of another
    project unless the policy shares it. `applied` (config id -> client id) is the
    application each config was last applied to: when a config now names another one, what
    it created on the old one is removed, so the old application no longer trusts its connection.
    `observed.ownership`, when read, says which applications the reconciler's identity owns: the
    configs of an adopted application it does not own are blocked, and nothing is written to it.
    Unread (None: nothing adopted, or a person signed in with their own rights), the rule is not applied.
    """
    groups: dict[str, _AppGroup] = {}
    for config in sorted(configs, key=lambda c: c.id):
        groups.setdefault(config.application.key, _AppGroup()).active.append(config)
    for config in sorted(retired, key=lambda c: c.id):
        groups.setdefault(config.application.key, _AppGroup()).retired.append(config)
    builder = _PlanBuilder(observed, policy, claims or {}, configs)
    for key, moved in builder.moved_away(configs, groups, applied or {}):
        groups.setdefault(key, _AppGroup()).retired.append(moved)
    for key in sorted(groups):
        builder.plan_group(groups[key])
    return builder.build()


@dataclass
class _AppGroup:
    active: list[FederationConfig] = field(default_factory=list)
    retired: list[FederationConfig] = field(default_factory=list)


@dataclass(frozen=True)
class _CredentialWant:
    """The credential a config needs: concrete values, or those its connection will return.

    `follows` names the connection whose returned values the engine must use because this
    plan writes to it; `issuer`/`subject` are then the values expected back (None when
    they cannot be predicted: a new connection, or one whose tenant changes). A connection
    to be converted or moved has computed values and follows nothing: the credential must
    exist before ADO is asked. `superseded` is the trust a moving connection leaves behind.
    """

    config: FederationConfig
    issuer: str | None
    subject: str | None
    drift: Drift | None  # why the values are pending, when they are
    follows: ConnectionKey | None = None
    superseded: Trust | None = None

    @property
    def pending(self) -> bool:
        return self.issuer is None


class _PlanBuilder:
    def __init__(
        self,
        observed: ObservedState,
        policy: GrantPolicy,
        claims: Mapping[str, Tenant],
        configs: Sequence[FederationConfig],
    ) -> None:
        self.observed = observed
        self.policy = policy
        self.claims = claims
        # Across all groups: a retired config's connection is never deleted while any desired
        # config (or the same config, moved to another application) still names it.
        self.active_ids = {c.id for c in configs}
        self.wanted_connections = {c.connection.folded for c in configs}
        self.actions: list[Action] = []
        self.violations: list[Violation] = []
        self.errors: list[PlanError] = []
        self.findings: list[Finding] = []
        self.applications: dict[str, str] = {}

    def build(self) -> Plan:
        # A stable sort: within a phase, actions keep the order their group planned them in.
        ordered = sorted(self.actions, key=lambda action: action.phase)
        return Plan(
            tuple(ordered),
            tuple(self.violations),
            tuple(self.errors),
            tuple(self.findings),
            dict(self.applications),
        )

    def moved_away(
        self,
        configs: Sequence[FederationConfig],
        groups: Mapping[str, _AppGroup],
        applied: Mapping[str, str],
    ) -> list[tuple[str, FederationConfig]]:
        """For each config now on another application than it was last applied to: itself as
        retired from the old application (under the group that plans that application).

        Everything it created there is removed whatever its prune mode: prune: none keeps what
        a config no longer asks for on its application, not trust in an application it left.
        """
        group_of_app: dict[str, str] = {}
        for key, group in groups.items():
            existing = self._existing(group.active[0].application) if group.active else None
            if existing is not None:
                group_of_app.setdefault(existing.app_id, key)
        moved: list[tuple[str, FederationConfig]] = []
        for config in configs:
            previous = (applied.get(config.id) or "").lower()
            now = self._existing(config.application)
            if not previous or previous in {config.application.app_id, now.app_id if now else None}:
                continue
            if self.observed.application_by_app_id(previous) is None:
                continue  # gone, or not read in this pass: nothing to remove
            old = replace(config, application=ApplicationRef(app_id=previous), prune=PruneMode.MANAGED)
            moved.append((group_of_app.get(previous, old.application.key), old))
        return moved

    def _existing(self, ref: ApplicationRef) -> Application | None:
        """The existing application a reference resolves to, without reporting anything."""
        if ref.app_id:
            return self.observed.application_by_app_id(ref.app_id)
        ours = [a for a in self.observed.applications_named(str(ref.display_name)) if a.created_by_reconciler]
        return ours[0] if len(ours) == 1 else None

    def fail(self, configs: Iterable[FederationConfig], code: ErrorCode, message: str) -> None:
        self.errors.extend(PlanError(config.id, code, message) for config in configs)

    def find(self, kind: FindingKind, owners: Iterable[str], target: str, detail: str) -> None:
        self.findings.append(Finding(kind, tuple(owners), target, detail))

    # ----------------------------------------------------------------- per application

    def plan_group(self, group: _AppGroup) -> None:
        """Plan one application's configs; a config that fails here changes nothing (PlanError).

        Some failures are found only once other actions of the config are planned (a credential
        name another config holds, Entra's credential limit): those actions are dropped again, so
        no connection that could never sign in is made, and no role granted, for a failed config.
        """
        errors, actions = len(self.errors), len(self.actions)
        self._plan_group(group)
        failed = {error.config_id for error in self.errors[errors:]}
        if failed:
            self.actions[actions:] = [
                action for action in self.actions[actions:] if not set(action.config_ids) <= failed
            ]

    def _plan_group(self, group: _AppGroup) -> None:
        active: list[FederationConfig] = []
        frozen: set[str] = set()  # configs that must not be changed: what they own stays
        for config in group.active:
            violations = self.policy.check(config, self.observed.custom_roles)
            self.violations.extend(violations)
            if violations or self._in_another_tenant(config):
                frozen.add(config.id)
            else:
                active.append(config)
        if not active and not group.retired:
            return  # every config is blocked: nothing to write, and nothing of theirs was read
        app = self._resolve_application(group.active + group.retired)
        if isinstance(app, _Unresolved):
            return
        ref = (group.active + group.retired)[0].application
        claimed = self._claimed_elsewhere(ref, app, active) + self._connections_of_others(active)
        frozen.update(c.id for c in claimed)
        active = [c for c in active if c not in claimed]
        if app is not None and ref.app_id:
            # Both are reported, so one round with the app's owner fixes both.
            tagged = self._owners_allow(app, [*active, *group.retired])
            if not (self._identity_owns(app, [*active, *group.retired]) and tagged):
                return  # not ours to write to yet: plan nothing for it, not even roles
        target = AppTarget(app.app_id, app.display_name) if app else AppTarget(None, str(ref.display_name))
        if app is not None:
            self.applications.update((c.id, app.app_id) for c in active)
        if app is None and not active:
            return  # nothing to create for, nothing to prune from
        if app is None and self._person_may_not_create(active):
            return
        owners = _Owners(active, group.retired, frozen, self.active_ids)
        self._plan_principal(app, target, active, self._tenant_of(ref, active))
        if not ref.app_id:
            self._plan_deployed_owner(app, target, active)
        wants = [self._plan_connection(config, target) for config in active]
        self._plan_credentials(app, target, [w for w in wants if w is not None], owners)
        principal_id = app.service_principal_id if app else None
        self._plan_role_assignments(principal_id, target, active, owners)
        self._plan_retired_connections(group.retired, active)

    def _in_another_tenant(self, config: FederationConfig) -> bool:
        """Whether the config names a tenant other than the one the reconciler signs in to (and
        fail it if so): the application, credential and roles would be set up in this tenant
        while its connection signs in to the other, so it could never sign in. Retired configs
        are not checked: what they own here can still be removed. Unknown tenant: not checked."""
        ours = self.observed.tenant_id
        if ours is None or config.tenant_id.lower() == ours.lower():
            return False
        self.fail(
            [config],
            ErrorCode.TENANT_MISMATCH,
            f"config names tenant {config.tenant_id}, but the reconciler manages tenant {ours}: the "
            "connection could never sign in to what the reconciler sets up; fix tenantId or run the "
            f"reconciler in tenant {config.tenant_id}",
        )
        return True

    def _resolve_application(self, configs: list[FederationConfig]) -> Application | _Unresolved | None:
        """The existing app the group refers to; None when it is to be created."""
        ref = configs[0].application
        if ref.app_id:
            app = self.observed.application_by_app_id(ref.app_id)
            if app is None:
                self.fail(
                    configs,
                    ErrorCode.APPLICATION_NOT_FOUND,
                    f"application {ref.app_id} does not exist in the tenant or the reconciler cannot read it",
                )
                return _UNRESOLVED
            return app
        named = self.observed.applications_named(str(ref.display_name))
        ours = [app for app in named if app.created_by_reconciler]
        if len(ours) > 1:
            self.fail(
                configs,
                ErrorCode.APPLICATION_AMBIGUOUS,
                f"{len(ours)} applications named {ref.display_name!r} carry the reconciler's tag; "
                "set appId to say which one",
            )
            return _UNRESOLVED
        if not ours and named:
            self.fail(
                configs,
                ErrorCode.APPLICATION_NOT_OWNED,
                f"an application named {ref.display_name!r} exists that the reconciler did not create; "
                f"set application.appId: {named[0].app_id} to adopt it",
            )
            return _UNRESOLVED
        return ours[0] if ours else None

    def _claimed_elsewhere(
        self, ref: ApplicationRef, app: Application | None, active: list[FederationConfig]
    ) -> list[FederationConfig]:
        """The configs that may not use this application: another ADO project owns it and the
        policy does not share it. An adopted application belongs to the project its owners named
        in its tenant tag (a claim row only says who asked first); one the reconciler created or
        will create belongs to the project in the claims, or in the tag it wrote."""
        keys = {claim_key(ref)} | ({app_key(app.app_id)} if app else set())
        owners = {self.claims[key] for key in keys if key in self.claims}
        tagged = tenant_of_tags(app.tags) if app else None
        if app is not None and not app.created_by_reconciler:
            self._report_overruled_claims(app, owners, tagged, active)
            owners = set()
        owners |= {tagged} if tagged else set()
        refused: list[FederationConfig] = []
        for config in active:
            tenant = Tenant.of(config)
            others = sorted(o for o in owners if not self.policy.may_use_application(keys, o, tenant))
            if others:
                refused.append(config)
                where = f"app {app.app_id}" if app else f"application {ref.display_name!r}"
                self.fail(
                    [config],
                    ErrorCode.APPLICATION_CLAIMED,
                    f"{where} belongs to ADO project {others[0]}, not {tenant}; use an application of "
                    "this project, or ask for it in the policy's sharedApplications",
                )
        return refused

    def _report_overruled_claims(
        self, app: Application, claimed: set[Tenant], tagged: Tenant | None, configs: list[FederationConfig]
    ) -> None:
        """A claim row of an adopted application that its owners' tag contradicts is reported, not obeyed."""
        for tenant in sorted(claimed - {tagged} if tagged else set()):
            self.find(
                FindingKind.OVERRULED,
                [c.id for c in configs],
                f"app {app.app_id}",
                f"claimed first by ADO project {tenant}, but its owners' tag names {tagged}; the tag decides",
            )

    def _owners_allow(self, app: Application, configs: list[FederationConfig]) -> bool:
        """Whether an adopted application's owners named an ADO project in its tenant tag; when not,
        its configs are blocked with the command for an owner (the tag is their proof of consent)."""
        if app.created_by_reconciler or tenant_of_tags(app.tags) is not None:
            return True
        for config in configs:
            kept = [tag for tag in sorted(app.tags) if not tag.startswith(TENANT_TAG_PREFIX)]
            tags = json.dumps({"tags": [*kept, tenant_tag(Tenant.of(config))]})
            uri = f"https://graph.microsoft.com/v1.0/applications(appId='{app.app_id}')"
            body = f"--headers Content-Type=application/json --body '{tags}'"
            fix = f'az rest --method PATCH --uri "{uri}" {body}'
            message = (
                f"application {app.app_id} ({app.display_name!r}) names no single ADO project in a "
                f"{TENANT_TAG_PREFIX}<organization>/<project> tag, so nothing proves its owners allow "
                f"{Tenant.of(config)} to use it; an owner of the application must tag it once (this keeps "
                f"its other tags): {fix}"
            )
            self.violations.append(
                Violation(config.id, Rule.NOT_TAGGED, f"application {app.app_id}", message)
            )
        return False

    def _identity_owns(self, app: Application, configs: list[FederationConfig]) -> bool:
        """Whether the reconciler's identity owns an adopted application; when not, its configs are
        blocked with the command that fixes it (only an owner or an admin can add an owner)."""
        ownership = self.observed.ownership
        if ownership is None or ownership.owns(app):
            return True
        fix = f"az ad app owner add --id {app.app_id} --owner-object-id {ownership.principal_id}"
        message = (
            f"the reconciler's identity does not own application {app.app_id} ({app.display_name!r}), "
            f"so Entra refuses its changes to it; an owner of the application or an Entra admin must "
            f"add it as owner once: {fix}"
        )
        self.violations.extend(
            Violation(config.id, Rule.NOT_OWNER, f"application {app.app_id}", message) for config in configs
        )
        return False

    def _person_may_not_create(self, active: list[FederationConfig]) -> bool:
        """A person would create the application, but the deployed identity's id is not known, so
        it could not be made owner and every later pass of the deployed reconciler would get
        Graph's 403 on it: the configs fail instead, and nothing is created."""
        person = self.observed.person
        if person is None or person.deployed is not None:
            return False
        self.fail(
            active,
            ErrorCode.DEPLOYED_IDENTITY_UNKNOWN,
            f"signed in as a person, the application {active[0].application.display_name!r} would be "
            "yours, not the deployed reconciler's (it may change only the applications it owns); set "
            f"{DEPLOYED_IDENTITY_VARIABLE} to its object id (`export {DEPLOYED_IDENTITY_VARIABLE}=$(azd env "
            f"get-value {DEPLOYED_IDENTITY_VARIABLE})`) so that it is made owner of what you create, or "
            "let the deployed reconciler create it",
        )
        return True

    def _plan_deployed_owner(
        self, app: Application | None, target: AppTarget, active: list[FederationConfig]
    ) -> None:
        """A person's run: the deployed identity becomes owner of the application the reconciler
        creates now, or of one it created before that the identity does not own (an earlier add
        failed), right after the create and before anything is written to the application."""
        deployed = self.observed.person.deployed if self.observed.person else None
        if deployed is None or not active or (app is not None and deployed.owns(app)):
            return
        why = "created now" if app is None else "created by the reconciler, not owned by the identity"
        drift = Drift(DriftKind.MISSING, f"the deployed identity {deployed.principal_id} as owner ({why})")
        self.actions.append(
            ApplicationAction(
                kind=ActionKind.ADD_APPLICATION_OWNER,
                config_ids=tuple(c.id for c in active),
                drift=drift,
                app=target,
                owner=deployed.principal_id,
            )
        )

    def _connections_of_others(self, active: list[FederationConfig]) -> list[FederationConfig]:
        """The configs whose connection the reconciler created for another config: two configs on
        one connection would flip it between their applications on every pass."""
        refused: list[FederationConfig] = []
        for config in active:
            current = self.observed.connection(config.connection)
            marked_for = owner_of(current.description) if current else None
            if marked_for is not None and marked_for != config.id:
                refused.append(config)
                self.fail(
                    [config],
                    ErrorCode.CONNECTION_CLAIMED,
                    f"service connection {config.connection} was created for config {marked_for}; "
                    "retire that config before another one manages the connection",
                )
        return refused

    def _tenant_of(self, ref: ApplicationRef, active: list[FederationConfig]) -> Tenant | None:
        """Whose an application created for this group is: its claim, else its first config's project."""
        return self.claims.get(claim_key(ref)) or (Tenant.of(active[0]) if active else None)

    def _plan_principal(
        self,
        app: Application | None,
        target: AppTarget,
        active: list[FederationConfig],
        tenant: Tenant | None,
    ) -> None:
        if not active:
            return
        ids = tuple(c.id for c in active)
        if app is None:
            drift = Drift(DriftKind.MISSING, f"no application named {target.display_name!r}")
            tags = (APPLICATION_TAG, *([tenant_tag(tenant)] if tenant else []))
            self.actions.append(
                ApplicationAction(
                    kind=ActionKind.CREATE_APPLICATION, config_ids=ids, drift=drift, app=target, tags=tags
                )
            )
        if app is None or app.service_principal_id is None:
            drift = Drift(DriftKind.MISSING, f"{target} has no service principal")
            self.actions.append(
                ApplicationAction(
                    kind=ActionKind.CREATE_SERVICE_PRINCIPAL, config_ids=ids, drift=drift, app=target
                )
            )

    # ----------------------------------------------------------------- service connections

    def _plan_connection(self, config: FederationConfig, app: AppTarget) -> _CredentialWant | None:
        """Plan the connection; return the credential it needs, or None when it cannot have one yet."""
        current = self.observed.connection(config.connection)
        if current is None:
            created = self._connection_action(
                ActionKind.CREATE_CONNECTION,
                config,
                None,
                app,
                Drift(DriftKind.MISSING, "no such service connection"),
            )
            self._plan_pipelines(config, None, created=True)
            return created
        if not current.ready:
            # Mid-operation or failed: no write to it (a conversion or update could meet either),
            # nothing trusts it yet; ADO's own message says what happened. Each pass looks again.
            self.fail(
                [config],
                ErrorCode.CONNECTION_NOT_READY,
                f"service connection {config.connection} ({current.id}): {current.readiness}; nothing is "
                "changed until ADO reports it ready (a failed one is for a person to repair under "
                "Project settings > Service connections)",
            )
            return None
        self._plan_pipelines(config, current, created=False)
        if current.scheme != WORKLOAD_IDENTITY_SCHEME:
            detail = f"scheme is {current.scheme}, converted in place (same id, authorizations kept)"
            drift = Drift(DriftKind.SECRET_SCHEME, detail)
            return self._plan_move(ActionKind.CONVERT_CONNECTION, config, current, app, drift)
        wrong = _connection_differences(config, current, app)
        want: _CredentialWant | None = None
        if wrong:
            drift = Drift(DriftKind.WRONG_VALUE, "; ".join(wrong))
            want = self._connection_action(ActionKind.UPDATE_CONNECTION, config, current, app, drift)
            if current.tenant_id == config.tenant_id and current.issuer and current.subject:
                # ADO keeps the issuer and subject when only the app or subscription changes:
                # expect them back, so existing credentials can be matched now.
                want = replace(want, issuer=current.issuer, subject=current.subject, drift=None)
        if current.uses_legacy_issuer:
            detail = f"issuer {current.issuer} is ADO's retiring issuer; moving to the Entra issuer"
            drift = Drift(DriftKind.LEGACY_ISSUER, detail)
            return self._plan_move(ActionKind.MIGRATE_CONNECTION_ISSUER, config, current, app, drift)
        if want is not None:
            return want
        if not current.issuer or not current.subject:
            self.fail(
                [config],
                ErrorCode.CONNECTION_NOT_READY,
                f"service connection {config.connection} reports no workload identity issuer and subject yet",
            )
            return None
        return _CredentialWant(config, current.issuer, current.subject, None)

    def _connection_action(
        self,
        kind: ActionKind,
        config: FederationConfig,
        current: ServiceConnection | None,
        app: AppTarget,
        drift: Drift,
        expects: Trust | None = None,
    ) -> _CredentialWant:
        """Append the action; the credential then takes the values the connection returns."""
        self.actions.append(
            ConnectionAction(
                kind=kind,
                config_ids=(config.id,),
                drift=drift,
                connection=config.connection,
                connection_id=current.id if current else None,
                app=app,
                tenant_id=config.tenant_id,
                subscription_id=config.subscription_id,
                subscription_name=config.subscription_name,
                description=config.marker,
                expects=expects,
            )
        )
        follows = Drift(DriftKind.FOLLOWS_CONNECTION, f"takes the issuer and subject {kind} returns")
        return _CredentialWant(config, None, None, follows, config.connection)

    def _plan_move(
        self,
        kind: ActionKind,
        config: FederationConfig,
        current: ServiceConnection,
        app: AppTarget,
        drift: Drift,
    ) -> _CredentialWant | None:
        """Convert a secret-based connection, or move one off ADO's issuer, to Entra's issuer.

        ADO does either only once the application trusts the values the connection will have,
        so the credential is planned from the computed values (it runs in an earlier phase).
        """
        organization_id = self.observed.organization_id(config.organization)
        if organization_id is None:
            self.fail(
                [config],
                ErrorCode.ORGANIZATION_UNKNOWN,
                f"the id of Azure DevOps organization {config.organization!r} could not be read; the "
                f"subject of {config.connection} on Entra's issuer carries it",
            )
            return None
        expects = entra_trust(config.tenant_id, organization_id, current.id)
        self._connection_action(kind, config, current, app, drift, expects)
        left = Trust(current.issuer, current.subject) if current.issuer and current.subject else None
        return _CredentialWant(config, expects.issuer, expects.subject, None, superseded=left)

    def _plan_pipelines(
        self, config: FederationConfig, current: ServiceConnection | None, *, created: bool
    ) -> None:
        wanted = config.pipelines
        if created:
            missing = wanted
        elif current is None or current.pipelines is None:
            return  # not observed in this pass: pipeline permissions are checked on their own cadence
        else:
            missing = _missing_pipelines(wanted, current.pipelines)
        if not missing.all_pipelines and not missing.pipeline_ids:
            return
        drift = Drift(DriftKind.MISSING, "pipelines not authorized to use the connection")
        self.actions.append(
            PipelineAction(
                kind=ActionKind.AUTHORIZE_PIPELINES,
                config_ids=(config.id,),
                drift=drift,
                connection=config.connection,
                connection_id=current.id if current else None,
                access=missing,
            )
        )

    def _plan_retired_connections(
        self, retired: list[FederationConfig], active: list[FederationConfig]
    ) -> None:
        if not retired:
            return  # the common case; the set below is as large as the whole desired state
        still_wanted = {c.connection.folded for c in active} | self.wanted_connections
        for config in retired:
            current = self.observed.connection(config.connection)
            if current is None or config.connection.folded in still_wanted or config.id in self.active_ids:
                continue
            if owner_of(current.description) != config.id or config.prune is not PruneMode.MANAGED:
                continue
            drift = Drift(
                DriftKind.RETIRED, f"config {config.id} was deleted and the reconciler created this"
            )
            self.actions.append(
                ConnectionAction(
                    kind=ActionKind.DELETE_CONNECTION,
                    config_ids=(config.id,),
                    drift=drift,
                    connection=config.connection,
                    connection_id=current.id,
                    app=AppTarget(current.app_id, ""),
                    tenant_id=config.tenant_id,
                    subscription_id=config.subscription_id,
                    subscription_name=config.subscription_name,
                    description=config.marker,
                )
            )

    # ----------------------------------------------------------------- federated credentials

    def _plan_credentials(
        self, app: Application | None, target: AppTarget, wants: list[_CredentialWant], owners: _Owners
    ) -> None:
        current = list(app.credentials) if app else []
        by_pair: dict[tuple[str | None, str | None], FederatedCredential] = {
            (c.issuer, c.subject): c for c in current
        }
        # First every credential that already trusts a wanted connection is claimed, so that
        # no write below rewrites one that another config relies on.
        claims = {
            want.config.id: by_pair[(want.issuer, want.subject)]
            for want in wants
            if not want.pending and (want.issuer, want.subject) in by_pair
        }
        kept: set[str] = {cred.id for cred in claims.values()}  # ids of existing credentials that stay
        # The credential a moving connection still uses stays until the move is done.
        superseded = [
            (want, cred)
            for want in wants
            for cred in current
            if want.superseded == Trust(cred.issuer, cred.subject)
            and owner_of(cred.description) == want.config.id
        ]
        kept.update(cred.id for _want, cred in superseded)
        writes: list[CredentialAction] = []
        for want in wants:
            claimed = claims.get(want.config.id)
            if claimed is not None:
                write = self._settle_matching_credential(want.config, claimed, target)
            else:
                write = self._credential_write(want, current, target, kept)
            if write is not None:
                writes.append(write)
        deletes = [
            d for cred in current if cred.id not in kept for d in self._prune_credential(cred, target, owners)
        ]
        writes = self._within_capacity(writes, len(current) - len(deletes))
        creates = sum(1 for w in writes if w.kind is ActionKind.CREATE_CREDENTIAL)
        # Deleting first briefly leaves pipelines without a credential; do it only when
        # creating first would need more than Entra's 20 credentials at once.
        if len(current) + creates > MAX_CREDENTIALS_PER_APP:
            self.actions.extend([*deletes, *writes])
        else:
            self.actions.extend([*writes, *deletes])
        for want, cred in superseded:
            self._retire_superseded(want.config, cred, target)

    def _retire_superseded(
        self, config: FederationConfig, cred: FederatedCredential, target: AppTarget
    ) -> None:
        """Delete our credential for the issuer the connection moves off, once it has moved."""
        where = f"credential {cred.name!r} on {target}"
        if config.prune is not PruneMode.MANAGED:
            self.find(
                FindingKind.KEPT,
                [config.id],
                where,
                "trusts the issuer the connection moves off; prune is none",
            )
            return
        drift = Drift(DriftKind.NOT_WANTED, f"trusts {cred.issuer}, which the connection moves off")
        self.actions.append(_delete_credential(config.id, drift, target, cred, superseded=True))

    def _credential_write(
        self, want: _CredentialWant, current: list[FederatedCredential], target: AppTarget, kept: set[str]
    ) -> CredentialAction | None:
        """Create the config's credential, or rewrite the one of its name; claimed ones are not touched."""
        config = want.config
        named = next((c for c in current if c.name.lower() == config.credential_name.lower()), None)
        if named is not None and want.superseded == Trust(named.issuer, named.subject):
            # The connection still uses it until it moves: the new trust gets a name of its own.
            drift = Drift(DriftKind.MISSING, f"no credential trusts {want.subject}")
            name = successor_name(config.credential_name)
            return self._credential_action(ActionKind.CREATE_CREDENTIAL, want, target, None, drift, name=name)
        if named is not None and owner_of(named.description) != config.id:
            self.fail(
                [config],
                ErrorCode.CREDENTIAL_NAME_TAKEN,
                f"{target} already has a credential named {config.credential_name!r} that does not "
                "belong to this config; set serviceConnection.credentialName to another name",
            )
            if owner_of(named.description) is not None:
                kept.add(named.id)
            return None
        if named is not None and named.id in kept:
            self.fail(
                [config],
                ErrorCode.CREDENTIAL_NAME_TAKEN,
                f"the credential named {config.credential_name!r} on {target} trusts another config's "
                "connection; set serviceConnection.credentialName to another name",
            )
            return None
        if named is not None:
            kept.add(named.id)
            drift = want.drift or Drift(DriftKind.WRONG_VALUE, _credential_differences(named, want))
            return self._credential_action(ActionKind.UPDATE_CREDENTIAL, want, target, named.id, drift)
        drift = want.drift or Drift(DriftKind.MISSING, f"no credential trusts {want.subject}")
        return self._credential_action(ActionKind.CREATE_CREDENTIAL, want, target, None, drift)

    def _settle_matching_credential(
        self, config: FederationConfig, same: FederatedCredential, target: AppTarget
    ) -> CredentialAction | None:
        """A credential with the wanted issuer and subject exists: adopt it, or fix our own one's audience."""
        if owner_of(same.description) is None:
            self.find(
                FindingKind.ADOPTED, [config.id], f"credential {same.name!r} on {target}", "matches exactly"
            )
            return None
        if same.audiences == (TOKEN_EXCHANGE_AUDIENCE,) or owner_of(same.description) != config.id:
            return None
        want = _CredentialWant(config, same.issuer, same.subject, None)
        drift = Drift(DriftKind.WRONG_VALUE, f"audiences are {list(same.audiences)}")
        return self._credential_action(
            ActionKind.UPDATE_CREDENTIAL, want, target, same.id, drift, name=same.name
        )

    def _credential_action(
        self,
        kind: ActionKind,
        want: _CredentialWant,
        target: AppTarget,
        credential_id: str | None,
        drift: Drift,
        name: str | None = None,
    ) -> CredentialAction:
        config = want.config
        return CredentialAction(
            kind=kind,
            config_ids=(config.id,),
            drift=drift,
            app=target,
            name=name or config.credential_name,
            credential_id=credential_id,
            issuer=want.issuer,
            subject=want.subject,
            from_connection=want.follows,
            description=config.marker,
        )

    def _prune_credential(
        self, cred: FederatedCredential, target: AppTarget, owners: _Owners
    ) -> list[CredentialAction]:
        where = f"credential {cred.name!r} on {target}"
        drift = owners.prune_drift(cred.description, where, self)
        if drift is None:
            return []
        return [_delete_credential(str(owner_of(cred.description)), drift, target, cred)]

    def _within_capacity(self, writes: list[CredentialAction], remaining: int) -> list[CredentialAction]:
        """Drop the creates that would exceed Entra's limit, as planning errors rather than failed writes."""
        room = MAX_CREDENTIALS_PER_APP - remaining
        allowed: list[CredentialAction] = []
        for write in writes:
            if write.kind is ActionKind.CREATE_CREDENTIAL:
                if room <= 0:
                    self.errors.append(
                        PlanError(
                            write.config_ids[0],
                            ErrorCode.CREDENTIAL_LIMIT,
                            f"{write.app} already holds {MAX_CREDENTIALS_PER_APP} federated credentials "
                            "(Entra's limit); remove one or use another application",
                        )
                    )
                    continue
                room -= 1
            allowed.append(write)
        return allowed

    # ----------------------------------------------------------------- role assignments

    def _plan_role_assignments(
        self, principal_id: str | None, target: AppTarget, active: list[FederationConfig], owners: _Owners
    ) -> None:
        wanted: dict[tuple[str, str], tuple[FederationConfig, str]] = {}
        wanting: dict[tuple[str, str], list[FederationConfig]] = {}
        for config in active:
            for grant in config.role_grants:
                wanted.setdefault((grant.scope, grant.role_id), (config, grant.role_name))
                wanting.setdefault((grant.scope, grant.role_id), []).append(config)
        current = self.observed.assignments_of(principal_id) if principal_id else ()
        existing = {(ra.scope, ra.role_id): ra for ra in current}
        for (scope, role_id), (config, role_name) in wanted.items():
            found = existing.get((scope, role_id))
            drift = Drift(DriftKind.MISSING, f"{target} does not hold {role_name or role_id} on {scope}")
            if found is not None and found.conditioned:
                replaced = self._conditioned(found, target, wanting[(scope, role_id)], role_name, owners)
                if replaced is None:
                    continue
                drift = replaced
            elif found is not None:
                if owner_of(found.description) is None:
                    what = f"role assignment {found.name} on {scope}"
                    self.find(FindingKind.ADOPTED, [config.id], what, "matches exactly")
                continue
            name = role_assignment_name(scope, role_id, principal_id) if principal_id else None
            self.actions.append(
                RoleAssignmentAction(
                    kind=ActionKind.CREATE_ROLE_ASSIGNMENT,
                    config_ids=(config.id,),
                    drift=drift,
                    scope=scope,
                    role_id=role_id,
                    role_name=role_name,
                    principal_id=principal_id,
                    app=target,
                    assignment_id=None,
                    name=name,
                    description=config.marker,
                )
            )
        for ra in current:
            if (ra.scope, ra.role_id) not in wanted:
                self._prune_role_assignment(ra, target, owners)

    def _conditioned(
        self,
        found: RoleAssignment,
        target: AppTarget,
        configs: list[FederationConfig],
        role_name: str,
        owners: _Owners,
    ) -> Drift | None:
        """A wanted role held only under an ABAC condition: it grants less than the role, so it does
        not satisfy the grant. ARM keeps one assignment per scope, role and principal whatever the
        condition (a second answers RoleAssignmentExists), so the unconditioned one can only be
        created once this one is gone. The reconciler's own assignment (a condition added since) is
        deleted, then created again: the Drift of that create. Any other assignment is never touched:
        the configs asking for the role fail with what to do, and None is returned (no create that
        ARM must refuse)."""
        role = role_name or _role_name(found.role_id) or found.role_id
        condition = " ".join(found.condition.split())
        shown = condition if len(condition) <= 200 else condition[:197] + "..."
        owner = owner_of(found.description)
        if owner is not None and owner not in owners.frozen:
            drift = Drift(
                DriftKind.WRONG_VALUE,
                f"the reconciler's assignment of {role} on {found.scope} to {target} has a condition "
                f"({shown}), so it grants less than the config asks: replaced by one without",
            )
            self.actions.append(
                RoleAssignmentAction(
                    kind=ActionKind.DELETE_ROLE_ASSIGNMENT,
                    config_ids=(configs[0].id,),
                    drift=drift,
                    scope=found.scope,
                    role_id=found.role_id,
                    role_name=role,
                    principal_id=found.principal_id,
                    app=target,
                    assignment_id=found.id,
                    name=found.name,
                    description="",
                )
            )
            return drift
        made = "the reconciler did not create" if owner is None else f"config {owner} (blocked) holds"
        self.fail(
            configs,
            ErrorCode.ROLE_CONDITIONED,
            f"{target} holds {role} on {found.scope} only under a condition ({shown}), by role assignment "
            f"{found.id}, which {made}: that grants less than the config asks. ARM allows one assignment "
            "of a role to a principal at a scope, so none without a condition can be added "
            "(RoleAssignmentExists), and the reconciler does not change that one. Remove the condition "
            f"from it, or delete it (az role assignment delete --ids {found.id}), and the next pass "
            "assigns the role",
        )
        return None

    def _prune_role_assignment(self, ra: RoleAssignment, target: AppTarget, owners: _Owners) -> None:
        where = f"role assignment {ra.name} ({_role_name(ra.role_id) or ra.role_id}) on {ra.scope}"
        drift = owners.prune_drift(ra.description, where, self)
        if drift is None:
            return
        self.actions.append(
            RoleAssignmentAction(
                kind=ActionKind.DELETE_ROLE_ASSIGNMENT,
                config_ids=(str(owner_of(ra.description)),),
                drift=drift,
                scope=ra.scope,
                role_id=ra.role_id,
                role_name=_role_name(ra.role_id),
                principal_id=ra.principal_id,
                app=target,
                assignment_id=ra.id,
                name=ra.name,
                description="",
            )
        )


class _Unresolved:
    pass


_UNRESOLVED = _Unresolved()


@dataclass(frozen=True)
class _Owners:
    """Who may own the marked objects of one application, and what may be pruned."""

    active: list[FederationConfig]
    retired: list[FederationConfig]
    frozen: set[str]
    desired_elsewhere: set[str]  # every desired config id: a retired one among them moved away

    def prune_drift(self, description: str, where: str, builder: _PlanBuilder) -> Drift | None:
        """The reason to delete an existing, unwanted object; None (with a finding) to leave it."""
        owner = owner_of(description)
        if owner is None:
            builder.find(FindingKind.FOREIGN, [], where, "not created by the reconciler; left alone")
            return None
        if owner in self.frozen:
            return None  # its config is blocked by policy: change nothing of it
        config = next((c for c in self.active if c.id == owner), None)
        retired = next((c for c in self.retired if c.id == owner), None)
        if config is None and retired is None:
            detail = f"marked for config {owner}, which is neither desired nor retired; retire it to remove"
            builder.find(FindingKind.ORPHANED, [owner], where, detail)
            return None
        deciding = config or retired
        assert deciding is not None
        if deciding.prune is not PruneMode.MANAGED:
            builder.find(FindingKind.KEPT, [owner], where, "no longer wanted, kept because prune is none")
            return None
        if config is None and owner in self.desired_elsewhere:
            return Drift(DriftKind.NOT_WANTED, f"config {owner} moved to another application")
        if config is None:
            return Drift(DriftKind.RETIRED, f"config {owner} was deleted")
        return Drift(DriftKind.NOT_WANTED, f"config {owner} no longer asks for it")


def successor_name(name: str) -> str:
    """The name of the credential for Entra's issuer when the configured name holds ADO's issuer."""
    suffix = "-entra"
    return name[: CredentialName.max_length - len(suffix)] + suffix


def _role_name(role_id: str) -> str:
    known = builtin_role(role_id)
    return known.name if known else ""


def _connection_differences(
    config: FederationConfig, current: ServiceConnection, app: AppTarget
) -> list[str]:
    wrong: list[str] = []
    if app.app_id is None or (current.app_id or "").lower() != app.app_id:
        wrong.append(f"signs in as {current.app_id}, want {app.app_id or 'the new application'}")
    if (current.tenant_id or "").lower() != config.tenant_id:
        wrong.append(f"tenant is {current.tenant_id}, want {config.tenant_id}")
    if (current.subscription_id or "").lower() != config.subscription_id:
        wrong.append(f"subscription is {current.subscription_id}, want {config.subscription_id}")
    if current.subscription_name != config.subscription_name:
        wrong.append(f"subscription name is {current.subscription_name!r}, want {config.subscription_name!r}")
    return wrong


def _credential_differences(current: FederatedCredential, want: _CredentialWant) -> str:
    wrong = [
        f"{field} is {have!r}, the connection uses {wanted!r}"
        for field, have, wanted in (
            ("issuer", current.issuer, want.issuer),
            ("subject", current.subject, want.subject),
        )
        if have != wanted
    ]
    return "; ".join(wrong)


def _missing_pipelines(wanted: PipelineAccess, current: PipelineAccess) -> PipelineAccess:
    if current.all_pipelines:
        return PipelineAccess()
    if wanted.all_pipelines:
        return PipelineAccess(all_pipelines=True)
    return PipelineAccess(pipeline_ids=wanted.pipeline_ids - current.pipeline_ids)


def _delete_credential(
    config_id: str, drift: Drift, target: AppTarget, cred: FederatedCredential, *, superseded: bool = False
) -> CredentialAction:
    return CredentialAction(
        ActionKind.DELETE_CREDENTIAL,
        (config_id,),
        drift,
        target,
        cred.name,
        cred.id,
        None,
        None,
        None,
        "",
        superseded=superseded,
    )

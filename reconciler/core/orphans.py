"""find_orphans(observed, known) -> findings: what the reconciler made that no config names any more.

The plan (reconciler/core/plan.py) visits applications through the configs that name them, so it
reports marked objects of unknown configs only on applications some config still names. This
module covers the rest: an application the reconciler created that no config of the desired
state names (its config was removed from the file without being retired), the marked credentials
and role assignments on such an application, and marked service connections whose config is
gone. It reports only; nothing is ever removed without `--retired`. Unmarked objects are never
reported: they are not the reconciler's.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from reconciler.core.actions import AppTarget
from reconciler.core.model import Application, FederationConfig, ObservedState, owner_of
from reconciler.core.plan import Finding, FindingKind
from reconciler.core.roles import builtin_role

_RETIRE = "retire it with `--retired FILE` so the reconciler removes what it created"


def find_orphans(
    observed: ObservedState, known: Sequence[FederationConfig], applied_app_ids: Iterable[str] = ()
) -> tuple[Finding, ...]:
    """The orphaned applications, credentials, role assignments and connections in `observed`.

    `known` is every config of the desired state, desired and retired, including those blocked by
    policy or whose reads failed: an application one of them names is never called orphaned.
    `applied_app_ids` are the applications configs were last applied to (they are named too: the
    plan removes what a moved config left there).
    """
    named = _Named(known, applied_app_ids)
    findings: list[Finding] = []
    for app in sorted(observed.applications, key=lambda a: a.app_id):
        if not named.names(app):
            findings.extend(_orphaned_on(app, observed, named))
    findings.extend(_orphaned_connections(observed, named))
    return tuple(findings)


class _Named:
    """What the desired state names: applications by client id or create name, configs, connections."""

    def __init__(self, known: Sequence[FederationConfig], applied_app_ids: Iterable[str]) -> None:
        self.app_ids = {str(c.application.app_id).lower() for c in known if c.application.app_id}
        self.app_ids.update(app_id.lower() for app_id in applied_app_ids)
        self.create_names = {str(c.application.display_name) for c in known if not c.application.app_id}
        self.config_ids = {c.id for c in known}
        self.connections = {c.connection.folded for c in known}

    def names(self, app: Application) -> bool:
        by_name = app.created_by_reconciler and app.display_name in self.create_names
        return by_name or app.app_id.lower() in self.app_ids

    def fix(self, owner: str) -> str:
        """How to clear an object marked for `owner` that sits on an application no config names."""
        if owner in self.config_ids:
            # Its config now names another application (and the pass was not told where it was applied).
            return (
                f"marked for config {owner}, which now names another application; retire its former "
                f"version (naming this application) {_RETIRE.removeprefix('retire it ')}"
            )
        return f"marked for config {owner}, which is neither desired nor retired; {_RETIRE}"


def _orphaned_on(app: Application, observed: ObservedState, named: _Named) -> list[Finding]:
    """The application (when the reconciler created it) and every marked object on it."""
    target = AppTarget(app.app_id, app.display_name)
    findings: list[Finding] = []
    for cred in app.credentials:
        owner = owner_of(cred.description)
        if owner is not None:
            where = f"credential {cred.name!r} on {target}"
            findings.append(Finding(FindingKind.ORPHANED, (owner,), where, named.fix(owner)))
    principal = app.service_principal_id
    for ra in observed.assignments_of(principal) if principal else ():
        owner = owner_of(ra.description)
        if owner is not None:
            known_role = builtin_role(ra.role_id)
            where = (
                f"role assignment {ra.name} ({known_role.name if known_role else ra.role_id}) on {ra.scope}"
            )
            findings.append(Finding(FindingKind.ORPHANED, (owner,), where, named.fix(owner)))
    if not app.created_by_reconciler:
        return findings  # an adopted application is not ours to report, only what we put on it
    owners = tuple(sorted({owner for finding in findings for owner in finding.config_ids}))
    if owners:
        detail = (
            f"created by the reconciler and named by no config; retire {', '.join(owners)} with "
            "`--retired FILE` so the reconciler removes what it created, then delete the application"
        )
    else:
        detail = (
            "created by the reconciler and named by no config, and holds nothing of the reconciler's: "
            f"delete it (`az ad app delete --id {app.app_id}`) unless something else signs in as it"
        )
    application = Finding(
        FindingKind.ORPHANED, owners, f"application {app.display_name} ({app.app_id})", detail
    )
    return [application, *findings]


def _orphaned_connections(observed: ObservedState, named: _Named) -> list[Finding]:
    """Connections marked for a config the desired state does not know, that no config names.

    A connection some config names is that config's business (the plan reports it as claimed)."""
    findings: list[Finding] = []
    for conn in sorted(observed.connections, key=lambda c: c.key.folded):
        owner = owner_of(conn.description)
        if owner is None or owner in named.config_ids or conn.key.folded in named.connections:
            continue
        detail = f"marked for config {owner}, which is neither desired nor retired; {_RETIRE}"
        findings.append(Finding(FindingKind.ORPHANED, (owner,), f"service connection {conn.key}", detail))
    return findings

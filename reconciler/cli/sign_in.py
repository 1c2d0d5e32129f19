"""Who the CLI is signed in as, and what that leaves unchecked.

The CLI runs with DefaultAzureCredential: as the deployed identity (a managed identity or service
principal: an app-only token) or, most often, as a person signed in with `az login` (a delegated
token). A person acts with their own delegated permissions and directory roles (a Cloud
Application Administrator may change applications they do not own), so the owner rule, which
models the deployed identity's Application.ReadWrite.OwnedBy, is not applied to their runs: the
engine does not read ownership for a delegated token (reconciler/adapters/graph.py,
`token_is_delegated`). What the deployed identity will be able to do is then said here, once.
An application a person's run creates is made the deployed identity's too (its id from
WIF_IDENTITY_PRINCIPAL_ID), or not created (reconciler.core.model.PersonRun).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from azure.core.credentials_async import AsyncTokenCredential

from reconciler.adapters.graph import GraphAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.cli.errors import SettingsProblem
from reconciler.cloud import Cloud
from reconciler.core.identifiers import Guid, IdentifierError
from reconciler.core.model import DEPLOYED_IDENTITY_VARIABLE, FederationConfig
from reconciler.failures import Failure

# The deployed identity's object id: `azd provision` outputs it (infra/main.bicep), and
# `azd env get-values` exports it. Set, a person's run reads what that identity owns.
DEPLOYED_IDENTITY = DEPLOYED_IDENTITY_VARIABLE
MAX_NAMED = 5  # applications named in the note; the rest are counted


@dataclass(frozen=True)
class DeployedOwnership:
    """What the deployed identity owns among the adopted applications, or why it is not known."""

    principal_id: str
    not_owned: tuple[str, ...] = ()  # client ids of adopted applications it does not own
    failure: str = ""  # the read failed: why


async def person_note(
    cloud: Cloud,
    credential: AsyncTokenCredential,
    configs: Sequence[FederationConfig],
    settings: Mapping[str, str],
) -> str | None:
    """The note for a run by a person, or None when the configs name no application at all.

    With WIF_IDENTITY_PRINCIPAL_ID set, what the deployed identity owns is read (one paged
    `GET /servicePrincipals/{id}/ownedObjects/microsoft.graph.application` and the adopted
    applications: delegated Application.Read.All suffices) and the note names the adopted
    applications it does not own; nothing is blocked, the person's rights decide the run."""
    adopted = sorted({c.application.app_id.lower() for c in configs if c.application.app_id})
    created = sorted({c.application.display_name or "" for c in configs if not c.application.app_id} - {""})
    principal_id = deployed_identity(settings)
    deployed = None
    if adopted and principal_id:
        deployed = await _deployed_ownership(cloud, credential, principal_id, adopted)
    return note(adopted, created, deployed, principal_id)


def deployed_identity(settings: Mapping[str, str]) -> str | None:
    """WIF_IDENTITY_PRINCIPAL_ID, validated, when set: a person's run makes that identity owner of
    the applications it creates (reconciler.core.model.PersonRun)."""
    raw = settings.get(DEPLOYED_IDENTITY, "").strip()
    return _principal_id(raw) if raw else None


def _principal_id(raw: str) -> str:
    try:
        return str(Guid(raw, DEPLOYED_IDENTITY))
    except IdentifierError as error:
        raise SettingsProblem(
            f"{DEPLOYED_IDENTITY} must be the deployed identity's object id ({error.message}); "
            "`azd env get-values` gives it, or leave it unset"
        ) from None


async def _deployed_ownership(
    cloud: Cloud, credential: AsyncTokenCredential, principal_id: str, adopted: Sequence[str]
) -> DeployedOwnership:
    graph = GraphAdapter(credential, cloud, RequestMeter())
    try:
        owned = await graph.read_ownership(principal_id)
        apps = await graph.read_applications(adopted)
    except Failure as failure:
        return DeployedOwnership(principal_id, failure=failure.message.splitlines()[0][:300])
    finally:
        await graph.close()
    not_owned = tuple(a.app_id for a in apps if owned is None or not owned.owns(a))
    return DeployedOwnership(principal_id, tuple(sorted(not_owned)))


def note(
    adopted: Sequence[str],
    created: Sequence[str],
    deployed: DeployedOwnership | None,
    principal_id: str | None = None,
) -> str | None:
    """The note's text: what the deployed identity may do, as far as this run knows it."""
    if not adopted and not created:
        return None
    lines = [
        "note: signed in as a person (a delegated token): your own rights decide this run, not the "
        "deployed reconciler identity's, which may change only the applications it owns "
        "(Application.ReadWrite.OwnedBy)."
    ]
    if adopted:
        lines.append(_adopted_line(adopted, deployed))
    if created:
        lines.append(_created_line(created, principal_id))
    return "\n".join(lines)


def _created_line(created: Sequence[str], principal_id: str | None) -> str:
    if principal_id:
        return (
            f"  Applications named by display name ({_named(created)}): the deployed identity "
            f"{principal_id} is made owner of those the reconciler creates, before anything else is written."
        )
    return (
        f"  Applications named by display name ({_named(created)}) that do not exist yet are not created "
        "as you: Graph would "
        f"make you their owner, not the deployed identity; set {DEPLOYED_IDENTITY} "
        f"(`export {DEPLOYED_IDENTITY}=$(azd env get-value {DEPLOYED_IDENTITY})`) to have it made owner."
    )


def _adopted_line(adopted: Sequence[str], deployed: DeployedOwnership | None) -> str:
    if deployed is None:
        return (
            f"  Its ownership of the adopted applications was not checked ({_named(adopted)}): set "
            f"{DEPLOYED_IDENTITY} to its object id (`export {DEPLOYED_IDENTITY}=$(azd env get-value "
            f"{DEPLOYED_IDENTITY})`), run `python -m reconciler doctor --configs ...` as the deployed "
            "identity, or `az ad app owner list --id <client id>` (its object id must be listed)."
        )
    if deployed.failure:
        return (
            f"  Could not read what the deployed identity {deployed.principal_id} owns: {deployed.failure}; "
            "check with `az ad app owner list --id <client id>`."
        )
    if not deployed.not_owned:
        return f"  The deployed identity {deployed.principal_id} owns every adopted application."
    return (
        f"  The deployed identity {deployed.principal_id} does not own {_named(list(deployed.not_owned))}: "
        "its passes will block their configs until an owner adds it: "
        f"`az ad app owner add --id <client id> --owner-object-id {deployed.principal_id}`."
    )


def _named(items: Sequence[str]) -> str:
    more = len(items) - MAX_NAMED
    return ", ".join(items[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")

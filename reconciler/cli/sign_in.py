"""Who the CLI is signed in as, and what that leaves unchecked.

The CLI runs with DefaultAzureCredential: as the deployed identity (a managed identity or service
principal: an app-only token) or, most often, as a person signed in with `az login` (a delegated
token). A person acts with their own delegated permissions and directory roles (a Cloud
Application Administrator may change applications they do not own), so the owner rule, which
models the deployed identity's Application.ReadWrite.OwnedBy, is not applied to their runs: the
engine does not read ownership for a delegated token (reconciler/adapters/graph.py,
`token_is_delegated`). What the deployed identity will be able to do is then said here, once.
"""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.core.model import FederationConfig

MAX_NAMED = 5  # adopted applications named in the note; the rest are counted


def person_note(configs: Iterable[FederationConfig]) -> str | None:
    """The note for a run by a person, or None when the configs name no application at all."""
    configs = list(configs)
    adopted = sorted({c.application.app_id.lower() for c in configs if c.application.app_id})
    created = sorted({c.application.display_name or "" for c in configs if not c.application.app_id} - {""})
    if not adopted and not created:
        return None
    lines = [
        "note: signed in as a person (a delegated token): your own rights decide this run, and what the "
        "deployed reconciler identity may do was not checked. It may change only the applications it "
        "owns (Application.ReadWrite.OwnedBy)."
    ]
    if adopted:
        lines.append(
            f"  Its ownership of the adopted applications was not checked ({_named(adopted)}): run "
            "`python -m reconciler doctor --configs ...` as the deployed identity, or "
            "`az ad app owner list --id <client id>` (its object id must be listed)."
        )
    if created:
        lines.append(
            f"  Applications created as you ({_named(created)}) are not owned by it: before it "
            "reconciles them, an owner adds it: "
            "`az ad app owner add --id <client id> --owner-object-id <its object id>`."
        )
    return "\n".join(lines)


def _named(items: list[str]) -> str:
    more = len(items) - MAX_NAMED
    return ", ".join(items[:MAX_NAMED]) + (f" and {more} more" if more > 0 else "")

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
    """The note for a run by a person: None when no config adopts an existing application (the
    applications the reconciler creates need no owner check)."""
    adopted = sorted({c.application.app_id.lower() for c in configs if c.application.app_id})
    if not adopted:
        return None
    named = ", ".join(adopted[:MAX_NAMED]) + (
        f" and {len(adopted) - MAX_NAMED} more" if len(adopted) > MAX_NAMED else ""
    )
    return (
        "note: signed in as a person (a delegated token), so your own rights decide this run and "
        "ownership of the adopted applications by the deployed reconciler identity was not checked "
        f"({named}). Without ownership, the deployed identity's writes to them are refused "
        "(Application.ReadWrite.OwnedBy). Check it with `python -m reconciler doctor --configs ...` run "
        "as the deployed identity, or `az ad app owner list --id <client id>` (the deployed identity's "
        "object id must be listed)."
    )

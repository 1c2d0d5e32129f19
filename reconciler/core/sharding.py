"""Splitting reconcile work into shards for the `reconcile` queue, and the session each application uses.

The rule this module keeps: **one application is never reconciled by two instances at once**,
whether the work came from a ticket, a sweep or a follow-up. The `reconcile` queue has
sessions, and Service Bus hands a session to one receiver at a time, so every message about
an application goes to the session `session_for(app key)`: the same application always lands
in the same session.

Sessions are *buckets* of a stable hash of the application key (SESSION_COUNT of them), not
one session per application, so that a shard message can hold a few hundred configs of many
applications (the drifted applications a sweep found, say) and be reconciled in bulk (Graph
`$batch`, role-assignment listings) while every application still has exactly one session.
docs/tickets.md weighs this against one session per application.

Pure: no I/O, no clock, no SDK.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.core.model import FederationConfig

# How many sessions the applications are spread over: the most shards reconciled in parallel.
# Changing it moves applications to other sessions, so change it only with the `reconcile`
# queue drained (for a moment an application could otherwise be in an old and a new session).
SESSION_COUNT = 32
MAX_CONFIGS_PER_SHARD = 300


@dataclass(frozen=True)
class Shard:
    """One reconcile message: whole applications of one session, at most max_configs configs."""

    app_keys: tuple[str, ...]
    config_ids: tuple[str, ...]
    session_id: str


def session_for(app_key: str) -> str:
    """The session of every reconcile message about this application (stable across runs and hosts)."""
    digest = hashlib.sha256(app_key.encode("utf-8")).hexdigest()
    return f"apps-{int(digest[:16], 16) % SESSION_COUNT:02d}"


def shard(configs: Sequence[FederationConfig], max_configs: int = MAX_CONFIGS_PER_SHARD) -> list[Shard]:
    """The configs in shards: an application's configs stay together, each shard in one session.

    Deterministic: the same configs give the same shards in the same order (by session, then
    application key), whatever order they came in.
    """
    if max_configs < 1:
        raise ValueError("max_configs must be at least 1")
    by_app: dict[str, list[str]] = defaultdict(list)
    for config in configs:
        by_app[config.application.key].append(config.id)
    by_session: dict[str, list[str]] = defaultdict(list)
    for app_key in by_app:
        by_session[session_for(app_key)].append(app_key)
    shards: list[Shard] = []
    for session_id in sorted(by_session):
        apps: list[str] = []
        ids: list[str] = []
        for app_key in sorted(by_session[session_id]):
            app_ids = sorted(by_app[app_key])
            # An application never spans shards; validation caps it at 20 configs, so it always
            # fits, and one larger than max_configs still gets a shard of its own.
            if apps and len(ids) + len(app_ids) > max_configs:
                shards.append(Shard(tuple(apps), tuple(ids), session_id))
                apps, ids = [], []
            apps.append(app_key)
            ids.extend(app_ids)
        shards.append(Shard(tuple(apps), tuple(ids), session_id))
    return shards

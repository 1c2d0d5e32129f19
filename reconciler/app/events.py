"""Drift events: from a delivery on `events` (Event Grid) or Event Hubs (Entra audit logs) to
reconcile messages, and what each pass records for them (docs/events.md).

For each event of a delivery:
1. decode it (bounded size and depth, strict JSON) and parse it (reconciler/core/events.py); a
   malformed one is logged with the field at fault and dropped: no retry can fix it;
2. drop it when the reconciler's own identity made the change (no feedback loop);
3. one indexed read maps the object it names to applications (state/event_index.py); an object
   the reconciler does not manage has none, and the event is dropped;
4. per application, the first event of a burst claims the pending row and schedules one reconcile
   message in the application's session after `EVENT_COALESCE_SECONDS`; the others send nothing
   (state/coalesce.py).

After each reconcile pass, `after_pass` writes the index from what the pass observed and what it
created, and one history row per config whose drift it repaired, with the source and who made the
change.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from reconciler.core.events import (
    DriftEvent,
    EventInvalid,
    EventTrigger,
    IndexKey,
    OwnIdentity,
    index_entries,
    parse_entra_records,
    parse_event_grid,
)
from reconciler.core.identifiers import IdentifierError
from reconciler.core.model import FederationConfig, ObservedState
from reconciler.documents import MAX_FILE_DEPTH, json_nesting_depth, strict_json_loads
from reconciler.engine.run import RunReport
from reconciler.state.configs import ConfigRecord
from reconciler.state.history import Repair
from reconciler.state.queues import Queues, ReconcileRequest
from reconciler.state.stores import Stores
from reconciler.state.tables import SettingsError

log = logging.getLogger("reconciler.app.events")

MAX_EVENT_BYTES = 1024 * 1024  # Event Hubs' largest event; a Service Bus message is at most 256 KiB
IDENTITIES_SETTING = "WIF_RECONCILER_IDENTITIES"
COALESCE_SETTING = "EVENT_COALESCE_SECONDS"
DEFAULT_COALESCE_SECONDS = 1.0  # docs/events.md: why one second
Delivery = Literal["event-grid", "entra"]


@dataclass(frozen=True)
class EventSettings:
    own: OwnIdentity = field(default_factory=lambda: OwnIdentity(frozenset()))
    coalesce_seconds: float = DEFAULT_COALESCE_SECONDS

    @classmethod
    def from_settings(cls, settings: Mapping[str, str]) -> EventSettings:
        """`WIF_RECONCILER_IDENTITIES`: the reconciler's own object ids, client ids and ADO identity
        ids, comma-separated (with `AZURE_CLIENT_ID`, its managed identity's client id);
        `EVENT_COALESCE_SECONDS`: how long a burst of events is gathered into one reconcile."""
        ids = [i.strip() for i in (settings.get(IDENTITIES_SETTING) or "").split(",") if i.strip()]
        client_id = (settings.get("AZURE_CLIENT_ID") or "").strip()
        try:
            OwnIdentity.of([client_id] if client_id else [])
        except IdentifierError as error:  # named for what it is: the error must point at the right setting
            raise SettingsError(f"AZURE_CLIENT_ID: {error.message}") from None
        try:
            own = OwnIdentity.of([*ids, *([client_id] if client_id else [])])
        except IdentifierError as error:
            raise SettingsError(f"{IDENTITIES_SETTING}: {error.message}") from None
        text = (settings.get(COALESCE_SETTING) or "").strip()
        try:
            seconds = float(text) if text else DEFAULT_COALESCE_SECONDS
        except ValueError:
            seconds = -1.0
        if not 0 <= seconds <= 300:
            raise SettingsError(f"{COALESCE_SETTING}: expected seconds between 0 and 300, got {text!r:.40}")
        return cls(own, seconds)


@dataclass
class EventsOutcome:
    """What one delivery came to (the counts add up to the events parsed, plus the invalid bodies)."""

    invalid: int = 0  # bodies that could not be parsed
    events: int = 0
    own: int = 0  # made by the reconciler itself
    unmanaged: int = 0  # about objects no config manages
    coalesced: int = 0  # applications touched again while their reconcile was pending
    scheduled: int = 0  # reconcile messages scheduled
    index_reads: int = 0


def decode(body: bytes) -> object:
    """The JSON value of one delivered body, refusing what would cost unbounded work."""
    if len(body) > MAX_EVENT_BYTES:
        raise EventInvalid(f"larger than {MAX_EVENT_BYTES // 1024} KiB")
    depth = json_nesting_depth(body)
    if depth > MAX_FILE_DEPTH:
        raise EventInvalid(f"nested {depth} deep, at most {MAX_FILE_DEPTH} allowed")
    try:
        return strict_json_loads(body.decode("utf-8"))
    except (ValueError, RecursionError) as error:  # UnicodeDecodeError and DuplicateKey are ValueErrors
        raise EventInvalid(f"not strict JSON: {str(error)[:200]}") from None


class EventRouter:
    def __init__(
        self,
        stores: Stores,
        queues: Queues,
        settings: EventSettings,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._stores = stores
        self._queues = queues
        self._settings = settings
        self._clock = clock

    async def route(self, bodies: Sequence[bytes], delivery: Delivery) -> EventsOutcome:
        """Every event of these bodies to the reconciles it calls for. A temporary failure (tables,
        Service Bus) raises, so the delivery comes again: what it already scheduled is pending and
        coalesces the repeats."""
        outcome = EventsOutcome()
        parse = parse_event_grid if delivery == "event-grid" else parse_entra_records
        handled: set[str] = set()  # applications this delivery already scheduled or found pending
        for position, body in enumerate(bodies):
            try:
                events = parse(decode(body))
            except EventInvalid as invalid:
                outcome.invalid += 1
                log.error("%s delivery, body %d dropped: %s", delivery, position, invalid)
                continue
            for event in events:
                outcome.events += 1
                await self._route_one(event, handled, outcome)
        return outcome

    async def _route_one(self, event: DriftEvent, handled: set[str], outcome: EventsOutcome) -> None:
        if self._settings.own.made(event):
            outcome.own += 1
            log.debug("event %s (%s) is the reconciler's own write: ignored", event.event_id, event.operation)
            return
        outcome.index_reads += 1
        apps = await self._stores.index.applications(event.key)
        if not apps:
            outcome.unmanaged += 1
            return
        log.info(
            "drift event %s: %s on %s by %s, for %s",
            event.event_id, event.operation, event.key, event.actor, ", ".join(sorted(apps)),
            extra={"drift_source": str(event.source), "drift_actor": str(event.actor)},
        )  # fmt: skip
        fresh = sorted(apps - handled)
        outcome.coalesced += len(apps) - len(fresh)
        for app_key in fresh:
            handled.add(app_key)
            await self._schedule(app_key, event, outcome)

    async def _schedule(self, app_key: str, event: DriftEvent, outcome: EventsOutcome) -> None:
        now = self._clock()
        pending = await self._stores.pending.claim(app_key, now.timestamp(), event.event_id)
        if pending is None:
            outcome.coalesced += 1
            return
        trigger = EventTrigger(event.source, event.event_id, str(event.actor), event.occurred_at, pending)
        try:
            await self._queues.schedule_event_reconcile(
                app_key, now + timedelta(seconds=self._settings.coalesce_seconds), trigger
            )
        except BaseException:
            await self._stores.pending.release(pending)  # the redelivery must be able to schedule it
            raise
        outcome.scheduled += 1


async def before_pass(stores: Stores, request: ReconcileRequest) -> None:
    """An event's reconcile lets the next event schedule another one before it observes: a change
    made from now on is seen by this pass or by the next."""
    if request.event is not None:
        await stores.pending.release(request.event.pending)


async def after_pass(
    stores: Stores,
    request: ReconcileRequest,
    report: RunReport,
    records: Sequence[ConfigRecord],
    started_at: datetime,
    now: datetime,
) -> None:
    """The index from what the pass observed and what it created or adopted (so an event about an
    object made moments ago finds its application), and the history of the drift it repaired (a
    ticket's changes are the request's record, not drift: state/requests.py keeps them)."""
    configs = [r.config for r in records if not r.deleted]
    await record_index(stores, configs, report.observed, written_by(configs, report))
    if request.reason == "ticket" or (request.reason == "follow-up" and request.request_id):
        return
    for outcome in report.outcomes:
        changes = tuple(
            f"{r.action.kind} {r.action.target}: {r.outcome}"
            for r in outcome.actions
            if r.outcome in {"applied", "adopted"}
        )
        if not changes:
            continue
        repair = _repair(outcome.config_id, changes, request, started_at, now)
        await stores.history.add(repair)
        log.info(
            "repaired %s (%s, detected %s, by %s): %s",
            repair.config_id, repair.source, repair.detected_at, repair.actor or "unknown",
            "; ".join(changes),
            extra={"drift_source": repair.source, "drift_actor": repair.actor},
        )  # fmt: skip


async def record_index(
    stores: Stores,
    configs: Sequence[FederationConfig],
    observed: ObservedState,
    written: Mapping[IndexKey, set[str]] | None = None,
) -> int:
    """Writes the index for these configs from what a pass observed, and `written`, what it created
    (rows this process wrote before are not written again). A bulk sweep calls it too, for
    configs no pass has reconciled yet (imported straight into the table)."""
    entries = index_entries(configs, observed)
    for key, app_keys in (written or {}).items():
        entries.setdefault(key, set()).update(app_keys)
    return await stores.index.record(entries)


def written_by(configs: Sequence[FederationConfig], report: RunReport) -> dict[IndexKey, set[str]]:
    """What the pass's actions created or adopted (the engine knows their ids from the answers to
    its writes), mapped to the applications of the configs they serve: no extra request."""
    app_keys = {c.id: c.application.key for c in configs}
    entries: dict[IndexKey, set[str]] = {}
    for outcome in report.outcomes:
        app_key = app_keys.get(outcome.config_id)
        if app_key is None:  # a retired config: its objects are being removed, not indexed
            continue
        for result in outcome.actions:
            if result.outcome in {"applied", "adopted"}:
                for key in result.written:
                    entries.setdefault(key, set()).add(app_key)
    return entries


def _repair(
    config_id: str, changes: tuple[str, ...], request: ReconcileRequest, started_at: datetime, now: datetime
) -> Repair:
    if request.event is not None:
        source, actor = str(request.event.source), request.event.actor
        detected, trigger = request.event.detected_at, request.event.event_id
    else:
        source, actor, detected = request.reason, "", started_at.isoformat()
        trigger = request.request_id or request.sweep_id or ""
    return Repair(config_id, now.isoformat(), detected, source, actor, changes, trigger)

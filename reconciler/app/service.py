"""The reconciler service: what the Functions triggers and the HTTP API do, without the Functions host.

- a ticket request (Service Bus `requests`): validate, check policy, record the desired state
  under the request id (ETag-guarded), hand the reconcile to the `reconcile` queue;
- a sweep (timer): one bulk pass over the whole desired state, a dry run (observe with the
  engine's bulk reads, plan); record the statuses that changed, and send reconcile messages
  (batched, in sessions) only for the applications that drifted; report (never remove) what the
  reconciler made that no config names;
- a reconcile message (Service Bus `reconcile`, sessions keyed by a hash of the application): load every
  config of those applications, run one engine pass, record status and the requests'
  outcomes, schedule a follow-up for temporary failures, purge tombstones that converged;
- the HTTP API's plans, statuses and request records.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Concatenate, ParamSpec, TypeVar

from azure.servicebus.exceptions import ServiceBusError

from reconciler.app import events, telemetry
from reconciler.app.logs import log_context
from reconciler.core.plan import Finding, FindingKind, Plan
from reconciler.core.policy import GrantPolicy
from reconciler.core.sharding import shard
from reconciler.core.tenancy import Tenant, claim_key
from reconciler.core.tenancy import app_key as app_claim_key
from reconciler.documents import InputError
from reconciler.engine.run import ConfigOutcome, Reconciler, RunReport, Status
from reconciler.failures import TemporaryFailure
from reconciler.state.configs import ConfigRecord, split_retired
from reconciler.state.history import Repair
from reconciler.state.queues import Queues, ReconcileRequest
from reconciler.state.requests import Outcome
from reconciler.state.status import ConfigStatus, changed, summarise_plan
from reconciler.state.stores import Stores
from reconciler.state.tables import ConcurrencyConflict, CorruptRow, InvalidRow, SettingsError, TableMissing
from reconciler.state.tickets import MAX_TICKET_BYTES, Ticket, TicketRejected, parse_ticket, rejection_key

log = logging.getLogger("reconciler.app.service")

PUT_ATTEMPTS = 5  # optimistic-concurrency retries for one ticket's write
FIND_ORPHANS_SETTING = "WIF_SWEEP_FIND_ORPHANS"
MAX_ORPHANS_LISTED = 100  # orphans kept in a sweep's report and logged one by one; the count has them all
EngineFactory = Callable[[], AbstractAsyncContextManager[Reconciler]]


@dataclass
class SweepReport:
    """What one sweep found and did (its log line says the same)."""

    sweep_id: str
    configs: int = 0  # rows swept, tombstones included
    invalid_rows: int = 0  # rows of the desired state, status or claims tables skipped as unreadable
    outcomes: dict[str, int] = field(default_factory=dict)  # configs per phase of the dry run
    apps_queued: int = 0  # applications sent to `reconcile`
    messages: int = 0
    status_writes: int = 0  # status rows written (changed), in table transactions
    requests: dict[str, dict[str, int]] = field(default_factory=dict)  # the bulk pass's, per API
    orphans: int = 0  # `orphaned` findings: what the reconciler made that no config names any more
    orphan_findings: list[Finding] = field(default_factory=list)  # the first MAX_ORPHANS_LISTED of them
    warnings: list[str] = field(default_factory=list)  # failed reads no config needed (the orphan scan's)
    problems: list[str] = field(default_factory=list)  # what the sweep could not do, for the log


def sweep_finds_orphans(settings: Mapping[str, str]) -> bool:
    """`WIF_SWEEP_FIND_ORPHANS`: whether the sweep looks for orphans (`true`, the default, or `false`)."""
    text = (settings.get(FIND_ORPHANS_SETTING) or "").strip()
    if text.lower() not in {"", "true", "false"}:
        raise SettingsError(f"{FIND_ORPHANS_SETTING}: expected true or false, got {text!r:.40}")
    return text.lower() != "false"


@dataclass(frozen=True)
class TicketOutcome:
    request_id: str
    outcome: str  # accepted | rejected | duplicate
    reason: str
    config_id: str | None = None


_Service = TypeVar("_Service", bound="ReconcilerService")
_P = ParamSpec("_P")
_R = TypeVar("_R")


def _heals_tables(
    method: Callable[Concatenate[_Service, _P], Awaitable[_R]],
) -> Callable[Concatenate[_Service, _P], Awaitable[_R]]:
    """A table deleted by hand while the app runs fails the call that met it (a temporary failure:
    the message comes again, HTTP answers 503) and is created again for the next one."""

    @functools.wraps(method)
    async def run(self: _Service, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return await method(self, *args, **kwargs)
        except TableMissing as missing:
            log.error("%s", missing.message)
            await self._stores.heal()
            raise

    return run


class ReconcilerService:
    def __init__(
        self,
        stores: Stores,
        queues: Queues,
        policy: GrantPolicy,
        engine: EngineFactory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        event_settings: events.EventSettings = events.EventSettings(),  # noqa: B008 - frozen value
        *,
        find_orphans: bool = True,
    ) -> None:
        self._stores = stores
        self._find_orphans = find_orphans  # whether the sweep reports what no config names
        self._queues = queues
        self._policy = policy
        self._engine = engine
        self._clock = clock
        self._events = events.EventRouter(stores, queues, event_settings, clock)

    # ------------------------------------------------------------------ tickets

    @_heals_tables
    @telemetry.traced("ticket")
    async def handle_ticket(self, body: bytes) -> TicketOutcome:
        """Record one ticket request. Invalid or forbidden requests are recorded as rejected and
        not retried; a temporary failure raises, so Service Bus delivers the message again."""
        try:
            ticket = parse_ticket(body, self._policy)
        except TicketRejected as rejected:
            request_id = rejected.request_id or rejection_key(body)
            telemetry.annotate(request_id=request_id)
            with log_context(request_id=request_id):
                return await self._reject(request_id, body, _reason(rejected))
        telemetry.annotate(request_id=ticket.request_id, action=ticket.action)
        with log_context(request_id=ticket.request_id):
            return await self._handle_ticket(ticket, body)

    async def _handle_ticket(self, ticket: Ticket, body: bytes) -> TicketOutcome:
        try:
            record, created = await self._stores.requests.begin(
                ticket.request_id,
                body.decode("utf-8", "replace"),
                requested_by=ticket.requested_by,
                action=ticket.action,
                received_at=self._now(),
            )
        except CorruptRow as corrupt:
            return _unreadable_record(ticket.request_id, corrupt)
        if not created and record.finished_at:
            # The same request delivered again: it was applied once; answer with the first outcome.
            return TicketOutcome(ticket.request_id, "duplicate", f"already {record.outcome}: {record.reason}")
        try:
            config_record = await self._write_desired_state(ticket)
        except (TicketRejected, InputError, CorruptRow) as refused:
            # The stored state says no (another organization or source owns the id, another project
            # claimed the application or another config the connection, the config is too large for
            # a row, the row is unreadable): redelivery would only say no again.
            reason = _reason(refused)
            log.warning("ticket rejected: %s", reason)
            await self._stores.requests.finish(ticket.request_id, "rejected", reason, [], self._now())
            return TicketOutcome(ticket.request_id, "rejected", reason, ticket.config_id)
        await self._queues.send_reconcile(
            shard([config_record.config]), reason="ticket", request_id=ticket.request_id
        )
        changes = [f"{ticket.action} {config_record.config.id} (generation {config_record.generation})"]
        # Conditional on the row as begin() read it: the reconcile just queued may run on another
        # instance and finish the request before this write lands; its outcome is the later word.
        await self._stores.requests.finish(
            ticket.request_id, "accepted", "reconcile queued", changes, self._now(), expected_etag=record.etag
        )
        return TicketOutcome(ticket.request_id, "accepted", "reconcile queued", config_record.config.id)

    async def _write_desired_state(self, ticket: Ticket) -> ConfigRecord:
        """The ETag-guarded write the ticket asks for; a concurrent change is re-read and retried.

        Whatever the action, the sender must have the rights over the config stored under the id
        (an upsert with an explicit id could otherwise overwrite another project's config)."""
        config_id = ticket.config.id if ticket.config else str(ticket.config_id)
        for _ in range(PUT_ATTEMPTS):
            current = await self._stores.configs.get(config_id)
            if current is not None:
                violations = self._policy.check_sender(current.config, ticket.source)
                if violations:
                    raise TicketRejected(
                        "the stored config is outside the sender's rights", [str(v) for v in violations]
                    )
            etag = current.etag if current else None
            try:
                if ticket.action == "upsert":
                    assert ticket.config is not None and ticket.config_document is not None
                    # Claimed only once the sender's rights over the stored config are known.
                    await self._stores.claims.claim_for(
                        ticket.config, self._policy, request_id=ticket.request_id
                    )
                    return await self._stores.configs.put(
                        ticket.config_document, request_id=ticket.request_id, expected_etag=etag
                    )
                if current is None or (current.deleted and ticket.action == "reconcile"):
                    raise TicketRejected(f"no config {config_id} to {ticket.action}")
                if ticket.action == "delete":
                    record = await self._stores.configs.retire(
                        config_id, request_id=ticket.request_id, expected_etag=etag
                    )
                    if record is None:  # purged since it was read
                        raise TicketRejected(f"no config {config_id} to {ticket.action}")
                    return record
                return current
            except ConcurrencyConflict:
                continue
        raise ConcurrencyConflict(f"config {config_id} kept changing under request {ticket.request_id}")

    async def _reject(self, request_id: str, body: bytes, reason: str) -> TicketOutcome:
        """Record a ticket that could not be parsed or was not allowed, and answer `rejected`."""
        log.warning("ticket rejected: %s", reason)
        text = body[: MAX_TICKET_BYTES + 1].decode("utf-8", "replace")  # the store cuts it to a row's limit
        try:
            record, created = await self._stores.requests.begin(
                request_id, text, requested_by="", action="invalid", received_at=self._now()
            )
        except CorruptRow as corrupt:
            return _unreadable_record(request_id, corrupt)
        if created or not record.finished_at:
            await self._stores.requests.finish(request_id, "rejected", reason, [], self._now())
        return TicketOutcome(request_id, "rejected", reason)

    # ------------------------------------------------------------------ sweeps

    @telemetry.traced("sweep")
    async def sweep(self) -> SweepReport:
        """One bulk pass over the whole desired state: observe and plan it all (a dry run), record
        the statuses that changed, and send reconcile messages only for the applications to repair.

        Observe centrally, write in sessions: reads are cheap only in bulk, so detection is one pass;
        the writes happen in the `reconcile` sessions, which re-observe their applications first.
        Never raises: a bad row is skipped and logged, a failed read fails only its configs (their
        status says so), and what could not be done is in the report's problems and the log.
        """
        report = SweepReport(self._clock().strftime("sweep-%Y%m%dT%H%M%SZ"))
        with log_context(request_id=report.sweep_id):
            try:
                context, whole = await self._whole_state(report)
            except TemporaryFailure as failure:
                report.problems.append(f"the state tables could not be read: {failure.message}")
                if isinstance(failure, TableMissing):
                    await self._stores.heal()
            else:
                await self._sweep(context, report, find_orphans=self._find_orphans and whole)
            self._log_sweep(report)
        return report

    async def _whole_state(self, report: SweepReport) -> tuple[_PassContext, bool]:
        """Every row of the desired state, with every status and claim: three listings. An unreadable
        row is logged, counted and skipped: fine for a dry run, whose repairs re-read what they need
        (a writing pass reads each claim with `owners`, which refuses an unreadable one).

        Also whether the configs and statuses were all read, so that the sweep may report orphans: the
        application an unreadable config names (or a status says it was applied to) would be called
        orphaned. An unreadable claim names no application the scan needs."""

        def skipped(row: InvalidRow) -> None:
            log.error("row skipped: %s", row)
            report.invalid_rows += 1

        records = [r async for r in self._stores.configs.list_all(on_invalid=skipped)]
        statuses = {s.config_id: s async for s in self._stores.status.list_all(on_invalid=skipped)}
        whole = report.invalid_rows == 0
        if self._find_orphans and not whole:
            report.problems.append(
                f"orphans are not reported: {report.invalid_rows} config or status row(s) could not be "
                "read, and the applications they name would be called orphaned"
            )
        claims = await self._stores.claims.list_all(on_invalid=skipped)
        report.configs = len(records)
        return _PassContext(records, _applied(records, statuses), claims, statuses), whole

    async def _sweep(self, context: _PassContext, report: SweepReport, *, find_orphans: bool) -> None:
        # Pipeline permissions have no bulk read (one GET per connection): the sweep leaves them out.
        result = await self._run(context, dry_run=True, low_priority=True, find_orphans=find_orphans)
        telemetry.record_pass(result, source="sweep")  # a dry run: requests and phases, no drift counts
        report.requests = result.requests
        report.outcomes = dict(Counter(str(o.status) for o in result.outcomes))
        # Orphans are reported, never removed nor queued: their configs are gone, so nothing says what
        # to remove; a person retires them (docs/operations.md, "Finding what deleted configs left").
        orphans = [f for f in result.plan.findings if f.kind is FindingKind.ORPHANED]
        report.orphans, report.orphan_findings = len(orphans), orphans[:MAX_ORPHANS_LISTED]
        report.warnings = list(result.warnings)
        if find_orphans and not result.warnings:  # a complete count: the gauge may say it
            telemetry.record_orphans(orphans)
        await self._index(context, result, report)

        def unrecorded(config_ids: Sequence[str], error: Exception) -> None:
            report.problems.append(f"status of {len(config_ids)} configs not recorded: {error}")

        report.status_writes = await self._record(result, context, on_failure=unrecorded)
        by_id = {r.config.id: r for r in context.records}
        to_repair = {
            by_id[o.config_id].config.application.key
            for o in result.outcomes
            if o.config_id in by_id and _needs_reconcile(o, by_id[o.config_id])
        }
        if not to_repair:
            return  # converged: not even a connection to Service Bus
        configs = [r.config for r in context.records if r.config.application.key in to_repair]
        try:
            sent = await self._queues.send_reconcile(shard(configs), reason="sweep", sweep_id=report.sweep_id)
        except ServiceBusError as error:  # the next sweep finds the same drift and sends again
            report.problems.append(f"reconcile messages not sent for {len(to_repair)} applications: {error}")
            return
        report.apps_queued, report.messages = len(to_repair), sent.messages

    async def _index(self, context: _PassContext, result: RunReport, report: SweepReport) -> None:
        """The event index from the sweep's observation, so events about configs that only the sweep
        has seen (imported straight into the table, never reconciled by a pass) find their
        application. Rows already in the table are not written again: a converged sweep writes nothing."""
        try:
            await self._stores.index.seed()
            await events.record_index(
                self._stores, [r.config for r in context.records if not r.deleted], result.observed
            )
        except TemporaryFailure as failure:  # events about these objects wait for the next sweep
            report.problems.append(f"the event index could not be written: {failure.message}")

    @staticmethod
    def _log_sweep(report: SweepReport) -> None:
        requests = sum(c["reads"] + c["writes"] for c in report.requests.values())
        log.info(
            "sweep %s: %d configs (%s), %d requests; %d status rows written; %d applications to repair "
            "in %d messages; %d orphans; %d unreadable rows",
            report.sweep_id, report.configs, report.outcomes, requests, report.status_writes,
            report.apps_queued, report.messages, report.orphans, report.invalid_rows,
        )  # fmt: skip
        for orphan in report.orphan_findings:  # names read from the clouds: one line each, whatever they hold
            log.warning(
                "sweep %s: orphaned %s (config %s): %s",
                report.sweep_id, _one_line(orphan.target), _one_line(", ".join(orphan.config_ids) or "none"),
                _one_line(orphan.detail),
            )  # fmt: skip
        if report.orphans > len(report.orphan_findings):
            log.warning(
                "sweep %s: %d more orphans not listed; `reconciler plan --from-table` lists them all",
                report.sweep_id, report.orphans - len(report.orphan_findings),
            )  # fmt: skip
        for warning in report.warnings:
            log.warning("sweep %s: %s", report.sweep_id, warning)
        for problem in report.problems:
            log.error("sweep %s: %s", report.sweep_id, problem)

    # ------------------------------------------------------------------ reconcile

    @_heals_tables
    @telemetry.traced("reconcile")
    async def reconcile(self, request: ReconcileRequest) -> RunReport:
        await events.before_pass(self._stores, request)
        with log_context(request_id=request.request_id or request.sweep_id or ""):
            records = await self._stores.configs.list_for_apps(list(request.apps))
            telemetry.annotate(
                request_id=request.request_id or request.sweep_id,
                config_ids=[r.config.id for r in records],
                reason=request.reason,
            )
            with log_context(config_ids=[r.config.id for r in records]):
                return await self._reconcile(request, records)

    async def _reconcile(self, request: ReconcileRequest, records: Sequence[ConfigRecord]) -> RunReport:
        started_at = self._clock()
        try:
            context = await self._pass_context(records)
        except CorruptRow as corrupt:  # a claim row: whose application it is cannot be read
            return await self._unreadable_claim(request, records, corrupt.row)
        # A sweep's repair yields to interactive callers at Graph. Pipeline permissions are read only
        # where a connection is created (no bulk read: one GET per connection), as in the sweep.
        report = await self._run(context, low_priority=request.reason == "sweep")
        telemetry.record_pass(report, source=_source(request))
        await self._record(report, context)
        await events.after_pass(self._stores, request, report, context.records, started_at, self._clock())
        await self._follow_up(report, request)
        if request.request_id and request.reason in {"ticket", "follow-up"}:
            await self._finish_request(request.request_id, report)
        return report

    async def _unreadable_claim(
        self, request: ReconcileRequest, records: Sequence[ConfigRecord], row: InvalidRow
    ) -> RunReport:
        """Fail closed without guessing whose the application is: nothing is observed or written,
        each config of the message fails permanently naming the row (a person must repair or delete
        it), and the message is done: no redelivery can read the row either."""
        log.error("reconcile not run, a claim row cannot be read: %s", row)
        reason = f"the application's claim cannot be read: {row}"
        outcomes = [ConfigOutcome(r.config.id, Status.FAILED_PERMANENT, reason=reason) for r in records]
        report = RunReport(Plan(), outcomes, {}, 0, 0.0, 0.0, dry_run=False)
        statuses = await self._statuses(records)
        context = _PassContext(list(records), _applied(records, statuses), {}, statuses)
        await self._record(report, context)
        if request.request_id and request.reason in {"ticket", "follow-up"}:
            await self._finish_request(request.request_id, report)
        return report

    async def _pass_context(self, records: Sequence[ConfigRecord]) -> _PassContext:
        """The rows of one pass with what the engine must know of them: the application each config
        was last applied to (and the configs of those applications too, so that removing what a
        moved config left never removes what another still wants), and the applications' claims."""
        rows = {r.config.id: r for r in records}
        statuses = await self._statuses(rows.values())
        applied = _applied(rows.values(), statuses)
        left = {
            app_claim_key(app_id)
            for cid, app_id in applied.items()
            if app_claim_key(app_id) != rows[cid].config.application.key
        }
        if left:
            for record in await self._stores.configs.list_for_apps(sorted(left)):
                rows.setdefault(record.config.id, record)
            more = [r for r in rows.values() if r.config.id not in statuses]
            statuses.update(await self._statuses(more))
            applied.update(_applied(more, statuses))
        keys = {claim_key(r.config.application) for r in rows.values()} | {
            app_claim_key(a) for a in applied.values()
        }
        claims = await self._stores.claims.owners(keys)
        return _PassContext(list(rows.values()), applied, claims, statuses)

    async def _statuses(self, records: Iterable[ConfigRecord]) -> dict[str, ConfigStatus]:
        """The stored status of each of these configs that has one (a point read each). An unreadable
        row counts as none: the pass writes a good one, and removes nothing from an application the
        row names (what a moved config left waits for a person, as it would without the row)."""
        found: dict[str, ConfigStatus] = {}
        for record in records:
            try:
                status = await self._stores.status.get(record.config.id, record.config.organization)
            except CorruptRow as corrupt:
                log.error("status row ignored: %s", corrupt.row)
                continue
            if status is not None:
                found[record.config.id] = status
        return found

    async def _run(
        self,
        context: _PassContext,
        *,
        dry_run: bool = False,
        low_priority: bool = False,
        find_orphans: bool = False,
    ) -> RunReport:
        """One engine pass over these rows: the live configs desired, the tombstones retired.
        `find_orphans` only when the rows are the whole desired state."""
        active, retired = split_retired(context.records)
        async with self._engine() as engine:
            return await engine.run(
                active,
                retired,
                dry_run=dry_run,
                low_priority=low_priority,
                claims=context.claims,
                applied=context.applied,
                find_orphans=find_orphans,
            )

    async def _finish_request(self, request_id: str, report: RunReport) -> None:
        """The ticket's outcome, once its reconcile ran (a follow-up may turn `failed` into `applied`)."""
        outcome: Outcome = "applied" if report.all_converged else "failed"
        reasons = [f"{o.config_id}: {o.reason}" for o in report.outcomes if o.reason]
        changes = [
            f"{r.action.kind} {r.action.target}: {r.outcome}" for o in report.outcomes for r in o.actions
        ]
        # Added to what the record says: a pass again (a redelivered message, a follow-up) that finds
        # less or nothing to do must not erase what the earlier passes of the request changed.
        try:
            before = await self._stores.requests.get(request_id)
        except CorruptRow as corrupt:  # the outcome below replaces the unreadable fields
            log.error("request record rewritten, it could not be read: %s", corrupt.row)
            before = None
        earlier = list(before.changes) if before is not None else []
        changes = [*earlier, *(c for c in changes if c not in earlier)]
        try:
            await self._stores.requests.finish(request_id, outcome, "; ".join(reasons), changes, self._now())
        except KeyError:
            log.warning("reconciled for request %s, which was never recorded", request_id)

    async def _record(
        self,
        report: RunReport,
        context: _PassContext,
        on_failure: Callable[[Sequence[str], Exception], None] | None = None,
    ) -> int:
        """Each config's status, written only where it changed (in table transactions); after a
        pass that wrote, the tombstones it converged are purged and created applications claimed.
        Returns how many status rows were written; `on_failure` is as StatusStore.put_many takes it."""
        by_id = {r.config.id: r for r in context.records}
        planned: dict[str, list[str]] = defaultdict(list)
        for action in report.plan.actions:
            for config_id in action.config_ids:
                planned[config_id].append(str(action.kind))
        statuses: list[ConfigStatus] = []
        for outcome in report.outcomes:
            record = by_id.get(outcome.config_id)
            if record is None:
                continue
            if record.deleted and outcome.status is Status.CONVERGED:
                if not report.dry_run:
                    await self._purge(record)
                continue
            previous = context.statuses.get(record.config.id)
            status = self._status(record, outcome, planned[outcome.config_id], context, previous)
            if changed(previous, status):
                statuses.append(status)
            if not report.dry_run and outcome.status is Status.CONVERGED and outcome.application_id:
                await self._claim_created(record, outcome.application_id, context)
        return await self._stores.status.put_many(statuses, on_failure)

    async def _purge(self, record: ConfigRecord) -> None:
        """What the retired config owned is gone: the tombstone and its status can go too. A tombstone
        changed since the pass read it (edited by hand, re-created by a ticket) is left for the next
        pass, which reads it again: that is this config's business, not the rest of the pass's."""
        try:
            await self._stores.configs.purge(record.config.id, record.etag, record.config.organization)
        except ConcurrencyConflict as conflict:
            log.warning("tombstone of %s not purged, changed during the pass: %s", record.config.id, conflict)
            return
        await self._stores.status.delete(record.config.id, record.config.organization)  # gone either way

    async def _claim_created(self, record: ConfigRecord, app_id: str, context: _PassContext) -> None:
        """An application created for a display name is claimed by its client id too (for the same
        project), so that another project cannot name it by appId either."""
        ref = record.config.application
        if ref.app_id is not None or app_claim_key(app_id) in context.claims:
            return
        owner = context.claims.get(claim_key(ref)) or Tenant.of(record.config)
        await self._stores.claims.claim(
            app_claim_key(app_id),
            owner,
            config_id=record.config.id,
            request_id=record.request_id or "reconcile",
            created=True,
        )
        context.claims[app_claim_key(app_id)] = owner

    def _status(
        self,
        record: ConfigRecord,
        outcome: ConfigOutcome,
        planned: Sequence[str],
        context: _PassContext,
        previous: ConfigStatus | None,
    ) -> ConfigStatus:
        # The application is remembered once everything was applied: until then, what the config
        # left on its previous application may still have to be removed.
        converged = outcome.status is Status.CONVERGED and outcome.application_id
        previous_application = context.applied.get(record.config.id, "")
        last_plan = summarise_plan(planned)
        if (
            not planned
            and outcome.status is Status.CONVERGED
            and previous
            and previous.phase is Status.CONVERGED
        ):
            # Still converged: the row keeps the changes that converged it (a pass that finds
            # nothing to do has nothing new to say, and writes nothing).
            last_plan = previous.last_plan
        return ConfigStatus(
            config_id=record.config.id,
            organization=record.config.organization,
            phase=outcome.status,
            observed_generation=record.generation,
            last_plan=last_plan,
            last_error=outcome.reason,
            retry_after=outcome.retry_after,
            last_reconcile=self._now(),
            applied_application=str(outcome.application_id) if converged else previous_application,
        )

    async def _follow_up(self, report: RunReport, request: ReconcileRequest) -> None:
        delay = report.retry_after
        if delay is None:
            return
        at = self._clock() + timedelta(seconds=max(delay, 5.0))
        # A ticket's follow-up records the request's outcome; a sweep's carries the sweep's id
        # (never as a request id: there is no such request), so its log lines tie back to the sweep.
        for app_key in request.apps:
            if request.event is not None:  # drift events: the follow-up keeps who changed what
                await self._queues.schedule_event_reconcile(app_key, at, request.event)
                continue
            await self._queues.schedule_follow_up(
                app_key, at, request_id=request.request_id, sweep_id=request.sweep_id
            )

    # ------------------------------------------------------------------ drift events

    @_heals_tables
    async def handle_drift_events(
        self, bodies: Sequence[bytes], delivery: events.Delivery
    ) -> events.EventsOutcome:
        """A delivery from `events` (Event Grid) or Event Hubs (Entra audit logs): reconcile messages
        for the applications its events touch (reconciler/app/events.py)."""
        return await self._events.route(bodies, delivery)

    @_heals_tables
    async def history(self, config_id: str, limit: int = 100) -> list[Repair] | None:
        """The config's repaired drift, newest first; None when there is no such config."""
        if await self._stores.configs.get(config_id) is None:
            return None
        return await self._stores.history.list(config_id, limit)

    # ------------------------------------------------------------------ HTTP API

    @_heals_tables
    @telemetry.traced("plan")
    async def plan_config(self, config_id: str) -> RunReport | None:
        record = await self._stores.configs.get(config_id)
        if record is None:
            return None
        records = await self._stores.configs.list_for_apps([record.config.application.key])
        report = await self._run(await self._pass_context(records), dry_run=True)
        telemetry.record_pass(report, source="http")
        return report

    @_heals_tables
    @telemetry.traced("reconcile now")
    async def reconcile_now(self, config_ids: Sequence[str] | None, *, dry_run: bool) -> RunReport:
        """Reconcile these configs (and every config sharing their applications), or all."""
        if config_ids is None:
            records = [r async for r in self._stores.configs.list_all()]
        else:
            found = [await self._stores.configs.get(config_id) for config_id in config_ids]
            missing = [cid for cid, record in zip(config_ids, found, strict=True) if record is None]
            if missing:
                raise InputError([f"no config {cid}" for cid in missing])
            app_keys = sorted({r.config.application.key for r in found if r is not None})
            records = await self._stores.configs.list_for_apps(app_keys)
        context = await self._pass_context(records)
        report = await self._run(context, dry_run=dry_run)
        telemetry.record_pass(report, source="http")
        if not dry_run:
            await self._record(report, context)
        return report

    @_heals_tables
    async def status(self, config_id: str) -> ConfigStatus | None:
        return await self._stores.status.get(config_id)

    @_heals_tables
    async def request(self, request_id: str) -> Any:
        return await self._stores.requests.get(request_id)

    def _now(self) -> str:
        return self._clock().isoformat()


@dataclass
class _PassContext:
    records: list[ConfigRecord]
    applied: dict[str, str]  # config id -> client id of the application last applied
    claims: dict[str, Tenant]  # claim key -> the ADO project that claimed the application
    statuses: dict[str, ConfigStatus]  # config id -> its stored status, where it has one


def _applied(records: Iterable[ConfigRecord], statuses: Mapping[str, ConfigStatus]) -> dict[str, str]:
    """The application each live config was last applied to, where its status says."""
    applied: dict[str, str] = {}
    for record in records:
        status = statuses.get(record.config.id)
        if not record.deleted and status is not None and status.applied_application:
            applied[record.config.id] = status.applied_application
    return applied


def _needs_reconcile(outcome: ConfigOutcome, record: ConfigRecord) -> bool:
    """Whether the sweep's dry run found something a reconcile message would change: drift, or a
    tombstone whose prune is done (the reconcile purges it). Not a failed read (the next sweep reads
    again; fanning out to a throttled API helps nobody), not a config blocked by policy or ownership,
    nor a permanent failure: those wait for a person, and once one acts the sweep sees the drift."""
    if outcome.status is Status.DRIFTED:
        return True
    return record.deleted and outcome.status is Status.CONVERGED


def _one_line(text: str, limit: int = 500) -> str:
    """Text from outside (a display name, a marker) for a log line: no line breaks or other controls."""
    return "".join(c if c.isprintable() else "?" for c in text[:limit])


def _source(request: ReconcileRequest) -> str:
    """What started a pass, for its metrics: a follow-up counts for the ticket or sweep it follows up."""
    if request.reason != "follow-up":
        return request.reason
    return "ticket" if request.request_id else "sweep"


def _unreadable_record(request_id: str, corrupt: CorruptRow) -> TicketOutcome:
    """A request id whose record exists but cannot be read (edited by hand): whether it was applied
    is unknown, so nothing is done again, and the message is completed (redelivery cannot fix a row)."""
    log.error("ticket not handled, its request record cannot be read: %s", corrupt.row)
    return TicketOutcome(request_id, "rejected", f"the request's record cannot be read: {corrupt.row}")


def _reason(refused: TicketRejected | InputError | CorruptRow) -> str:
    if isinstance(refused, TicketRejected):
        return "; ".join([refused.reason, *refused.problems])
    if isinstance(refused, CorruptRow):
        log.error("%s", refused.row)
        return f"the stored config cannot be read: {refused.row}"
    return "; ".join(refused.problems)

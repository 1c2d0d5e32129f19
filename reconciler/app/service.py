"""The reconciler service: what the Functions triggers and the HTTP API do, without the Functions host.

- a ticket request (Service Bus `requests`): validate, check policy, record the desired state
  under the request id (ETag-guarded), hand the reconcile to the `reconcile` queue;
- a sweep (timer): enumerate the desired state and send one reconcile message per
  application group, batched, to the `reconcile` queue;
- a reconcile message (Service Bus `reconcile`, sessions keyed by a hash of the application): load every
  config of those applications, run one engine pass, record status and the requests'
  outcomes, schedule a follow-up for temporary failures, purge tombstones that converged;
- the HTTP API's plans, statuses and request records.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from reconciler.app.logs import log_context
from reconciler.core.policy import GrantPolicy
from reconciler.core.sharding import shard
from reconciler.documents import InputError
from reconciler.engine.run import ConfigOutcome, Reconciler, RunReport, Status
from reconciler.state.configs import ConfigRecord, split_retired
from reconciler.state.queues import Queues, ReconcileRequest
from reconciler.state.status import ConfigStatus
from reconciler.state.stores import Stores
from reconciler.state.tables import ConcurrencyConflict, CorruptRow
from reconciler.state.tickets import MAX_TICKET_BYTES, Ticket, TicketRejected, parse_ticket, rejection_key

log = logging.getLogger("reconciler.app.service")

PUT_ATTEMPTS = 5  # optimistic-concurrency retries for one ticket's write
EngineFactory = Callable[[], AbstractAsyncContextManager[Reconciler]]


@dataclass(frozen=True)
class TicketOutcome:
    request_id: str
    outcome: str  # accepted | rejected | duplicate
    reason: str
    config_id: str | None = None


class ReconcilerService:
    def __init__(
        self,
        stores: Stores,
        queues: Queues,
        policy: GrantPolicy,
        engine: EngineFactory,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._stores = stores
        self._queues = queues
        self._policy = policy
        self._engine = engine
        self._clock = clock

    # ------------------------------------------------------------------ tickets

    async def handle_ticket(self, body: bytes) -> TicketOutcome:
        """Record one ticket request. Invalid or forbidden requests are recorded as rejected and
        not retried; a temporary failure raises, so Service Bus delivers the message again."""
        try:
            ticket = parse_ticket(body, self._policy)
        except TicketRejected as rejected:
            request_id = rejected.request_id or rejection_key(body)
            with log_context(request_id=request_id):
                return await self._reject(request_id, body, _reason(rejected))
        with log_context(request_id=ticket.request_id):
            return await self._handle_ticket(ticket, body)

    async def _handle_ticket(self, ticket: Ticket, body: bytes) -> TicketOutcome:
        record, created = await self._stores.requests.begin(
            ticket.request_id,
            body.decode("utf-8", "replace"),
            requested_by=ticket.requested_by,
            action=ticket.action,
            received_at=self._now(),
        )
        if not created and record.finished_at:
            # The same request delivered again: it was applied once; answer with the first outcome.
            return TicketOutcome(ticket.request_id, "duplicate", f"already {record.outcome}: {record.reason}")
        try:
            config_record = await self._write_desired_state(ticket)
        except (TicketRejected, InputError, CorruptRow) as refused:
            # The stored state says no (another organization or source owns the id, the config is
            # too large for a row, the row is unreadable): redelivery would only say no again.
            reason = _reason(refused)
            log.warning("ticket rejected: %s", reason)
            await self._stores.requests.finish(ticket.request_id, "rejected", reason, [], self._now())
            return TicketOutcome(ticket.request_id, "rejected", reason, ticket.config_id)
        await self._queues.send_reconcile(
            shard([config_record.config]), reason="ticket", request_id=ticket.request_id
        )
        changes = [f"{ticket.action} {config_record.config.id} (generation {config_record.generation})"]
        await self._stores.requests.finish(
            ticket.request_id, "accepted", "reconcile queued", changes, self._now()
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
                    assert ticket.config_document is not None
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
        record, created = await self._stores.requests.begin(
            request_id, text, requested_by="", action="invalid", received_at=self._now()
        )
        if created or not record.finished_at:
            await self._stores.requests.finish(request_id, "rejected", reason, [], self._now())
        return TicketOutcome(request_id, "rejected", reason)

    # ------------------------------------------------------------------ sweeps

    async def sweep(self) -> int:
        """Send one reconcile message per application group; returns how many configs it covers."""
        invalid: list[str] = []
        records = [
            r async for r in self._stores.configs.list_all(on_invalid=lambda row: invalid.append(str(row)))
        ]
        for problem in invalid:
            log.error("desired-state row skipped: %s", problem)
        configs = [r.config for r in records]
        sweep_id = self._clock().strftime("sweep-%Y%m%dT%H%M%SZ")
        sent = await self._queues.send_reconcile(shard(configs), reason="sweep", sweep_id=sweep_id)
        log.info("sweep %s: %d configs in %d messages", sweep_id, len(configs), sent.messages)
        return len(configs)

    # ------------------------------------------------------------------ reconcile

    async def reconcile(self, request: ReconcileRequest) -> RunReport:
        with log_context(request_id=request.request_id or request.sweep_id or ""):
            records = await self._stores.configs.list_for_apps(list(request.apps))
            with log_context(config_ids=[r.config.id for r in records]):
                return await self._reconcile(request, records)

    async def _reconcile(self, request: ReconcileRequest, records: Sequence[ConfigRecord]) -> RunReport:
        report = await self._run(records, pipelines=request.reason == "sweep")
        await self._record(report, records)
        await self._follow_up(report, request)
        if request.request_id and request.reason in {"ticket", "follow-up"}:
            await self._finish_request(request.request_id, report)
        return report

    async def _run(
        self, records: Sequence[ConfigRecord], *, dry_run: bool = False, pipelines: bool = False
    ) -> RunReport:
        """One engine pass over these rows: the live configs desired, the tombstones retired."""
        active, retired = split_retired(records)
        async with self._engine() as engine:
            return await engine.run(active, retired, dry_run=dry_run, pipelines=pipelines)

    async def _finish_request(self, request_id: str, report: RunReport) -> None:
        """The ticket's outcome, once its reconcile ran (a follow-up may turn `failed` into `applied`)."""
        outcome = "applied" if report.all_converged else "failed"
        reasons = [f"{o.config_id}: {o.reason}" for o in report.outcomes if o.reason]
        changes = [
            f"{r.action.kind} {r.action.target}: {r.outcome}" for o in report.outcomes for r in o.actions
        ]
        try:
            await self._stores.requests.finish(request_id, outcome, "; ".join(reasons), changes, self._now())
        except KeyError:
            log.warning("reconciled for request %s, which was never recorded", request_id)

    async def _record(self, report: RunReport, records: Sequence[ConfigRecord]) -> None:
        by_id = {r.config.id: r for r in records}
        for outcome in report.outcomes:
            record = by_id.get(outcome.config_id)
            if record is None:
                continue
            if record.deleted and outcome.status is Status.CONVERGED:
                # What the retired config owned is gone: the tombstone and its status can go too.
                await self._stores.configs.purge(record.config.id, record.etag, record.config.organization)
                await self._stores.status.delete(record.config.id, record.config.organization)
                continue
            await self._stores.status.put(self._status(record, outcome))

    def _status(self, record: ConfigRecord, outcome: ConfigOutcome) -> ConfigStatus:
        return ConfigStatus(
            config_id=record.config.id,
            organization=record.config.organization,
            phase=str(outcome.status),
            observed_generation=record.generation,
            last_plan=_summary(outcome),
            last_error=outcome.reason,
            retry_after=outcome.retry_after,
            last_reconcile=self._now(),
        )

    async def _follow_up(self, report: RunReport, request: ReconcileRequest) -> None:
        delay = report.retry_after
        if delay is None:
            return
        at = self._clock() + timedelta(seconds=max(delay, 5.0))
        # A sweep's follow-up carries the sweep's id, so its log lines tie back to the sweep.
        origin = request.request_id or request.sweep_id or "follow-up"
        for app_key in request.apps:
            await self._queues.schedule_follow_up(app_key, at, request_id=origin)

    # ------------------------------------------------------------------ HTTP API

    async def plan_config(self, config_id: str) -> RunReport | None:
        record = await self._stores.configs.get(config_id)
        if record is None:
            return None
        records = await self._stores.configs.list_for_apps([record.config.application.key])
        return await self._run(records, dry_run=True)

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
        report = await self._run(records, dry_run=dry_run)
        if not dry_run:
            await self._record(report, records)
        return report

    async def status(self, config_id: str) -> ConfigStatus | None:
        return await self._stores.status.get(config_id)

    async def request(self, request_id: str) -> Any:
        return await self._stores.requests.get(request_id)

    def _now(self) -> str:
        return self._clock().isoformat()


def _summary(outcome: ConfigOutcome) -> str:
    if not outcome.drift:
        return "no changes"
    kinds = ", ".join(item.split(" ", 1)[0] for item in outcome.drift)
    return f"{len(outcome.drift)} action(s): {kinds}"[:1000]


def _reason(refused: TicketRejected | InputError | CorruptRow) -> str:
    if isinstance(refused, TicketRejected):
        return "; ".join([refused.reason, *refused.problems])
    if isinstance(refused, CorruptRow):
        log.error("%s", refused.row)
        return f"the stored config cannot be read: {refused.row}"
    return "; ".join(refused.problems)

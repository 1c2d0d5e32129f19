"""One reconcile pass: observe -> plan -> apply, and a report per config and per run.

A pass never raises: a read that failed fails only the configs that needed it (they are left
out of the plan, `failed-temporary` with the read's retry-after), and anything unexpected
fails the pass's configs temporarily instead of escaping as a traceback.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential

from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.graph import GraphAdapter, throttle_priority
from reconciler.adapters.metering import RequestMeter
from reconciler.adapters.pacing import AZURE_BUDGETS, Budgets
from reconciler.cloud import Cloud
from reconciler.core.model import ApplicationRef, FederationConfig, ObservedState
from reconciler.core.orphans import find_orphans as orphaned
from reconciler.core.plan import Plan, plan
from reconciler.core.policy import GrantPolicy
from reconciler.core.tenancy import Tenant
from reconciler.engine.apply import ActionResult, Applier
from reconciler.engine.observe import Observation, Observer
from reconciler.failures import Failure, PermanentFailure, TemporaryFailure

log = logging.getLogger("reconciler.engine.run")


class Status(StrEnum):
    CONVERGED = "converged"  # nothing to do, or everything planned was applied
    DRIFTED = "drifted"  # dry run: changes are needed
    FAILED_TEMPORARY = "failed-temporary"  # retry after retry_after seconds
    FAILED_PERMANENT = "failed-permanent"  # a person must act on the reason
    BLOCKED = "blocked"  # the grant policy forbids it, or its adopted application is not the reconciler's


@dataclass
class ConfigOutcome:
    config_id: str
    status: Status
    drift: list[str] = field(default_factory=list)
    actions: list[ActionResult] = field(default_factory=list)
    reason: str = ""
    retry_after: float | None = None
    code: str = ""  # the failure's code, when it failed (CONNECTION_ERROR: an API was not reachable)
    application_id: str | None = None  # the client id of the application it is applied to, when known


@dataclass
class RunReport:
    plan: Plan
    outcomes: list[ConfigOutcome]
    requests: dict[str, dict[str, int]]
    pipeline_reads: int
    observe_seconds: float
    apply_seconds: float
    dry_run: bool
    # What the pass read: the drift-event index is written from it (reconciler/app/events.py).
    observed: ObservedState = field(default_factory=ObservedState)
    # Reads no config needed that failed (the orphan scan's): they fail nothing, but say what is missing.
    warnings: list[str] = field(default_factory=list)

    @property
    def all_converged(self) -> bool:
        return all(outcome.status is Status.CONVERGED for outcome in self.outcomes)

    @property
    def retry_after(self) -> float | None:
        """When to look again: the soonest temporary failure's delay, if any."""
        delays = [o.retry_after for o in self.outcomes if o.retry_after is not None]
        return min(delays) if delays else None


@dataclass(frozen=True)
class EngineOptions:
    concurrency: int = 16
    # How long, after this pass created them, ARM's PrincipalNotFound for a principal and Graph's
    # refusals of writes to an application count as replication delay (waited out, then temporary).
    principal_replication_window: float = 60.0
    retry_total: int = 5  # azure-core retries per ARM and ADO request
    # What each API allows (Graph's resource units per 10 s, ARM's buckets, ADO's window): the
    # adapters pace their requests under them, and the application reads list the whole tenant
    # only when filtered reads would exceed Graph's window.
    budgets: Budgets = AZURE_BUDGETS
    # The deployed identity's object id (WIF_IDENTITY_PRINCIPAL_ID), for a person's CLI run: it is
    # made owner of the applications the person's run creates (reconciler.core.model.PersonRun).
    deployed_identity: str | None = None


class Reconciler:
    def __init__(
        self,
        graph: GraphAdapter,
        arm: ArmAdapter,
        ado: AdoAdapter,
        policy: GrantPolicy,
        meter: RequestMeter,
        options: EngineOptions = EngineOptions(),
    ) -> None:
        self._observer = Observer(
            graph,
            arm,
            ado,
            concurrency=options.concurrency,
            graph_units_per_window=round(options.budgets.graph_units_per_10s),
            deployed_identity=options.deployed_identity,
        )
        self._applier = Applier(
            graph,
            arm,
            ado,
            concurrency=options.concurrency,
            principal_replication_window=options.principal_replication_window,
        )
        self._policy = policy
        self.meter = meter

    async def run(
        self,
        configs: Sequence[FederationConfig],
        retired: Sequence[FederationConfig] = (),
        *,
        dry_run: bool = False,
        pipelines: bool = False,
        progress: Callable[[int, int], None] | None = None,
        claims: Mapping[str, Tenant] | None = None,
        applied: Mapping[str, str] | None = None,
        low_priority: bool = False,
        find_orphans: bool = False,
    ) -> RunReport:
        """One pass. `claims` and `applied` are as reconciler.core.plan.plan takes them.

        `low_priority` (sweeps) asks Graph to throttle this pass's requests before others'
        (`x-ms-throttle-priority: low`). `find_orphans` says `configs` and `retired` are the whole
        desired state: the reconciler's applications none of them names are reported as orphaned
        (reconciler.core.orphans), at one more Graph request per 999 applications it created.
        """
        priority = throttle_priority.set("low" if low_priority else None)
        try:
            return await self._run(
                configs,
                retired,
                dry_run=dry_run,
                pipelines=pipelines,
                progress=progress,
                claims=claims,
                applied=applied,
                find_orphans=find_orphans,
            )
        except Exception as error:  # a bug must fail the pass's configs, not the worker
            log.exception("a reconcile pass failed unexpectedly")
            failure = TemporaryFailure(f"the pass failed unexpectedly: {error!r}", code="UnexpectedError")
            everything = [*configs, *retired]
            return RunReport(
                plan=Plan(),
                outcomes=_outcomes(
                    everything,
                    Plan(),
                    [],
                    dict.fromkeys((c.id for c in everything), failure),
                    dry_run=dry_run,
                ),
                requests={},
                pipeline_reads=0,
                observe_seconds=0.0,
                apply_seconds=0.0,
                dry_run=dry_run,
            )
        finally:
            throttle_priority.reset(priority)

    async def _run(
        self,
        configs: Sequence[FederationConfig],
        retired: Sequence[FederationConfig],
        *,
        dry_run: bool,
        pipelines: bool,
        progress: Callable[[int, int], None] | None,
        claims: Mapping[str, Tenant] | None,
        applied: Mapping[str, str] | None,
        find_orphans: bool,
    ) -> RunReport:
        started = time.monotonic()
        # The applications configs were last applied to are read too, to remove what a moved config left.
        left = [
            replace(c, application=ApplicationRef(app_id=applied[c.id]))
            for c in configs
            if applied and applied.get(c.id) and applied[c.id] != c.application.app_id
        ]
        # Only this pass's requests: the worker runs several passes at once on one engine.
        with self.meter.counting_this_pass() as this_pass:
            # A config the policy blocks is not even read: it gets no actions, whatever the clouds hold.
            allowed = [c for c in [*configs, *left] if not self._policy.check(c)]
            # Every config names its application for the orphan scan, blocked or not: none is called orphaned.
            known = [*configs, *retired, *left] if find_orphans else None
            observation = await self._observer.observe([*allowed, *retired], pipelines=pipelines, known=known)
            unread = _left_out(observation, [*configs, *retired])
            ready = [c for c in configs if c.id not in unread]
            ready_retired = [c for c in retired if c.id not in unread]
            result = plan(
                ready, observation.state, self._policy, ready_retired, claims=claims, applied=applied
            )
            if known is not None:
                orphans = orphaned(observation.state, known, (applied or {}).values())
                result = replace(result, findings=(*result.findings, *orphans))
            observed_at = time.monotonic()
            failures: dict[str, Failure] = dict(unread)
            results: list[ActionResult] = []
            created_apps: Mapping[str, str] = {}
            if not dry_run and result.actions:
                done = await self._applier.apply(
                    result, observation.state, [*ready, *ready_retired], progress
                )
                failures.update(done.failures)
                results, created_apps = done.results, done.created_apps
        outcomes = _outcomes([*configs, *retired], result, results, failures, dry_run=dry_run)
        for outcome in outcomes:
            outcome.application_id = result.applications.get(outcome.config_id) or created_apps.get(
                outcome.config_id
            )
        return RunReport(
            plan=result,
            outcomes=outcomes,
            requests=this_pass.as_dict(),
            pipeline_reads=observation.pipeline_reads,
            observe_seconds=observed_at - started,
            apply_seconds=time.monotonic() - observed_at,
            dry_run=dry_run,
            observed=observation.state,
            warnings=list(observation.warnings),
        )


def offline_report(
    configs: Sequence[FederationConfig], retired: Sequence[FederationConfig], result: Plan
) -> RunReport:
    """The report of a plan made offline against a snapshot: the same shape as a live dry run's,
    with no requests sent."""
    return RunReport(
        plan=result,
        outcomes=_outcomes([*configs, *retired], result, [], {}, dry_run=True),
        requests={},
        pipeline_reads=0,
        observe_seconds=0.0,
        apply_seconds=0.0,
        dry_run=True,
    )


def _left_out(observation: Observation, configs: Sequence[FederationConfig]) -> dict[str, Failure]:
    """The configs to leave out of this pass's plan, each with the failed read that keeps it out.

    A config whose own read failed, and every config that shares an application or a connection
    with one: configs that share them are planned together (so that pruning for one never removes
    what another wants), so none of them is planned on a partial view.
    """
    left_out = dict(observation.failures)
    pending = [c for c in configs if c.id in left_out]
    while pending:
        sharer = pending.pop()
        for config in configs:
            if config.id not in left_out and _shares(config, sharer):
                left_out[config.id] = _shared(left_out[sharer.id], sharer.id)
                pending.append(config)
    return left_out


def _shares(one: FederationConfig, other: FederationConfig) -> bool:
    return one.application.key == other.application.key or one.connection.folded == other.connection.folded


def _shared(cause: Failure, config_id: str) -> Failure:
    message = f"config {config_id}, which shares its application or connection, was not read: {cause.message}"
    if isinstance(cause, TemporaryFailure):
        return TemporaryFailure(message, retry_after=cause.retry_after, code=cause.code, status=cause.status)
    return PermanentFailure(message, code=cause.code, status=cause.status)


def _outcomes(
    configs: Sequence[FederationConfig],
    result: Plan,
    results: Sequence[ActionResult],
    failures: Mapping[str, Failure],
    *,
    dry_run: bool,
) -> list[ConfigOutcome]:
    outcomes = {c.id: ConfigOutcome(c.id, Status.CONVERGED) for c in configs}
    for action in result.actions:
        for config_id in action.config_ids:
            outcome = outcomes.setdefault(config_id, ConfigOutcome(config_id, Status.CONVERGED))
            outcome.drift.append(f"{action.kind} {action.target}: {action.drift}")
            if dry_run:
                outcome.status = Status.DRIFTED
    for action_result in results:
        for config_id in action_result.action.config_ids:
            outcomes[config_id].actions.append(action_result)
    for config_id, failure in failures.items():
        outcome = outcomes[config_id]
        outcome.reason, outcome.code = failure.message, failure.code
        if isinstance(failure, TemporaryFailure):
            outcome.status, outcome.retry_after = Status.FAILED_TEMPORARY, failure.retry_after
        else:
            outcome.status = Status.FAILED_PERMANENT
    for error in result.errors:
        outcomes[error.config_id].status = Status.FAILED_PERMANENT
        outcomes[error.config_id].reason = error.message
        outcomes[error.config_id].code = str(error.code)
    for violation in result.violations:
        outcome = outcomes[violation.config_id]
        outcome.status = Status.BLOCKED
        outcome.reason = "; ".join(filter(None, [outcome.reason, violation.message]))
    return sorted(outcomes.values(), key=lambda o: o.config_id)


def default_credential(cloud: Cloud) -> DefaultAzureCredential:
    """azure-identity's default chain, signing in at the cloud's authority and trusting its CA."""
    options: dict[str, object] = {"exclude_interactive_browser_credential": True}
    if cloud.authority_host:
        options["authority"] = cloud.authority_host
    if cloud.ca_bundle:
        options["connection_verify"] = cloud.ca_bundle
    return DefaultAzureCredential(**options)


@asynccontextmanager
async def connect(
    cloud: Cloud,
    policy: GrantPolicy,
    *,
    credential: AsyncTokenCredential | None = None,
    options: EngineOptions = EngineOptions(),
) -> AsyncIterator[Reconciler]:
    """A Reconciler with one adapter per API, closed on exit.

    The credential defaults to DefaultAzureCredential: the managed identity in Functions
    (and against the simulator's token endpoint), a developer's sign-in elsewhere.
    """
    own_credential = credential is None
    token_source: AsyncTokenCredential = credential or default_credential(cloud)
    meter = RequestMeter()
    budgets = options.budgets
    graph = GraphAdapter(token_source, cloud, meter, concurrency=options.concurrency, budgets=budgets)
    arm = ArmAdapter(token_source, cloud, meter, retry_total=options.retry_total, budgets=budgets)
    ado = AdoAdapter(token_source, cloud, meter, retry_total=options.retry_total, budgets=budgets)
    try:
        yield Reconciler(graph, arm, ado, policy, meter, options)
    finally:
        await graph.close()
        await arm.close()
        await ado.close()
        if own_credential:
            await token_source.close()

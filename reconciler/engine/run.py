"""One reconcile pass: observe -> plan -> apply, and a report per config and per run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from enum import StrEnum

from azure.core.credentials_async import AsyncTokenCredential
from azure.identity.aio import DefaultAzureCredential

from reconciler.adapters.ado import AdoAdapter
from reconciler.adapters.arm import ArmAdapter
from reconciler.adapters.graph import GraphAdapter
from reconciler.adapters.metering import RequestMeter
from reconciler.cloud import Cloud
from reconciler.core.model import ApplicationRef, FederationConfig
from reconciler.core.plan import Plan, plan
from reconciler.core.policy import GrantPolicy
from reconciler.core.tenancy import Tenant
from reconciler.engine.apply import ActionResult, Applier
from reconciler.engine.observe import Observer
from reconciler.failures import Failure, TemporaryFailure


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
    principal_replication_window: float = 60.0  # how long PrincipalNotFound counts as replication delay
    retry_total: int = 5  # azure-core retries per ARM and ADO request
    # From this many applications in a batch on, count the tenant's and list them all when cheaper.
    listing_threshold: int = 1000


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
            graph, arm, ado, concurrency=options.concurrency, listing_threshold=options.listing_threshold
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
    ) -> RunReport:
        """One pass. `claims` and `applied` are as reconciler.core.plan.plan takes them."""
        started = time.monotonic()
        # The applications configs were last applied to are read too, to remove what a moved config left.
        left = [
            replace(c, application=ApplicationRef(app_id=applied[c.id]))
            for c in configs
            if applied and applied.get(c.id) and applied[c.id] != c.application.app_id
        ]
        # Only this pass's requests: the worker runs several passes at once on one engine.
        with self.meter.counting_this_pass() as this_pass:
            observation = await self._observer.observe([*configs, *retired, *left], pipelines=pipelines)
            result = plan(configs, observation.state, self._policy, retired, claims=claims, applied=applied)
            observed_at = time.monotonic()
            failures: Mapping[str, Failure] = {}
            results: list[ActionResult] = []
            created_apps: Mapping[str, str] = {}
            if not dry_run and result.actions:
                done = await self._applier.apply(result, observation.state, [*configs, *retired], progress)
                failures, results, created_apps = done.failures, done.results, done.created_apps
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
        )


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
        outcome.reason = failure.message
        if isinstance(failure, TemporaryFailure):
            outcome.status, outcome.retry_after = Status.FAILED_TEMPORARY, failure.retry_after
        else:
            outcome.status = Status.FAILED_PERMANENT
    for error in result.errors:
        outcomes[error.config_id].status = Status.FAILED_PERMANENT
        outcomes[error.config_id].reason = error.message
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
    graph = GraphAdapter(token_source, cloud, meter, concurrency=options.concurrency)
    arm = ArmAdapter(token_source, cloud, meter, retry_total=options.retry_total)
    ado = AdoAdapter(token_source, cloud, meter, retry_total=options.retry_total)
    try:
        yield Reconciler(graph, arm, ado, policy, meter, options)
    finally:
        await graph.close()
        await arm.close()
        await ado.close()
        if own_credential:
            await token_source.close()

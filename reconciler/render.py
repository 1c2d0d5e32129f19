"""Plans as people and programs read them: an aligned table, or JSON."""

from __future__ import annotations

import json
from typing import Any

from reconciler.core.actions import Action
from reconciler.core.plan import Plan
from reconciler.engine.run import RunReport, Status


def plan_to_dict(plan: Plan) -> dict[str, Any]:
    return {
        "summary": {
            "actions": len(plan.actions),
            "violations": len(plan.violations),
            "errors": len(plan.errors),
            "findings": len(plan.findings),
        },
        "actions": [_action_to_dict(a) for a in plan.actions],
        "violations": [
            {"configId": v.config_id, "rule": str(v.rule), "subject": v.subject, "message": v.message}
            for v in plan.violations
        ],
        "errors": [{"configId": e.config_id, "code": str(e.code), "message": e.message} for e in plan.errors],
        "findings": [
            {"kind": str(f.kind), "configIds": list(f.config_ids), "target": f.target, "detail": f.detail}
            for f in plan.findings
        ],
    }


def _action_to_dict(action: Action) -> dict[str, Any]:
    return {
        "kind": str(action.kind),
        "phase": action.phase.name.lower(),
        "target": action.target,
        "configIds": list(action.config_ids),
        "drift": {"kind": str(action.drift.kind), "detail": action.drift.detail},
        "changes": action.changes,
    }


def plan_to_table(plan: Plan, *, not_compared: int = 0) -> str:
    """One block per action: what and where on the first line, then for which config, why and what it sets.

    `not_compared`: configs left out of the plan because a read failed (reported with the outcomes).
    """
    lines: list[str] = []
    width = len(str(len(plan.actions)))
    for number, action in enumerate(plan.actions, start=1):
        lines.append(f"{number:>{width}}. {action.kind:<26} {action.target}")
        indent = " " * (width + 2)
        lines.append(f"{indent}config: {', '.join(action.config_ids)}")
        lines.append(f"{indent}why:    {action.drift}")
        if action.changes:
            lines.append(f"{indent}sets:   " + ", ".join(f"{k}={v}" for k, v in action.changes.items()))
    if not plan.actions:
        lines.append(_no_actions(plan, not_compared))
    for title, entries in (
        ("Policy violations (nothing is changed for these configs)", [str(v) for v in plan.violations]),
        ("Errors (nothing is changed for these configs)", [str(e) for e in plan.errors]),
        ("Findings (left alone)", [f"{f.kind}: {f.target}: {f.detail}" for f in plan.findings]),
    ):
        if entries:
            lines.extend(["", f"{title}:", *(f"  - {entry}" for entry in entries)])
    lines.append("")
    lines.append(
        f"Plan: {len(plan.actions)} action(s), {len(plan.violations)} violation(s), "
        f"{len(plan.errors)} error(s), {len(plan.findings)} finding(s)."
    )
    return "\n".join(lines)


def _no_actions(plan: Plan, not_compared: int) -> str:
    """What an empty plan means: a match only when every config was compared and may be applied."""
    stopped = len({v.config_id for v in plan.violations} | {e.config_id for e in plan.errors})
    if not stopped and not not_compared:
        return "No changes: the live state matches the desired state."
    parts = [f"{stopped} config(s) blocked or in error (below)"] if stopped else []
    parts += [f"{not_compared} config(s) not compared: a read failed (below)"] if not_compared else []
    return f"No changes planned for the other configs; {' and '.join(parts)}."


def _counted(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def report_to_dict(report: RunReport) -> dict[str, Any]:
    return {
        "dryRun": report.dry_run,
        "plan": plan_to_dict(report.plan),
        "outcomes": [
            {
                "configId": o.config_id,
                "status": str(o.status),
                "drift": o.drift,
                "actions": [
                    {
                        "kind": str(r.action.kind),
                        "target": r.action.target,
                        "outcome": r.outcome,
                        "detail": r.detail,
                    }
                    for r in o.actions
                ],
                "reason": o.reason,
                "retryAfter": o.retry_after,
            }
            for o in report.outcomes
        ],
        "requests": report.requests,
        "pipelinePermissionReads": report.pipeline_reads,
        "seconds": {"observe": round(report.observe_seconds, 3), "apply": round(report.apply_seconds, 3)},
        "warnings": report.warnings,
    }


def report_to_json(report: RunReport) -> str:
    return json.dumps(report_to_dict(report), indent=2)


def report_to_table(report: RunReport) -> str:
    """The plan, then what happened to each config that is not simply converged, then the figures."""
    not_compared = {o.config_id for o in report.outcomes if o.status is not Status.CONVERGED} - {
        *(v.config_id for v in report.plan.violations),
        *(e.config_id for e in report.plan.errors),
        *(c for a in report.plan.actions for c in a.config_ids),
    }
    lines = [plan_to_table(report.plan, not_compared=len(not_compared)), ""]
    noteworthy = [o for o in report.outcomes if o.status is not Status.CONVERGED or o.actions]
    for outcome in noteworthy:
        done = ", ".join(f"{r.action.kind}: {r.outcome}" for r in outcome.actions)
        lines.append(f"{outcome.status:<17} {outcome.config_id}" + (f"  ({done})" if done else ""))
        if outcome.reason:
            retry = f" (retry after {outcome.retry_after:.0f}s)" if outcome.retry_after is not None else ""
            lines.append(f"{'':<17} {outcome.reason}{retry}")
    counts: dict[str, int] = {}
    for outcome in report.outcomes:
        counts[str(outcome.status)] = counts.get(str(outcome.status), 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
    lines.append(
        f"{'Dry run' if report.dry_run else 'Applied'}: {len(report.outcomes)} config(s): {summary}."
    )
    lines.append(_figures(report))
    return "\n".join(lines)


def _figures(report: RunReport) -> str:
    """Requests per API and the time of each phase that ran (a dry run applies nothing)."""
    if not report.requests:
        return "Requests: none."
    requests = "; ".join(
        f"{api} {_counted(c['reads'], 'read')}, {_counted(c['writes'], 'write')}"
        for api, c in report.requests.items()
    )
    timing = f"Observe {report.observe_seconds:.2f}s"
    if not report.dry_run:
        timing += f", apply {report.apply_seconds:.2f}s"
    return (
        f"Requests: {requests} (of the ado reads, {report.pipeline_reads} read pipeline permissions). "
        f"{timing}."
    )

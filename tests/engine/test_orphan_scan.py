"""The orphan scan of a pass given the whole desired state (`find_orphans`): the reconciler's
applications no config names are read and reported; a failed scan fails no config."""

from __future__ import annotations

from cloudsim.faults import Faults
from reconciler.core.plan import FindingKind
from reconciler.engine.run import RunReport
from tests.engine.conftest import Tenant


def orphaned(report: RunReport) -> list[str]:
    return sorted(f.target.split(" ")[0] for f in report.plan.findings if f.kind is FindingKind.ORPHANED)


async def test_an_application_only_a_removed_config_named_is_read_and_reported(tenant: Tenant) -> None:
    stays = tenant.config("kv-stays", None, create_as="sc-payments-stays")
    removed = tenant.config("kv-removed", None, create_as="sc-payments-removed")
    assert (await tenant.run([stays, removed])).all_converged
    report = await tenant.run([stays], dry_run=True, find_orphans=True)
    assert report.all_converged and report.plan.is_empty and report.warnings == []
    assert orphaned(report) == ["application", "credential", "role", "service"]
    assert {f.config_ids for f in report.plan.findings} == {(removed.id,)}
    assert orphaned(await tenant.run([stays], dry_run=True)) == []  # not asked: a batch is a subset
    # Retired, it is named: planned for removal, not reported.
    retiring = await tenant.run([stays], retired=[removed], dry_run=True, find_orphans=True)
    assert orphaned(retiring) == [] and not retiring.plan.is_empty


async def test_a_failed_scan_is_a_warning_and_fails_no_config(tenant: Tenant) -> None:
    """The scan has two sources, the tagged applications and the identity's owned ones: either
    one refused is a warning, and the other still finds the created application."""
    stays = tenant.config("kv-stays", None, create_as="sc-payments-stays")
    removed = tenant.config("kv-removed", None, create_as="sc-payments-removed")
    assert (await tenant.run([stays, removed])).all_converged
    refusals = {
        "could not read the applications the reconciler created": Faults(
            error_rate=1.0, error_statuses=[403], operations=["applications.list"], matching="tags/any"
        ),
        "could not read the applications the reconciler owns": Faults(
            error_rate=1.0, error_statuses=[403], operations=["servicePrincipals.ownedObjects"]
        ),
    }
    for warning, refused in refusals.items():
        await tenant.sim.admin.set_faults({"graph": refused})
        report = await tenant.run([stays], dry_run=True, find_orphans=True)
        assert report.all_converged, [(o.status, o.reason) for o in report.outcomes]
        assert orphaned(report) == ["application", "credential", "role", "service"]
        assert len(report.warnings) == 1 and report.warnings[0].startswith(warning), report.warnings
        assert "are not reported in this pass" in report.warnings[0]


async def test_what_a_removed_config_put_on_an_adopted_application_is_reported(tenant: Tenant) -> None:
    """The scan reads the applications the identity owns too (the same ownership listing, with
    client ids): an adopted application no config names keeps the reconciler's credential and
    role assignment, which are reported; the application itself is not the reconciler's."""
    stays = tenant.config("kv-stays", None, create_as="sc-payments-stays")
    adopted = await tenant.app("sc-payments-adopted")
    removed = tenant.config("kv-removed", adopted["appId"])
    assert (await tenant.run([stays, removed])).all_converged
    await tenant.sim.admin.reset_counters()
    report = await tenant.run([stays], dry_run=True, find_orphans=True)
    assert report.all_converged and report.plan.is_empty and report.warnings == []
    assert orphaned(report) == ["credential", "role", "service"]
    assert {f.config_ids for f in report.plan.findings} == {(removed.id,)}
    owned = (await tenant.sim.admin.counters())["graph"]["operations"]["servicePrincipals.ownedObjects"]
    assert owned["reads"] == 1  # one listing, though no config of the pass adopts

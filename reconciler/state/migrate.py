"""`table migrate`: rows written by earlier versions brought to the shapes this version reads.

What changed, and what this version does with the older rows (docs/operations.md, "Upgrading"):

- **Configs without a connection index row** (stored before one config per connection was kept
  by the store): the store writes the row only at the config's next write, so until then another
  config may be stored for the same connection. Migrated: the row is written, in one transaction
  guarded by the config row's ETag. Two older configs naming one connection are reported, never
  decided here: a person retires one.
- **Claims without `Created`** (written before created and adopted applications were told
  apart): an `app:<client id>` claim without it does not bind at upsert, and the pass that created
  the application never writes it again, so a config of another project naming a created
  application by appId is refused only by the engine's check, not at the door. Migrated: `True`
  where the claim's config names its application by display name (only the pass that creates an
  application writes an `app:` claim for such a config), else `False`, which is what such a row
  means today. `new:` claims get `False`, as this version writes them (it does not change them).
- **Event index rows of the one-partition-per-object layout**: lookups no longer read them, so
  until a pass writes the object again, its events are dropped. Migrated: written again in the
  current layout, and the old row deleted if unchanged (the index is the reconciler's own).
- **Adopted applications without their owners' tenant tag** (required since adoption needs the
  owners' consent): the engine blocks their configs and writes nothing to them. Not migrated: the
  tag is the owners' consent, so the reconciler must never write it; the blocked statuses are
  listed with the exact command their owners must run.
- Status rows without `AppliedApplication` need nothing: read as "" and written by the next pass.

Every write is conditional on what was read, so a concurrent worker's change is reported and
left as it is, never overwritten; running again picks up what is left, and once nothing is left
it writes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field

from reconciler.core.tenancy import TENANT_TAG_PREFIX
from reconciler.engine.run import Status
from reconciler.state.claims import ClaimRow
from reconciler.state.configs import ConfigRecord, connection_row_key
from reconciler.state.stores import Stores
from reconciler.state.tables import CLAIMS_TABLE, CONFIGS_TABLE, INDEX_TABLE, ConcurrencyConflict, InvalidRow

RUN_AGAIN = "changed since it was read (by a worker or a person): left as it is; run the migration again"


@dataclass
class MigrationReport:
    """What was (or, in a dry run, would be) changed, what could not be, and what a person must do."""

    dry_run: bool
    changed: int = 0
    failed: list[str] = field(default_factory=list)
    for_owners: list[str] = field(default_factory=list)

    @property
    def left(self) -> bool:
        return bool(self.failed or self.for_owners)


Say = Callable[[str], None]


async def migrate(stores: Stores, *, dry_run: bool, say: Say) -> MigrationReport:
    """Brings every row of an earlier version to its current shape; `say` gets one line per row."""
    report = MigrationReport(dry_run)
    records = await _configs(stores, report, say)
    await _connection_rows(stores, records, report, say)
    await _claims(stores, {r.config.id: r for r in records}, report, say)
    await _index_rows(stores, report, say)
    await _untagged_applications(stores, report, say)
    return report


async def _configs(stores: Stores, report: MigrationReport, say: Say) -> list[ConfigRecord]:
    def invalid(row: InvalidRow) -> None:
        problem = f"{row}: `import` the corrected config under the same id (or retire it)"
        report.failed.append(problem)
        say(f"cannot migrate  {problem}")

    return [record async for record in stores.configs.list_all(on_invalid=invalid)]


async def _connection_rows(
    stores: Stores, records: list[ConfigRecord], report: MigrationReport, say: Say
) -> None:
    holders = await stores.configs.connection_holders()
    missing: dict[tuple[str, str], list[ConfigRecord]] = defaultdict(list)
    for record in records:
        keys = (record.config.organization.lower(), connection_row_key(record.config.connection))
        holder = holders.get(keys)
        if holder is None:
            missing[keys].append(record)
        elif holder != record.config.id:
            _fail(report, say, CONFIGS_TABLE, keys, _shared(record, [holder]))
    for keys, sharing in sorted(missing.items()):
        if len(sharing) > 1:
            _fail(report, say, CONFIGS_TABLE, keys, _shared(sharing[0], [r.config.id for r in sharing[1:]]))
            continue
        [record] = sharing
        what = f"connection index row of config {record.config.id} ({record.config.connection})"
        write = stores.configs.add_connection_row(record)
        await _change(report, say, CONFIGS_TABLE, keys, what, write)


def _shared(record: ConfigRecord, others: list[str]) -> str:
    return (
        f"service connection {record.config.connection} is named by config {record.config.id} and by "
        f"{', '.join(others)}; one config per connection: retire all but one (and let its prune finish)"
    )


async def _claims(
    stores: Stores, configs: dict[str, ConfigRecord], report: MigrationReport, say: Say
) -> None:
    def invalid(row: InvalidRow) -> None:
        _fail(report, say, CLAIMS_TABLE, (row.partition_key, row.row_key), "; ".join(row.problems))

    async for claim in stores.claims.rows(on_invalid=invalid):
        if claim.created is not None:
            continue
        created, why = _created(claim, configs.get(claim.config_id))
        what = f"claim {claim.key} of {claim.tenant}: Created={created} ({why})"
        keys = (claim.partition_key, claim.row_key)
        await _change(report, say, CLAIMS_TABLE, keys, what, stores.claims.set_created(claim, created))


def _created(claim: ClaimRow, config: ConfigRecord | None) -> tuple[bool, str]:
    """Whether the reconciler created the claimed application, and the evidence."""
    if not claim.key.startswith("app:"):
        return False, "a display-name claim binds without it"
    if config is None:
        return False, f"its config {claim.config_id or '?'} is gone: kept as an adopted application's claim"
    if config.config.application.app_id is None:
        return True, f"written when config {config.config.id} had its application created"
    return False, f"config {config.config.id} adopts it by appId"


async def _index_rows(stores: Stores, report: MigrationReport, say: Say) -> None:
    async for old in stores.index.old_layout_rows():
        keys = (old.partition_key, old.row_key)
        if old.key is None:
            problem = f"Key/AppKey do not name an object and an application ({old.app_key!r:.80})"
            _fail(report, say, INDEX_TABLE, keys, problem)
            continue
        what = f"{old.key} -> {old.app_key} moved to the current layout"
        await _change(report, say, INDEX_TABLE, keys, what, stores.index.move(old))


async def _untagged_applications(stores: Stores, report: MigrationReport, say: Say) -> None:
    """The configs the last pass blocked because their adopted application has no tenant tag: their
    status holds the exact command for its owners (the reconciler may not write the tag itself)."""
    async for status in stores.status.list_all(on_invalid=lambda row: None):
        if status.phase is Status.BLOCKED and TENANT_TAG_PREFIX in status.last_error:
            line = f"config {status.config_id}: {status.last_error}"
            report.for_owners.append(line)
            say(f"for owners  {line}")


async def _change(
    report: MigrationReport,
    say: Say,
    table: str,
    keys: tuple[str, str],
    what: str,
    write: Coroutine[object, object, object],
) -> None:
    """Runs `write` (closed unrun in a dry run) and says what it changed, or why it could not."""
    row = f"{table} {keys[0]}/{keys[1]}"
    if report.dry_run:
        write.close()
        report.changed += 1
        say(f"would migrate  {row}: {what}")
        return
    try:
        await write
    except ConcurrencyConflict:
        _fail(report, say, table, keys, RUN_AGAIN)
        return
    report.changed += 1
    say(f"migrated  {row}: {what}")


def _fail(report: MigrationReport, say: Say, table: str, keys: tuple[str, str], problem: str) -> None:
    line = f"{table} {keys[0]}/{keys[1]}: {problem}"
    report.failed.append(line)
    say(f"cannot migrate  {line}")

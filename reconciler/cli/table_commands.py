"""`python -m reconciler import` and `export`: move configs between YAML files and the table;
`table migrate`: bring rows written by earlier versions to the shapes this version reads.

The table is chosen by the environment, as in the Function App: WIF_TABLE_CONNECTION_STRING
(Azurite) or WIF_TABLE_ENDPOINT (an https account URL, signed in with DefaultAzureCredential).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import yaml
from azure.identity.aio import DefaultAzureCredential

from reconciler.cli.defaults import POLICY_HELP, policy_path
from reconciler.core.model import FederationConfig
from reconciler.core.policy import GrantPolicy
from reconciler.core.serialise import config_to_document
from reconciler.core.tenancy import Tenant, claim_key, first_claims
from reconciler.documents import InputError, load_configs, load_policy
from reconciler.failures import TemporaryFailure
from reconciler.state.claims import claimed_elsewhere
from reconciler.state.configs import ConfigRecord
from reconciler.state.migrate import migrate
from reconciler.state.stores import Stores, open_stores
from reconciler.state.tables import ConcurrencyConflict, InvalidRow

# As reconciler.cli (not imported from there: cli imports this module).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
CONFLICT_RETRIES = 5
# Without a policy file, no application is shared between projects.
NO_SHARING = GrantPolicy(frozenset(), frozenset(), frozenset(), ())


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds the `import` and `export` commands to the CLI's subcommands."""
    import_cmd = commands.add_parser(
        "import", help="validate config files and store every config in the desired-state table"
    )
    import_cmd.add_argument("files", nargs="+", type=Path, metavar="FILE")
    import_cmd.add_argument(
        "--request-id",
        help="recorded on every changed config as the request that changed it (default: cli-import-<time>)",
    )
    import_cmd.add_argument("--policy", type=Path, help=POLICY_HELP)
    import_cmd.set_defaults(run=run_import)

    export_cmd = commands.add_parser(
        "export", help="write the active configs of the desired-state table as multi-document YAML"
    )
    export_cmd.add_argument("--output", type=Path, metavar="FILE", help="write here instead of stdout")
    export_cmd.set_defaults(run=run_export)

    table = commands.add_parser("table", help="maintain the reconciler's tables")
    maintenance = table.add_subparsers(required=True, metavar="COMMAND")
    migrate_cmd = maintenance.add_parser(
        "migrate",
        help="bring rows of earlier versions to the current shapes (once per upgrade; safe to repeat)",
    )
    migrate_cmd.add_argument("--dry-run", action="store_true", help="print what would change, write nothing")
    migrate_cmd.set_defaults(run=run_migrate)


def run_import(args: argparse.Namespace) -> int:
    configs = load_configs(args.files)  # every file together: ids and shared apps span files
    policy = load_policy(policy_path(args.policy))
    violations = [str(v) for config in configs for v in policy.check(config)]
    if violations:
        raise InputError(violations)
    request_id = args.request_id or f"cli-import-{datetime.now(UTC):%Y%m%dT%H%M%SZ}"
    return asyncio.run(
        import_configs(os.environ, configs, request_id=request_id, out=sys.stdout, policy=policy)
    )


async def import_configs(
    settings: Mapping[str, str],
    configs: list[FederationConfig],
    *,
    request_id: str,
    out: TextIO,
    policy: GrantPolicy | None = None,
) -> int:
    """Stores the configs. First every config is checked against the claims (its application
    must not belong to another project, its connection not to another config): on any problem
    nothing is written and InputError lists them all. `policy` may share applications."""
    counts = {"created": 0, "updated": 0, "restored": 0, "unchanged": 0}
    sharing = policy or NO_SHARING
    try:
        async with _stores(settings) as stores:
            problems = await _claim_problems(stores, configs, sharing)
            if problems:
                raise InputError(problems)
            for config in configs:
                await stores.claims.claim_for(config, sharing, request_id=request_id)
                change = await _upsert(stores, config, request_id)
                counts[change] += 1
                if change != "unchanged":
                    print(f"{change:>9}  {config.id}", file=out)
    except (TemporaryFailure, ConcurrencyConflict) as error:
        print(f"error: {error} (nothing after this config was imported; run the import again)", file=out)
        return EXIT_FAILED
    print(", ".join(f"{n} {what}" for what, n in counts.items()) + f" ({len(configs)} config(s)).", file=out)
    return EXIT_OK


async def _claim_problems(stores: Stores, configs: list[FederationConfig], policy: GrantPolicy) -> list[str]:
    """Configs naming an application another project's claim binds (in the table, or earlier in
    these files), or a connection another config manages. An adopted application's claim does not
    bind here: its owners' tenant tag decides, which only the engine reads (reconciler.state.claims)."""
    claims = await stores.claims.owners(claim_key(c.application) for c in configs)
    binding = {key: tenant for key, tenant in claims.items() if await stores.claims.binds(key)}
    owners = first_claims([c for c in configs if c.application.app_id is None], binding)
    problems: list[str] = []
    for config in configs:
        key = claim_key(config.application)
        owner = owners[key][0] if key in owners else Tenant.of(config)
        if not policy.may_use_application([key], owner, Tenant.of(config)):
            problems.append(f"config {config.id}: {claimed_elsewhere(config, owner)}")
        takeover = await stores.configs.id_takeover(config)
        if takeover is not None:
            problems.append(f"config {config.id}: id: {takeover}")
        holder = await stores.configs.connection_holder(config.organization, config.connection)
        if holder not in (None, config.id):
            problems.append(
                f"config {config.id}: serviceConnection.name: service connection {config.connection} "
                f"is managed by config {holder!r}"
            )
    return problems


async def _upsert(stores: Stores, config: FederationConfig, request_id: str) -> str:
    """One config into the table; which change that was. Retries when a concurrent writer won."""
    document = config_to_document(config)
    for attempt in range(CONFLICT_RETRIES):
        before = await stores.configs.get(config.id, config.organization)
        try:
            after = await stores.configs.put(
                document, request_id=request_id, expected_etag=before.etag if before else None
            )
        except ConcurrencyConflict:
            if attempt == CONFLICT_RETRIES - 1:
                raise
            continue
        if before is None:
            return "created"
        if after.etag == before.etag:
            return "unchanged"
        return "restored" if before.deleted else "updated"
    raise AssertionError("unreachable")


def run_export(args: argparse.Namespace) -> int:
    text, invalid = asyncio.run(export_configs(os.environ))
    for row in invalid:
        print(f"warning: skipped {row}", file=sys.stderr)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return EXIT_FAILED if invalid else EXIT_OK


async def export_configs(settings: Mapping[str, str]) -> tuple[str, list[InvalidRow]]:
    """The active configs as multi-document YAML, ordered by id; and the rows that are not valid."""
    invalid: list[InvalidRow] = []
    records: list[ConfigRecord] = []
    async with _stores(settings) as stores:
        async for record in stores.configs.list_all(on_invalid=invalid.append):
            if not record.deleted:
                records.append(record)
    records.sort(key=lambda record: record.config_id)
    return render_yaml([record.document for record in records]), invalid


def render_yaml(documents: list[dict[str, Any]]) -> str:
    if not documents:
        return ""
    return yaml.safe_dump_all(
        documents, sort_keys=False, explicit_start=True, allow_unicode=True, default_flow_style=False
    )


def run_migrate(args: argparse.Namespace) -> int:
    return asyncio.run(migrate_tables(os.environ, dry_run=args.dry_run, out=sys.stdout))


async def migrate_tables(settings: Mapping[str, str], *, dry_run: bool, out: TextIO) -> int:
    """Runs the migration (reconciler.state.migrate), one line per row, then a summary; exit 0 when
    nothing is left to do, 1 when a row could not be migrated, its owners must act, or (dry run)
    rows would change."""
    async with _stores(settings) as stores:
        report = await migrate(stores, dry_run=dry_run, say=lambda line: print(line, file=out))
    done = "would be migrated (dry run: nothing written)" if dry_run else "migrated"
    print(
        f"{report.changed} row(s) {done}; {len(report.failed)} could not be migrated; "
        f"{len(report.for_owners)} config(s) wait for their application owners' tenant tag.",
        file=out,
    )
    if report.failed:
        print("Fix what the lines above name, then run `table migrate` again.", file=out)
    return EXIT_FAILED if report.left or (dry_run and report.changed) else EXIT_OK


@asynccontextmanager
async def _stores(settings: Mapping[str, str]) -> AsyncIterator[Stores]:
    # A credential only for the account URL: the connection string carries its own key.
    if (settings.get("WIF_TABLE_CONNECTION_STRING") or "").strip():
        async with await open_stores(settings, None) as stores:
            yield stores
        return
    async with DefaultAzureCredential() as credential, await open_stores(settings, credential) as stores:
        yield stores

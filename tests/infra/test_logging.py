"""host.json's log levels do what README.md says, given where the worker's lines arrive.

The Functions host files every line the Python worker logs under Function.<function name>.User,
whatever Python logger wrote it ("Configure monitoring for Azure Functions", categories:
https://learn.microsoft.com/azure/azure-functions/configure-monitoring#configure-categories; the
worker forwards every record of the root logger, set to INFO, over gRPC: azure-functions-python-worker
dispatcher.py). So a host.json category named after a Python logger matches nothing, and the levels
of the reconciler and the Azure SDKs can only be told apart in Python.
"""

from __future__ import annotations

import logging

from reconciler.app import logs
from tests.infra.bicep import ROOT, load_json

# Categories the host writes (same source): Function.<name> (its per-execution lines),
# Function.<name>.User (the worker's lines), Host.*, Microsoft*, Worker, and "default".
HOST_CATEGORIES = ("default", "Function", "Host.", "Microsoft", "Worker")


def log_levels() -> dict[str, str]:
    levels: dict[str, str] = load_json(ROOT / "host.json")["logging"]["logLevel"]
    return levels


def test_every_host_json_category_is_one_the_host_writes() -> None:
    unreachable = [c for c in log_levels() if not c.startswith(HOST_CATEGORIES)]
    assert not unreachable, f"host.json names categories no log line has: {unreachable}"


def test_the_workers_lines_and_the_requests_pass_at_information() -> None:
    levels = log_levels()
    assert levels["Function"] == "Information"  # covers Function.<name>.User, the worker's lines
    assert levels["Host.Results"] == "Information"  # the requests the failed-executions alert counts
    assert levels["default"] == "Warning"


def test_the_python_levels_keep_the_reconciler_and_quiet_the_azure_sdks() -> None:
    sdk = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    logs.install()
    assert logging.getLogger("reconciler.engine").isEnabledFor(logging.INFO)
    assert not sdk.isEnabledFor(logging.INFO)  # one INFO line per HTTP request otherwise
    assert sdk.isEnabledFor(logging.WARNING)

"""What the command line says when the environment, not the input, stops a command.

Every command ends in an exit code and, on failure, one line on stderr that says what went wrong
and what to do, never a traceback: `2` when a setting must change (no credential, a Service Bus
or table setting that is wrong), `1` when something could not be reached or failed and running
again later may work. Input problems (files, policy) are InputError, reported by main.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.core.exceptions import ClientAuthenticationError, ServiceRequestError, ServiceResponseError
from azure.servicebus.exceptions import (
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from reconciler.cloud import CloudError
from reconciler.failures import Failure
from reconciler.state.queues import QueueSettingsError

EXIT_FAILED = 1
EXIT_BAD_SETTINGS = 2

NOT_SIGNED_IN = (
    "not signed in: no credential could get a token ({cause}). Sign in with `az login` (or set "
    "AZURE_CLIENT_ID for a managed identity); against the simulator, load the env file it writes "
    "(`set -a; . ./sim.env; set +a`)"
)


@dataclass(frozen=True)
class Explained:
    """One line for a person, and the exit code."""

    message: str
    exit_code: int


class SettingsProblem(Exception):
    """A setting that must change before the command can work (exit 2)."""


def explain(error: BaseException) -> Explained | None:
    """The line and exit code for an error the environment can cause; None for anything else."""
    if isinstance(error, ClientAuthenticationError):
        return Explained(NOT_SIGNED_IN.format(cause=first_line(error)), EXIT_BAD_SETTINGS)
    if isinstance(error, (SettingsProblem, CloudError, QueueSettingsError)):
        return Explained(str(error), EXIT_BAD_SETTINGS)
    if isinstance(error, (ServiceBusAuthenticationError, ServiceBusAuthorizationError)):
        return Explained(
            f"Service Bus refused the credentials: {first_line(error)}. Check ServiceBusConnection "
            "(its key) or the identity's Azure Service Bus Data Sender/Receiver role",
            EXIT_BAD_SETTINGS,
        )
    if isinstance(error, ServiceBusConnectionError):
        return Explained(
            f"cannot reach Service Bus: {first_line(error)}. Check ServiceBusConnection (or "
            "ServiceBusConnection__fullyQualifiedNamespace) and that the namespace is reachable, "
            "then run again",
            EXIT_FAILED,
        )
    if isinstance(error, ServiceBusError):  # a missing queue, a busy namespace, a timeout
        return Explained(
            f"Service Bus did not accept the request: {first_line(error)}. Check that the queues "
            "exist (requests, reconcile) and run again",
            EXIT_FAILED,
        )
    if isinstance(error, Failure):  # only the tables raise one here: unreachable, or busy
        return Explained(
            f"{first_line(error)}. Check WIF_TABLE_CONNECTION_STRING or WIF_TABLE_ENDPOINT and that the "
            "account is reachable, then run again",
            EXIT_FAILED,
        )
    if isinstance(error, (ServiceRequestError, ServiceResponseError, ConnectionError)):
        return Explained(
            f"cannot reach an Azure endpoint: {first_line(error)}. Check the network and the endpoint "
            "settings, then run again",
            EXIT_FAILED,
        )
    return None


def first_line(error: BaseException) -> str:
    """The error's message up to its first line break: SDK messages run on for many lines."""
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0].rstrip(". ")

"""Read-only checks that the app's tables and queues exist and its identity may use them (`doctor`).

Tables: the first page (one entity at most) of each table: it exists and the identity may read it.
Queues: a peek at each queue's dead-letter sub-queue, which needs the receive (Listen) right and
locks nothing, not even a session of the session-enabled `reconcile` queue. Managing the queues
(reading their properties) needs rights the app does not have, and sending is proven only by
sending, which a check that changes nothing cannot do: both are left unchecked, and said so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables.aio import TableServiceClient
from azure.servicebus.exceptions import (
    MessagingEntityNotFoundError,
    OperationTimeoutError,
    ServiceBusAuthenticationError,
    ServiceBusAuthorizationError,
    ServiceBusConnectionError,
    ServiceBusError,
)

from reconciler.core.rights import Finding, Verdict
from reconciler.state.queues import CONNECTION_SETTING, NAMESPACE_SETTING, QUEUES, Queues
from reconciler.state.stores import service_client
from reconciler.state.tables import CLAIMS_TABLE, CONFIGS_TABLE, REQUESTS_TABLE, STATUS_TABLE

TABLES = (CONFIGS_TABLE, STATUS_TABLE, REQUESTS_TABLE, CLAIMS_TABLE)
_TABLE_ROLE = "Storage Table Data Contributor"
_QUEUE_ROLE = "Azure Service Bus Data Receiver"


async def check_tables(settings: Mapping[str, str], credential: AsyncTokenCredential) -> list[Finding]:
    """One finding per table; one error line instead when Table Storage cannot be reached."""
    if not (settings.get("WIF_TABLE_CONNECTION_STRING") or settings.get("WIF_TABLE_ENDPOINT")):
        return [_not_configured("Tables", "WIF_TABLE_ENDPOINT or WIF_TABLE_CONNECTION_STRING")]
    where = settings.get("WIF_TABLE_ENDPOINT") or "the table connection string's account"
    findings: list[Finding] = []
    async with service_client(settings, credential) as service:
        for name in TABLES:
            finding = await _check_table(service, name, where)
            if finding.verdict is Verdict.ERROR:
                return [finding]  # the same for every table: say it once
            findings.append(finding)
    return findings


async def _check_table(service: TableServiceClient, name: str, where: str) -> Finding:
    subject = f"table {name}"
    try:
        pages = service.get_table_client(name).list_entities(results_per_page=1, select=["PartitionKey"])
        async for _ in pages.by_page():
            break
    except ResourceNotFoundError:
        return Finding(
            "Tables",
            subject,
            Verdict.MISSING,
            "it does not exist",
            fix=f"the app creates its tables when it starts (with {_TABLE_ROLE}): restart the Function App, "
            "or "
            f"az storage table create --name {name} --account-name <account> --auth-mode login",
        )
    except ClientAuthenticationError as error:
        return Finding(
            "Tables", "sign-in", Verdict.ERROR, f"cannot sign in to Table Storage: {_first_line(error)}"
        )
    except (ServiceRequestError, ServiceResponseError) as error:
        return Finding("Tables", "endpoint", Verdict.ERROR, f"cannot reach {where}: {_first_line(error)}")
    except HttpResponseError as error:
        if error.status_code == 403:
            return Finding(
                "Tables",
                subject,
                Verdict.MISSING,
                "the identity may not read it (403)",
                fix=f"az role assignment create --assignee-object-id <the identity's object id> "
                f'--assignee-principal-type ServicePrincipal --role "{_TABLE_ROLE}" '
                "--scope <the storage account id>",
            )
        return Finding("Tables", subject, Verdict.ERROR, f"Table Storage answered {error.status_code}")
    return Finding("Tables", subject, Verdict.OK, "exists and is readable")


async def check_queues(
    settings: Mapping[str, str], credential: AsyncTokenCredential, names: Sequence[str] = QUEUES
) -> list[Finding]:
    """One finding per queue (default: each the app uses); one error line instead when Service Bus
    cannot be reached."""
    if not (settings.get(CONNECTION_SETTING) or settings.get(NAMESPACE_SETTING)):
        return [_not_configured("Service Bus", f"{NAMESPACE_SETTING} or {CONNECTION_SETTING}")]
    where = settings.get(NAMESPACE_SETTING) or "the Service Bus connection string's namespace"
    findings: list[Finding] = []
    async with Queues.from_settings(settings, retry_total=0, credential=credential) as queues:
        for queue in names:
            finding = await _check_queue(queues, queue, where)
            if finding.verdict is Verdict.ERROR:
                return [finding]
            findings.append(finding)
    return findings


async def _check_queue(queues: Queues, queue: str, where: str) -> Finding:
    subject = f"queue {queue}"
    try:
        await queues.list_dead_letters(queue, max_count=1)
    except MessagingEntityNotFoundError:
        return Finding(
            "Service Bus",
            subject,
            Verdict.MISSING,
            "it does not exist",
            fix="infra/ creates the queues: azd provision",
        )
    except (ServiceBusAuthorizationError, ServiceBusAuthenticationError) as error:
        return Finding(
            "Service Bus",
            subject,
            Verdict.MISSING,
            f"the identity may not receive from it: {_first_line(error)}",
            fix=f"az role assignment create --assignee-object-id <the identity's object id> "
            f'--assignee-principal-type ServicePrincipal --role "{_QUEUE_ROLE}" --scope <the namespace id>',
        )
    except (ServiceBusConnectionError, OperationTimeoutError) as error:
        return Finding(
            "Service Bus", "endpoint", Verdict.ERROR, f"cannot reach {where}: {_first_line(error)}"
        )
    except ServiceBusError as error:
        return Finding("Service Bus", subject, Verdict.ERROR, f"the peek failed: {_first_line(error)}")
    except ClientAuthenticationError as error:
        return Finding(
            "Service Bus", "sign-in", Verdict.ERROR, f"cannot sign in to Service Bus: {_first_line(error)}"
        )
    return Finding(
        "Service Bus",
        subject,
        Verdict.OK,
        "receive right (peeked its dead-letter queue); sending is not checked (only a send proves it)",
    )


def _not_configured(area: str, settings: str) -> Finding:
    return Finding(area, "configured", Verdict.SKIPPED, f"not checked: set {settings} to check it")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__

"""The HTTP API, independent of the Functions host: requests in, (status, headers, body) out.

Errors are `application/problem+json` (RFC 9457) with the right status, and never carry a
stack trace or a secret: unexpected errors are logged and answered with a generic 500.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.app.service import ReconcilerService
from reconciler.core.identifiers import ConfigId, IdentifierError, RequestId
from reconciler.documents import InputError
from reconciler.failures import TemporaryFailure
from reconciler.render import report_to_dict

log = logging.getLogger("reconciler.http")
MAX_BODY = 64 * 1024


@dataclass(frozen=True)
class Response:
    status: int
    body: Any
    headers: Mapping[str, str] = field(default_factory=lambda: {"Content-Type": "application/json"})

    def text(self) -> str:
        return json.dumps(self.body, indent=2)


def problem(status: int, title: str, detail: str) -> Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return Response(status, body, {"Content-Type": "application/problem+json"})


def config_id_from_route(raw: str) -> str | None:
    """Config ids hold '/', which a route segment cannot: the API takes them with '~' (or %2F) instead."""
    try:
        return str(ConfigId.from_route(raw))
    except IdentifierError:
        return None


async def reconcile(service: ReconcilerService, body: bytes) -> Response:
    """POST /api/reconcile  {"configIds": [...]} or {"all": true}, optional "dryRun": true."""
    if len(body) > MAX_BODY:
        return problem(413, "Request body too large", f"at most {MAX_BODY} bytes")
    try:
        request = json.loads(body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return problem(400, "Malformed JSON", "the body must be a JSON object")
    if not isinstance(request, dict) or set(request) - {"configIds", "all", "dryRun"}:
        return problem(
            400, "Invalid request", 'expected {"configIds": [...]} or {"all": true}, optional "dryRun"'
        )
    dry_run = request.get("dryRun", False)
    ids = request.get("configIds")
    everything = request.get("all", False)
    if not isinstance(dry_run, bool) or not isinstance(everything, bool):
        return problem(400, "Invalid request", "dryRun and all must be true or false")
    if everything == (ids is not None):
        return problem(400, "Invalid request", 'give exactly one of "configIds" and "all": true')
    if ids is not None and (
        not isinstance(ids, list) or not ids or len(ids) > 100 or not all(isinstance(i, str) for i in ids)
    ):
        return problem(400, "Invalid request", "configIds must be a list of 1 to 100 config ids")
    malformed = [i for i in ids or () if not ConfigId.is_valid(i)]
    if malformed:
        return problem(400, "Invalid config id", f"configIds: {malformed[0]!r:.80} is not a config id")
    try:
        report = await service.reconcile_now(None if everything else ids, dry_run=dry_run)
    except InputError as error:
        return problem(404, "Unknown config", "; ".join(error.problems))
    return Response(200, report_to_dict(report))


async def plan(service: ReconcilerService, raw_id: str) -> Response:
    config_id = config_id_from_route(raw_id)
    if config_id is None:
        return _bad_config_id()
    report = await service.plan_config(config_id)
    if report is None:
        return problem(404, "Unknown config", f"no config {config_id}")
    return Response(200, report_to_dict(report))


async def status(service: ReconcilerService, raw_id: str) -> Response:
    config_id = config_id_from_route(raw_id)
    if config_id is None:
        return _bad_config_id()
    found = await service.status(config_id)
    if found is None:
        return problem(404, "No status", f"config {config_id} has not been reconciled yet, or does not exist")
    return Response(200, _plain(found))


def _bad_config_id() -> Response:
    return problem(
        400, "Invalid config id", "use the id with '~' in place of '/', e.g. contoso~payments~kv-reader"
    )


async def request(service: ReconcilerService, request_id: str) -> Response:
    if not RequestId.is_valid(request_id):
        return problem(400, "Invalid request id", f"expected {RequestId.what}")
    found = await service.request(request_id)
    if found is None:
        return problem(404, "Unknown request", f"no request {request_id}")
    return Response(200, _plain(found))


async def guarded(handler: Any, *args: Any) -> Response:
    """Run a handler; answer temporary trouble with 503 and anything unexpected with a bare 500."""
    try:
        response: Response = await handler(*args)
    except TemporaryFailure as failure:
        return problem(503, "Try again later", failure.message)
    except Exception:
        log.exception("unexpected error in the HTTP API")
        return problem(500, "Internal error", "the error was logged; no details are returned")
    return response


def _plain(value: Any) -> Any:
    """A dataclass record as JSON-ready camelCase."""
    fields = getattr(value, "__dataclass_fields__", None)
    if fields is None:
        return value
    return {_camel(name): getattr(value, name) for name in fields}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)

"""The HTTP API, independent of the Functions host: requests in, (status, headers, body) out.

Errors are `application/problem+json` (RFC 9457) with the right status, and never carry a
stack trace or a secret: unexpected errors are logged and answered with a generic 500. Bad
input is never unexpected: a body is checked for its size, media type, encoding and nesting
depth before it is parsed, and parsed strictly (413, 415, 400).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.app.context import ServiceUnavailable
from reconciler.app.service import ReconcilerService
from reconciler.core.identifiers import ConfigId, IdentifierError, RequestId
from reconciler.documents import InputError, NotText, json_nesting_depth, strict_json_loads
from reconciler.failures import TemporaryFailure
from reconciler.render import report_to_dict
from reconciler.state.tables import ConcurrencyConflict, CorruptRow

log = logging.getLogger("reconciler.http")
MAX_BODY = 64 * 1024
MAX_BODY_DEPTH = 4  # {"configIds": [...]} nests 2 deep
MAX_CONFIG_IDS = 100


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


def json_body(body: bytes, content_type: str | None) -> Any | Response:
    """The parsed JSON body, or the problem response that refuses it (an empty body is `{}`)."""
    if len(body) > MAX_BODY:
        return problem(413, "Request body too large", f"at most {MAX_BODY} bytes")
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    if media_type and media_type != "application/json" and not media_type.endswith("+json"):
        return problem(415, "Unsupported media type", "send the body as application/json")
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        detail = f"the body is not UTF-8 text ({error.reason} at byte {error.start})"
        return problem(400, "Malformed JSON", detail)
    depth = json_nesting_depth(body)
    if depth > MAX_BODY_DEPTH:
        return problem(400, "Malformed JSON", f"the body is nested {depth} deep, at most {MAX_BODY_DEPTH}")
    try:
        return strict_json_loads(text or "{}")
    except NotText:
        return problem(400, "Malformed JSON", "a string holds a lone surrogate")
    except (ValueError, RecursionError) as error:  # duplicate keys, NaN, numbers out of range
        return problem(400, "Malformed JSON", f"the body must be a JSON object: {str(error)[:200]}")


async def reconcile(service: ReconcilerService, body: bytes, content_type: str | None = None) -> Response:
    """POST /api/reconcile  {"configIds": [...]} or {"all": true}, optional "dryRun": true."""
    request = json_body(body, content_type)
    if isinstance(request, Response):
        return request
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
        not isinstance(ids, list)
        or not 0 < len(ids) <= MAX_CONFIG_IDS
        or not all(isinstance(i, str) for i in ids)
    ):
        return problem(
            400, "Invalid request", f"configIds must be a list of 1 to {MAX_CONFIG_IDS} config ids"
        )
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
        return _bad_config_id(raw_id)
    report = await service.plan_config(config_id)
    if report is None:
        return problem(404, "Unknown config", f"no config {config_id}")
    return Response(200, report_to_dict(report))


async def status(service: ReconcilerService, raw_id: str) -> Response:
    config_id = config_id_from_route(raw_id)
    if config_id is None:
        return _bad_config_id(raw_id)
    found = await service.status(config_id)
    if found is None:
        return problem(404, "No status", f"config {config_id} has not been reconciled yet, or does not exist")
    return Response(200, _plain(found))


async def history(service: ReconcilerService, raw_id: str) -> Response:
    """GET /api/configs/{id}/history: the drift repaired for the config, newest first, with its
    source and who made the change (docs/events.md)."""
    config_id = config_id_from_route(raw_id)
    if config_id is None:
        return _bad_config_id(raw_id)
    repairs = await service.history(config_id)
    if repairs is None:
        return problem(404, "Unknown config", f"no config {config_id}")
    return Response(200, {"configId": config_id, "repairs": [r.as_json() for r in repairs]})


def _bad_config_id(raw: str) -> Response:
    shown = repr(raw) if len(raw) <= 80 else repr(raw[:77]) + "..."
    return problem(
        400,
        "Invalid config id",
        f"{shown} is not a config id: expected {ConfigId.what}, with '~' in place of '/', "
        "e.g. contoso~payments~kv-reader",
    )


async def request(service: ReconcilerService, request_id: str) -> Response:
    if not RequestId.is_valid(request_id):
        return problem(400, "Invalid request id", f"expected {RequestId.what}")
    found = await service.request(request_id)
    if found is None:
        return problem(404, "Unknown request", f"no request {request_id}")
    return Response(200, _plain(found))


async def answer(
    get_service: Callable[[], Awaitable[ReconcilerService]], handler: Any, *args: Any
) -> Response:
    """`guarded(handler, service, *args)` with the worker's service; a service that cannot start
    (a wrong setting: 500, an unreachable store: 503) is a problem answer, never a stack trace."""
    try:
        service = await get_service()
    except ServiceUnavailable as error:  # already logged, as one line, by the context
        return problem(503 if error.temporary else 500, "Service unavailable", error.public)
    return await guarded(handler, service, *args)


async def guarded(handler: Any, *args: Any) -> Response:
    """Run a handler; answer temporary trouble with 503 and anything unexpected with a bare 500."""
    try:
        response: Response = await handler(*args)
    except TemporaryFailure as failure:
        return problem(503, "Try again later", failure.message)
    except ConcurrencyConflict:  # a row changed under the call (another writer, a person): not a bug
        return problem(409, "Conflict", "a stored row changed while the call ran; send it again")
    except CorruptRow as corrupt:  # a row edited by hand: say which, without a stack trace
        log.error("%s", corrupt.row)
        return problem(500, "Unreadable row", str(corrupt.row)[:1_000])
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

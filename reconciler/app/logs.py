"""Log lines that say which request and which configs they are about.

The service sets the context once per ticket or reconcile (`log_context(...)`); a filter on the
`reconciler` logger stamps it onto every record, as attributes (`request_id`, `config_ids`) for
handlers that keep them (OpenTelemetry's exporter turns them into custom dimensions) and at the
end of the message for those that keep only the text (the Functions host's log stream).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

# Levels by Python logger. The Functions host files every line of the Python worker under one
# category, Function.<function name>.User, whatever logger wrote it, so host.json cannot tell the
# reconciler from the Azure SDKs (whose INFO lines log every HTTP request and token): the levels are
# set here, and host.json passes the Function category at Information (docs/deploy.md, "Logs").
LOGGER_LEVELS = {"reconciler": logging.INFO, "azure": logging.WARNING}

_request_id: ContextVar[str] = ContextVar("request_id", default="")
_config_ids: ContextVar[tuple[str, ...]] = ContextVar("config_ids", default=())
MAX_IDS_IN_TEXT = 5


@contextmanager
def log_context(*, request_id: str | None = None, config_ids: Sequence[str] | None = None) -> Iterator[None]:
    request_token = _request_id.set(request_id) if request_id is not None else None
    configs_token = _config_ids.set(tuple(config_ids)) if config_ids is not None else None
    try:
        yield
    finally:
        if configs_token is not None:
            _config_ids.reset(configs_token)
        if request_token is not None:
            _request_id.reset(request_token)


def current_context() -> tuple[str, tuple[str, ...]]:
    """The request id and config ids set by the innermost log_context (empty when none is)."""
    return _request_id.get(), _config_ids.get()


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        request_id, config_ids = _request_id.get(), _config_ids.get()
        record.request_id = request_id
        record.config_ids = ",".join(config_ids)
        if request_id or config_ids:
            shown = ",".join(config_ids[:MAX_IDS_IN_TEXT]) + (
                "..." if len(config_ids) > MAX_IDS_IN_TEXT else ""
            )
            record.msg = f"{record.getMessage()} [request={request_id or '-'} configs={shown or '-'}]"
            record.args = ()
        return True


def install() -> None:
    """Set LOGGER_LEVELS and stamp the context on every record of the `reconciler` loggers (idempotent).

    A logger's filters see only records logged on that logger, not its children's, so the
    filter goes on each one that exists (call this after importing the modules that log).
    """
    for name, level in LOGGER_LEVELS.items():
        logging.getLogger(name).setLevel(level)
    names = [n for n in logging.Logger.manager.loggerDict if n == "reconciler" or n.startswith("reconciler.")]
    for name in {"reconciler", *names}:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ContextFilter) for f in logger.filters):
            logger.addFilter(ContextFilter())

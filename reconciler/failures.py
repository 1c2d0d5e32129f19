"""Failures carry the retry decision, as the adapters classify them.

Temporary: throttling, 5xx, a dropped connection, replication delay (a principal that
is not visible yet). Try again after `retry_after` seconds. Permanent: policy, limits,
permissions, invalid input. Retrying cannot help; a person must act on the message.

What an HTTP status means is decided here once (`failure_for_status`, `retry_after_seconds`);
each adapter states only its API's own cases (a conflict code, a replication delay) before it.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

DEFAULT_RETRY_AFTER = 30.0
CONNECTION_ERROR = "ConnectionError"  # the code of a failure whose API could not be reached at all
_SECONDS = re.compile(r"[0-9]{1,9}(\.[0-9]{1,6})?")  # RFC 9110 delay-seconds, and decimals some APIs send


class Failure(Exception):
    """A write or read that did not succeed, with what to do about it."""

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class TemporaryFailure(Failure):
    def __init__(
        self,
        message: str,
        *,
        retry_after: float = DEFAULT_RETRY_AFTER,
        code: str = "",
        status: int | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.retry_after = retry_after


class PermanentFailure(Failure):
    """Retrying cannot help: a person must act on the message."""


class NotFound(PermanentFailure):
    """The object does not exist (deletes treat this as success)."""


class Conflict(PermanentFailure):
    """The write clashes with an existing object; the engine re-reads and may adopt it."""

    def __init__(
        self, message: str, *, code: str = "", status: int | None = None, existing_id: str = ""
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.existing_id = existing_id


def is_temporary_status(status: int) -> bool:
    """Whether an HTTP status says "try again later": a timeout, throttling, or a server error."""
    return status in {408, 429} or status >= 500


def failure_for_status(
    status: int, message: str, *, code: str = "", retry_after: float = DEFAULT_RETRY_AFTER
) -> Failure:
    """The failure an HTTP error status means, the same for every API.

    404 is NotFound (deletes treat it as done); 408, 429 and 5xx are temporary, to retry after
    `retry_after` seconds; everything else is permanent. What one API means beyond that (a
    conflict code, a replication delay) each adapter states before calling this.
    """
    if status == 404:
        return NotFound(message, code=code, status=status)
    if is_temporary_status(status):
        return TemporaryFailure(message, retry_after=retry_after, code=code, status=status)
    return PermanentFailure(message, code=code, status=status)


def retry_after_seconds(value: str | None, default: float, *, now: datetime | None = None) -> float:
    """The delay a `Retry-After` header asks for, in seconds (RFC 9110, section 10.2.3).

    The header is either a number of seconds or an HTTP date; a date in the past means now.
    A missing or unreadable header gives `default`: a bad header must not turn a retry into a crash.
    """
    text = (value or "").strip()
    if not text:
        return default
    if _SECONDS.fullmatch(text):
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return default
    if when.tzinfo is None:  # RFC 850 and asctime dates carry no zone: HTTP dates are always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())

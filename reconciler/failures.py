"""Failures carry the retry decision, as the adapters classify them.

Temporary: throttling, 5xx, a dropped connection, replication delay (a principal that
is not visible yet). Try again after `retry_after` seconds. Permanent: policy, limits,
permissions, invalid input. Retrying cannot help; a person must act on the message.
"""

from __future__ import annotations

DEFAULT_RETRY_AFTER = 30.0


class Failure(Exception):
    """A write or read that did not succeed, with what to do about it."""

    temporary: bool = False

    def __init__(self, message: str, *, code: str = "", status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


class TemporaryFailure(Failure):
    temporary = True

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
    temporary = False


class NotFound(PermanentFailure):
    """The object does not exist (deletes treat this as success)."""


class Conflict(PermanentFailure):
    """The write clashes with an existing object; the engine re-reads and may adopt it."""

    def __init__(
        self, message: str, *, code: str = "", status: int | None = None, existing_id: str = ""
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.existing_id = existing_id

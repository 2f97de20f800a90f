"""The one exception type the DSL raises for a bad document, sample or architecture."""
from __future__ import annotations

from typing import Any

__all__ = ["DSLError", "RunError", "UsageError"]


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class DSLError(ValueError):
    """A document, sample or architecture is not valid.

    The message is one line: ``FILE: PATH: got VALUE; allowed: WHAT``. The parts are also
    attributes so callers (the CLI, tests) can read them without parsing the message.

    Attributes:
        file: the document's file name, or ``None`` for in-memory documents.
        path: slash-separated path of the field inside the document (``blocks/2/layers/0/kernel``).
        value: the offending value.
        allowed: a human-readable description of what is allowed.
    """

    def __init__(
        self,
        path: str,
        value: Any,
        allowed: str,
        *,
        file: str | None = None,
        reason: str | None = None,
    ) -> None:
        self.path = path
        self.value = value
        self.allowed = allowed
        self.file = file
        self.reason = reason
        super().__init__(self._message())

    def _message(self) -> str:
        where = f"{self.file}: " if self.file else ""
        field = self.path or "<document>"
        reason = f"{self.reason}; " if self.reason else ""
        return f"{where}{field}: {reason}got {_short(self.value)}; allowed: {self.allowed}"

    def with_file(self, file: str | None) -> "DSLError":
        """Return the same error attributed to ``file`` (kept if already set)."""
        if self.file or not file:
            return self
        return DSLError(self.path, self.value, self.allowed, file=file, reason=self.reason)


class UsageError(Exception):
    """A mistake in a command line or its arguments: ``xnas`` prints it on one line and exits with 2."""


class RunError(ValueError):
    """A run cannot be opened as asked (bad name, a config that differs from the stored one, nothing
    to resume). ``field`` names the argument (``name``, ``resume``, ``driver``, ``config.<key>``); the
    message is ``FIELD: got ...; allowed: ...``. The command line reports it with its flag's name."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.detail = message
        super().__init__(f"{field}: {message}")

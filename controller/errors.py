"""Error types of the Dyncast core: every rejected input raises one of these, naming the field."""

from __future__ import annotations


class DyncastError(Exception):
    """Base of every error the core raises on purpose."""


class ValidationError(DyncastError):
    """Input that is malformed or out of range; `field` names where it was found."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigError(ValidationError):
    """A configuration file that cannot be used; the message names the file and the key."""

    def __init__(self, source: str, field: str, message: str) -> None:
        super().__init__(field, message)
        self.source = source
        self.args = (f"{source}: {field}: {message}",)


class NotFound(DyncastError):
    """A reference to a service or instance that does not exist."""

    def __init__(self, what: str, key: str, field: str | None = None) -> None:
        super().__init__(f"unknown {what}: {key}")
        self.what = what
        self.key = key
        self.field = what if field is None else field  # the request's field that names it


class Conflict(DyncastError):
    """A request that contradicts existing state (a duplicate D-SID or D-BID); `field` names
    the field in conflict."""

    def __init__(self, message: str, field: str = "body") -> None:
        super().__init__(message)
        self.field = field


class QuotaExceeded(DyncastError):
    """A request that would pass a configured quota; `limit` names it (`limits.max_...`)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(f"{limit}: {message}")
        self.limit = limit

"""The one error type of the auth package: an HTTP status, the field at fault and why."""

from __future__ import annotations

from controller.errors import DyncastError


class AuthError(DyncastError):
    """A request refused before it reaches the API: 401 (who are you?), 403 (not yours),
    415 (not JSON) or 429 (an agent's quota); `field` names the header or body field."""

    def __init__(self, status: int, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message

    def body(self) -> dict[str, str]:
        """The JSON reply, shaped like the API's other errors."""
        return {"error": str(self), "field": self.field}


class UnknownCredential(AuthError):
    """A 401 for an agent or token the tables do not hold (the shell may re-read them)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(401, field, message)

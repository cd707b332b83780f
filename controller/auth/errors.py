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

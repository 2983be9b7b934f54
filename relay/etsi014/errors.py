"""Failures a 014 key-delivery backend can report, one class per HTTP status the spec defines.

Backends raise these; the server turns them into the status code and Error body of clause 5, so a
backend never has to know about HTTP.
"""

from __future__ import annotations

from typing import Any

JsonObject = dict[str, Any]


class Etsi014Error(Exception):
    """Base of the errors a backend or the server reports to an SAE."""

    http_status = 503

    def __init__(self, message: str, details: list[JsonObject] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ValidationError(Etsi014Error, ValueError):
    """Bad request format or values (400)."""

    http_status = 400


class UnauthorizedError(Etsi014Error):
    """The calling SAE may not do this (401): unknown SAE, or a key that was not issued to it."""

    http_status = 401


class UnavailableError(Etsi014Error):
    """Error on the server side (503): no key material, link halted, dependency down."""

    http_status = 503


class KeysInDelivery(UnavailableError):
    """dec_keys for keys another request is handing out right now (503): they come back if it fails."""

    def __init__(self) -> None:
        super().__init__("one or more keys are being delivered on another request; retry")

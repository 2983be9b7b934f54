"""RFC 9457 problem details with the problem types of ETSI GS QKD 020 V1.1.1.

Every 020 error leaves as ``application/problem+json``-shaped JSON whose ``status`` equals the HTTP code
and whose ``details`` is an object of strings (the spec's schema), so a peer KME can act on the type
URI without parsing prose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TYPE_PREFIX = "https://qkd.etsi.org/gs020-interop-kms/"


@dataclass(frozen=True)
class ProblemType:
    slug: str
    title: str

    @property
    def uri(self) -> str:
        return TYPE_PREFIX + self.slug


MISSING_PARAMETERS = ProblemType("missing-parameters", "missing parameters")
INVALID_PARAMETER = ProblemType("invalid-parameter", "invalid parameter format")
KEY_ROUTING_ERROR = ProblemType("key-routing-error", "key routing error")
VOID_NOT_UNDERSTOOD = ProblemType("void-request-not-understood", "void request not understood")
NO_KEY_IDS_OR_CONFIRMATION = ProblemType("no-key-ids-or-confirmation", "no key ids or confirmation")
ACK_NOT_UNDERSTOOD = ProblemType("ack-not-understood", "ack not understood")
KEY_NOT_PRESENT = ProblemType("key-not-present", "key not present")
UNAUTHORIZED = ProblemType("unauthorized", "unauthorized")
TIMEOUT = ProblemType("timeout", "timeout")
SERVER_SIDE_ERROR = ProblemType("server-side-general-error", "server side general error")
INSUFFICIENT_KEY_MATERIAL = ProblemType("insufficient-key-material", "insufficient key material")
UNSUPPORTED_MANDATORY_EXTENSION = ProblemType("unsupported-mandatory-extension", "unsupported mandatory extension")


@dataclass
class Problem(Exception):
    """An 020 failure: raised anywhere below the HTTP layer, rendered once by the server."""

    status: int
    kind: ProblemType
    details: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.kind.title}: {self.details}")

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.kind.uri, "status": self.status, "title": self.kind.title}
        if self.details:
            body["details"] = {name: str(text)[:1024] for name, text in self.details.items()}
        return body


def invalid(detail_name: str, message: str) -> Problem:
    """The 400 for a request whose format is wrong (the peer must not assume any key association)."""
    return Problem(400, INVALID_PARAMETER, {detail_name: message})

"""RFC 9457 problem details with the problem types of ETSI GS QKD 020 V1.1.1.

Every 020 error leaves as RFC 9457 members in an ``application/json`` body (the spec's media type for
every body, errors included) whose ``status`` equals the HTTP code
and whose ``details`` is an object of strings (the spec's schema), so a peer KME can act on the type
URI without parsing prose.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import ConfigDict, Field

from relay.wire import WIRE_CONFIG, WireCodec

MAX_DETAIL = 1024
MAX_DETAILS = 1024  # members of ``details``
MAX_PROBLEM_TEXT = 1024  # ``type`` and ``title``
TYPE_PREFIX = "https://qkd.etsi.org/gs020-interop-kms/"


@dataclass(frozen=True)
class ProblemType:
    uri: str
    title: str


def _etsi(slug: str, title: str) -> ProblemType:
    return ProblemType(TYPE_PREFIX + slug, title)


MISSING_PARAMETERS = _etsi("missing-parameters", "missing parameters")
INVALID_PARAMETER = _etsi("invalid-parameter", "invalid parameter format")
KEY_ROUTING_ERROR = _etsi("key-routing-error", "key routing error")
VOID_NOT_UNDERSTOOD = _etsi("void-request-not-understood", "void request not understood")
NO_KEY_IDS_OR_CONFIRMATION = _etsi("no-key-ids-or-confirmation", "no key ids or confirmation")
ACK_NOT_UNDERSTOOD = _etsi("ack-not-understood", "ack not understood")
KEY_NOT_PRESENT = _etsi("key-not-present", "key not present")
UNAUTHORIZED = _etsi("unauthorized", "unauthorized")
TIMEOUT = _etsi("timeout", "timeout")
SERVER_SIDE_ERROR = _etsi("server-side-general-error", "server side general error")
INSUFFICIENT_KEY_MATERIAL = _etsi("insufficient-key-material", "insufficient key material")
UNSUPPORTED_MANDATORY_EXTENSION = _etsi("unsupported-mandatory-extension", "unsupported mandatory extension")
# RFC 9457 section 4.2.1: a problem that is nothing more than its HTTP status (unknown path, method).
HTTP_STATUS_ONLY = ProblemType("about:blank", "")


@dataclass
class Problem(Exception):
    """An 020 failure: raised anywhere below the HTTP layer, rendered once by the server."""

    status: int
    kind: ProblemType
    details: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(f"{self.status} {self.kind.title}: {self.details}")

    def to_json(self) -> dict[str, Any]:
        details = {name: str(text)[:MAX_DETAIL] for name, text in self.details.items()} or None
        return PROBLEM_DETAILS.to_json(ProblemDetails(self.kind.uri, self.status, self.kind.title, details))


@dataclass(frozen=True)
class ProblemDetails:
    """The spec's ``problem_details``, as loose as the spec: only ``type`` is required, so a foreign KME's
    problem parses whatever it leaves out, and, as RFC 9457 allows, members it adds (``instance``,
    extension members). Our own problems always send ``status`` and ``title`` too, and cut each detail to
    ``MAX_DETAIL`` characters (the spec bounds neither)."""

    __pydantic_config__ = ConfigDict(**{**WIRE_CONFIG, "extra": "allow"})

    type: Annotated[
        str,
        Field(max_length=MAX_PROBLEM_TEXT, json_schema_extra={"format": "uri"}, description="A problem type URI."),
    ]
    status: Annotated[int | None, Field(ge=100, le=599)] = None
    title: Annotated[str | None, Field(max_length=MAX_PROBLEM_TEXT)] = None
    details: Annotated[dict[str, str] | None, Field(min_length=1, max_length=MAX_DETAILS)] = None


PROBLEM_DETAILS: WireCodec[ProblemDetails] = WireCodec(ProblemDetails)

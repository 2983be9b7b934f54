"""Why a relay failed, in terms both the northbound APIs (503 with a message) and gRPC peers can act on.

``retryable`` tells the originating gateway whether a fresh key on a freshly computed route may succeed
(a peer that did not answer, an interrupted transfer); a policy refusal such as an exhausted
``require-qkd`` link is final for this request, because routing around it over a weaker path would be a
silent downgrade. The originator still retries an exhausted lane found on the way once, with a new key:
the refusal reported the dry lane, so the next route avoids it if another allowed one exists, and
otherwise it is refused before start (:class:`RouteDry`) without spending key.
"""

from __future__ import annotations


class RelayFailed(Exception):
    def __init__(self, message: str, *, retryable: bool, down_link: tuple[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.down_link = down_link  # a link found unreachable, so the originator routes around it


class QkdExhausted(RelayFailed):
    """A ``require-qkd`` link has no QKD key left: stall with 503 rather than degrade."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class RouteDry(QkdExhausted):
    """Refused before starting: every allowed route crosses a QKD lane known dry (no QKD key was spent)."""


class TransferRefused(Exception):
    """A hop request this gateway must not process (wrong peer, malformed path, unknown SAE)."""


class TransferInProgress(Exception):
    """The same transfer is being processed right now; the sender should retry the same message later."""

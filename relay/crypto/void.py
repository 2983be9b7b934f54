"""Signed voids: only the gateway that put keys on a path may withdraw them, and only once.

A void withdraws relayed keys waiting for a target SAE at the last gateway of a path. The origin of the
path (``path[0]``) signs it with its ML-DSA identity, context ``QKDRELAY-v1/void``, over this transcript
(each field as ``u32be(len) || bytes``, :mod:`relay.crypto.encoding`):

    label "QKDRELAY-v1" | "void" | scope ("all" or "ids") | enc(key_ID, ...) | initiator SAE ID |
    target SAE ID | enc(gateway ID, ...) | nonce (32) | issued at, ms (u64)

Lists are encoded field by field inside one field, and texts are strict UTF-8, so two different voids
never share a transcript; the explicit scope keeps "every key of the pair" apart from a list of key_IDs
whatever the list holds. The final gateway calls :func:`verify_void` before touching any key: the
timestamp must lie within the hops' window (two minutes), the signature must verify under the pinned identity of
``path[0]``, and only then is the nonce recorded in the replay guard (so forgeries cannot burn nonces).
A recorded void replayed later is refused while fresh and by the window afterwards. Gateways in the
middle of the path may call :func:`check_void` (no replay guard) to refuse a forgery early.

In the replay guard a void is its nonce: nonces are 32 bytes and frame IDs 16, so a void never shares an
ID with a frame.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass

from relay.crypto.clock import Clock
from relay.crypto.encoding import encode_fields, encode_uint
from relay.crypto.errors import BadSignature, MalformedMessage, PolicyViolation, ReplayedMessage, StaleMessage
from relay.crypto.frame import DEFAULT_WINDOW_MS
from relay.crypto.header import LABEL, NONCE_SIZE
from relay.crypto.identity import GatewayIdentity, TrustStore
from relay.crypto.replay import ReplayGuard

SIGNATURE_CONTEXT = LABEL + b"/void"
_KIND = b"void"
_ALL, _IDS = b"all", b"ids"


@dataclass(frozen=True)
class VoidOrder:
    """What a void withdraws: ``key_ids`` (empty: every key of the pair relayed along ``path``)."""

    key_ids: tuple[str, ...]
    initiator_sae_id: str
    target_sae_id: str
    path: tuple[str, ...]
    nonce: bytes
    issued_at_ms: int

    @property
    def origin(self) -> str:
        """The gateway that signs the void: the one that relayed the keys along ``path``."""
        return self.path[0]

    def transcript(self) -> bytes:
        """The signed bytes; raises :class:`MalformedMessage` for an order that has no canonical encoding."""
        if len(self.nonce) != NONCE_SIZE:
            raise MalformedMessage(f"void nonce must be {NONCE_SIZE} bytes, got {len(self.nonce)}")
        if not self.path:
            raise MalformedMessage("a void names the path of the keys it withdraws")
        if not 0 <= self.issued_at_ms < 1 << 64:
            raise MalformedMessage("void issue time must fit in u64")
        return encode_fields(
            LABEL,
            _KIND,
            _IDS if self.key_ids else _ALL,
            encode_fields(*(key_id.encode() for key_id in self.key_ids)),
            self.initiator_sae_id.encode(),
            self.target_sae_id.encode(),
            encode_fields(*(gateway.encode() for gateway in self.path)),
            self.nonce,
            encode_uint(self.issued_at_ms, 8),
        )


def new_void_order(
    key_ids: tuple[str, ...],
    initiator_sae_id: str,
    target_sae_id: str,
    path: tuple[str, ...],
    *,
    clock: Clock,
    randbytes: Callable[[int], bytes] = os.urandom,
) -> VoidOrder:
    """A void issued now, with a fresh nonce."""
    return VoidOrder(key_ids, initiator_sae_id, target_sae_id, path, randbytes(NONCE_SIZE), clock())


def sign_void(order: VoidOrder, identity: GatewayIdentity) -> bytes:
    """The origin's signature; a gateway signs only voids of paths it starts."""
    if order.origin != identity.gateway_id:
        raise PolicyViolation(f"{identity.gateway_id} cannot sign a void of a path starting at {order.origin}")
    return identity.sign(order.transcript(), SIGNATURE_CONTEXT)


def check_void(
    order: VoidOrder, signature: bytes, *, trust: TrustStore, clock: Clock, window_ms: int = DEFAULT_WINDOW_MS
) -> None:
    """Freshness and the origin's signature, without the replay guard; every refusal is a :class:`HopError`."""
    transcript = order.transcript()
    now = clock()
    if abs(now - order.issued_at_ms) > window_ms:
        raise StaleMessage(f"void was issued {now - order.issued_at_ms} ms ago; window is {window_ms} ms")
    if not trust.get(order.origin).verify(signature, transcript, SIGNATURE_CONTEXT):
        raise BadSignature(f"void signature does not verify for its origin {order.origin!r}")


async def verify_void(
    order: VoidOrder,
    signature: bytes,
    *,
    trust: TrustStore,
    replay: ReplayGuard,
    clock: Clock,
    window_ms: int = DEFAULT_WINDOW_MS,
) -> None:
    """Everything :func:`check_void` checks, then accept the nonce at most once (:class:`ReplayedMessage`)."""
    check_void(order, signature, trust=trust, clock=clock, window_ms=window_ms)
    if not await replay.check_and_remember(order.nonce, order.issued_at_ms + window_ms - clock() + 1):
        raise ReplayedMessage(f"void {order.nonce.hex()[:16]}... from {order.origin} was already accepted")

"""Typed failures of the crypto layer.

Callers decide what to do from the exception type alone (answer 4xx, void a transfer, raise an alarm), so
every failure mode a peer can provoke has its own class. Messages name fields and identifiers, never key
material, because they end up in logs.
"""


class CryptoError(Exception):
    """Root of every error raised by :mod:`relay.crypto`."""


class KemError(CryptoError):
    """An ML-KEM input (encapsulation key or ciphertext) was rejected by the provider."""


class ProviderUnavailable(CryptoError):
    """A KEM provider was requested that cannot be used on this host (e.g. no liboqs library)."""


class KeyFileError(CryptoError):
    """A key file is missing, already exists, has the wrong size or is readable by others."""


class AtRestError(CryptoError):
    """A stored blob failed authentication: tampered, truncated, or read under the wrong name."""


class TrustError(CryptoError):
    """A peer identity or a signed encapsulation key could not be trusted."""


class BadAnnouncement(TrustError):
    """A signed encapsulation-key announcement is malformed or its signature does not verify."""


class ExpiredAnnouncement(TrustError):
    """An encapsulation key is past its not_after time."""


class HopError(CryptoError):
    """A hop message was refused; the transfer must not proceed on this message."""


class UnknownPeer(TrustError, HopError):
    """The gateway ID is not pinned in the trust store.

    Raised both when verifying announcements and when opening hops, hence both parents.
    """


class MalformedMessage(HopError):
    """The bytes do not decode to a well-formed header or hop message."""


class BadSignature(HopError):
    """The ML-DSA signature over the hop transcript does not verify."""


class StaleMessage(HopError):
    """The header timestamp is outside the accepted time window."""


class ReplayedMessage(HopError):
    """This frame_id (or void nonce) was already accepted."""


class DecryptionFailed(HopError):
    """The wrapped key did not authenticate under the derived key (wrong QKD key or ML-KEM secret)."""


class WrongRecipient(HopError):
    """The header names another gateway as receiver."""


class WrongSender(HopError):
    """The header's sender differs from the peer the transport authenticated."""


class UnknownEncapsulationKey(HopError):
    """The header references an encapsulation key this gateway does not hold (unknown or retired)."""


class PolicyViolation(HopError):
    """The message or the request contradicts the link policy (mode, suite, QKD key presence or size)."""


class ConfirmationFailed(HopError):
    """The receiver's key confirmation does not match what the sender expects."""

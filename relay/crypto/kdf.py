"""The frame key combiner: HKDF over the ML-KEM secret and the QKD key, bound to the whole transcript.

    prk             = HKDF-Extract(salt = enc(FRAME_LABEL, suite), IKM = ss || k_q)
    k_enc || k_conf = HKDF-Expand(prk, info = FRAME_LABEL || " keys" || th, 64)
    th              = H(enc(header, ct))      (computed by relay.crypto.frame, H = the suite hash)

This is ETSI TS 103 744 CatKDF with an empty PSK (k1 = ss, k2 = k_q) and the NIST SP 800-227 eq. (14)
combiner: k_enc stays secret if either ss or k_q does. For pqc-only frames k_q is absent and the header says
so, which keeps IKM unambiguous. IKM is 32 or 64 bytes and info is 54 (suite A) or 70 (suite B) bytes, so
IKM never equals info || 0x01 (the HKDF condition cited by draft-irtf-cfrg-hybrid-kems).
"""

from dataclasses import dataclass, field

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

from relay.crypto.encoding import encode_fields
from relay.crypto.header import FRAME_LABEL
from relay.crypto.kem import SHARED_SECRET_SIZE
from relay.crypto.suites import Suite

KEY_SIZE = 32
QKD_KEY_SIZE = 32


@dataclass(frozen=True)
class HopKeys:
    """The AES-256-GCM key and the key-confirmation key of one hop; call :meth:`wipe` when done."""

    encryption_key: bytearray = field(repr=False)
    confirmation_key: bytearray = field(repr=False)

    def wipe(self) -> None:
        """Overwrite our copies; CPython and OpenSSL may still hold others, so this is best effort."""
        for key in (self.encryption_key, self.confirmation_key):
            key[:] = bytes(len(key))


def extract(algorithm: hashes.HashAlgorithm, salt: bytes, ikm: bytes | bytearray) -> bytes:
    """HKDF-Extract (RFC 5869 s2.2)."""
    return HKDF.extract(algorithm, salt, ikm)


def expand_into(algorithm: hashes.HashAlgorithm, prk: bytes, info: bytes, out: bytearray) -> None:
    """HKDF-Expand (RFC 5869 s2.3) into a caller-owned buffer so the output can be wiped."""
    HKDFExpand(algorithm, len(out), info).derive_into(prk, out)


def derive_hop_keys(suite: Suite, shared_secret: bytes, qkd_key: bytes | None, th: bytes) -> HopKeys:
    """Combine the ML-KEM secret and the optional QKD key into (k_enc, k_conf), bound to th."""
    if len(shared_secret) != SHARED_SECRET_SIZE:
        raise ValueError(f"ML-KEM shared secret must be {SHARED_SECRET_SIZE} bytes")
    if qkd_key is not None and len(qkd_key) != QKD_KEY_SIZE:
        raise ValueError(f"QKD key must be {QKD_KEY_SIZE} bytes")
    if len(th) != suite.hash_size:
        raise ValueError(f"transcript hash must be {suite.hash_size} bytes")
    ikm = bytearray(shared_secret)
    if qkd_key is not None:
        ikm += qkd_key
    okm = bytearray(2 * KEY_SIZE)
    try:
        prk = extract(suite.hash, encode_fields(FRAME_LABEL, suite.id.encode()), ikm)
        expand_into(suite.hash, prk, FRAME_LABEL + b" keys" + th, okm)
        return HopKeys(okm[:KEY_SIZE], okm[KEY_SIZE:])
    finally:
        ikm[:] = bytes(len(ikm))
        okm[:] = bytes(len(okm))

"""HKDF against RFC 5869, the frame combiner's layout under FRAME_LABEL, and the properties it relies on."""

import hmac
import os

import pytest
from cryptography.hazmat.primitives import hashes

from relay.crypto.encoding import encode_fields
from relay.crypto.header import FRAME_LABEL, LABEL
from relay.crypto.kdf import derive_hop_keys, expand_into, extract
from relay.crypto.suites import SUITE_A, SUITE_B, Suite

# RFC 5869 Appendix A.1-A.3 (SHA-256): ikm, salt, info, L, PRK, OKM.
RFC5869 = [
    (
        "0b" * 22,
        "000102030405060708090a0b0c",
        "f0f1f2f3f4f5f6f7f8f9",
        42,
        "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
    ),
    (
        bytes(range(0x00, 0x50)).hex(),
        bytes(range(0x60, 0xB0)).hex(),
        bytes(range(0xB0, 0x100)).hex(),
        82,
        "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
        "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
        "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
        "cc30c58179ec3e87c14c01d5c1f3434f1d87",
    ),
    (
        "0b" * 22,
        "",
        "",
        42,
        "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
        "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
    ),
]


@pytest.mark.parametrize(("ikm", "salt", "info", "length", "prk", "okm"), RFC5869, ids=["A.1", "A.2", "A.3"])
def test_rfc5869_sha256(ikm: str, salt: str, info: str, length: int, prk: str, okm: str) -> None:
    assert extract(hashes.SHA256(), bytes.fromhex(salt), bytes.fromhex(ikm)).hex() == prk
    out = bytearray(length)
    expand_into(hashes.SHA256(), bytes.fromhex(prk), bytes.fromhex(info), out)
    assert out.hex() == okm


@pytest.mark.parametrize("suite", [SUITE_A, SUITE_B], ids=["suiteA", "suiteB"])
def test_every_input_changes_both_keys(suite: Suite) -> None:
    """k_enc and k_conf depend on ss, k_q and th, so no input can be left out or swapped silently."""
    ss, qkd, th = os.urandom(32), os.urandom(32), os.urandom(suite.hash_size)
    base = derive_hop_keys(suite, ss, qkd, th)
    variants = [
        derive_hop_keys(suite, os.urandom(32), qkd, th),
        derive_hop_keys(suite, ss, os.urandom(32), th),
        derive_hop_keys(suite, ss, None, th),
        derive_hop_keys(suite, ss, qkd, os.urandom(suite.hash_size)),
        derive_hop_keys(suite, qkd, ss, th),
    ]
    for variant in variants:
        assert variant.encryption_key != base.encryption_key
        assert variant.confirmation_key != base.confirmation_key
    assert base.encryption_key != base.confirmation_key
    assert derive_hop_keys(suite, ss, qkd, th) == base


def _hmac_hkdf(suite: Suite, salt: bytes, ikm: bytes, info: bytes) -> bytes:
    """RFC 5869 with 64 output bytes, written out with HMAC: the first 64 bytes of T(1) || T(2)."""
    prk = hmac.digest(salt, ikm, suite.hash.name)
    first = hmac.digest(prk, info + b"\x01", suite.hash.name)
    return (first + hmac.digest(prk, first + info + b"\x02", suite.hash.name))[:64]


@pytest.mark.parametrize("suite", [SUITE_A, SUITE_B], ids=["suiteA", "suiteB"])
@pytest.mark.parametrize("with_qkd", [True, False], ids=["qkd+pqc", "pqc-only"])
def test_combiner_layout_under_the_frame_label(suite: Suite, with_qkd: bool) -> None:
    """salt = enc(FRAME_LABEL, suite id), IKM = ss || k_q (ss alone on pqc-only), info = label " keys" || th."""
    assert FRAME_LABEL == b"QKDRELAY-v2/frame" and LABEL == b"QKDRELAY-v1"
    ss, qkd, th = os.urandom(32), os.urandom(32), os.urandom(suite.hash_size)
    keys = derive_hop_keys(suite, ss, qkd if with_qkd else None, th)
    expected = _hmac_hkdf(
        suite,
        encode_fields(FRAME_LABEL, suite.id.encode()),
        ss + (qkd if with_qkd else b""),
        FRAME_LABEL + b" keys" + th,
    )
    assert bytes(keys.encryption_key) + bytes(keys.confirmation_key) == expected
    v1 = _hmac_hkdf(
        suite, encode_fields(LABEL, suite.id.encode()), ss + (qkd if with_qkd else b""), LABEL + b" keys" + th
    )
    assert v1 != expected  # frames and the v1 one-key hops never share keys


@pytest.mark.parametrize("suite", [SUITE_A, SUITE_B], ids=["suiteA", "suiteB"])
def test_ikm_never_equals_info_then_0x01(suite: Suite) -> None:
    """The HKDF condition of draft-irtf-cfrg-hybrid-kems: IKM (32 or 64 bytes) differs in length from info || 1."""
    info_size = len(FRAME_LABEL + b" keys") + suite.hash_size
    assert info_size == {"A": 54, "B": 70}[suite.id]
    assert info_size + 1 not in (32, 64)


def test_suites_are_domain_separated() -> None:
    ss, qkd = os.urandom(32), os.urandom(32)
    th = os.urandom(32)
    assert derive_hop_keys(SUITE_A, ss, qkd, th) != derive_hop_keys(SUITE_B, ss, qkd, th + bytes(16))


def test_wipe_overwrites_the_keys() -> None:
    keys = derive_hop_keys(SUITE_A, os.urandom(32), os.urandom(32), os.urandom(32))
    keys.wipe()
    assert keys.encryption_key == bytes(32) and keys.confirmation_key == bytes(32)


@pytest.mark.parametrize(("ss", "qkd", "th"), [(31, 32, 32), (32, 16, 32), (32, 32, 48)], ids=["ss", "qkd", "th"])
def test_wrong_input_sizes_are_rejected(ss: int, qkd: int, th: int) -> None:
    with pytest.raises(ValueError):
        derive_hop_keys(SUITE_A, bytes(ss), bytes(qkd), bytes(th))

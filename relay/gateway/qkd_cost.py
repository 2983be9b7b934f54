"""What relaying keys spends in QKD key on one link, by the link's ``qkd_use`` and ``frame_keys``.

One QKD key per frame enters the combiner; on ``otp`` links every relayed key also takes whole QKD keys as
its one-time pad (:func:`relay.crypto.pad_keys_needed`, leftover bits discarded). Fair share charges a
request the most its keys can spend (:func:`qkd_bits_spent`: a frame of their own for every ``frame_keys``
of them); routing estimates lane levels with the share of a frame one key takes under load
(:func:`qkd_keys_per_key`).
"""

from __future__ import annotations

from collections.abc import Sequence

from relay.topology import Link


def _pad_keys(link: Link, key_bits: int, qkd_key_bits: int) -> int:
    return -(-key_bits // qkd_key_bits) if link.qkd_use == "otp" else 0


def qkd_bits_spent(link: Link, key_sizes_bits: Sequence[int], qkd_key_bits: int) -> int:
    """The most QKD key bits relaying keys of these sizes takes on ``link``: a frame's key for every
    ``frame_keys`` of them (fewer when they share frames with other keys), plus their pads."""
    frames = -(-len(key_sizes_bits) // link.frame_keys)
    return (frames + sum(_pad_keys(link, bits, qkd_key_bits) for bits in key_sizes_bits)) * qkd_key_bits


def qkd_keys_per_key(link: Link, key_bits: int, qkd_key_bits: int) -> float:
    """QKD keys one relayed key takes on ``link`` when frames are full: its pad and its share of a frame's key."""
    return _pad_keys(link, key_bits, qkd_key_bits) + 1 / link.frame_keys

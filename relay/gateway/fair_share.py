"""Fair share: one SAE pair must not take the relay's capacity or a QKD link's key from every other pair.

Checked when an SAE asks for keys relayed on demand, before any is relayed: the pair pays ``number`` from
its relayed-keys bucket and, on each QKD link of the route its keys would take, the QKD key bits they
spend there (:func:`qkd_bits_spent`: one QKD key per frame, plus each key's
one-time pad on ``otp`` links) from its bucket for that link. The buckets are the topology's
``fair_share`` (:class:`relay.topology.FairShare`), a link's refill being its share of the link's
``rate_bps``; they live in Redis (:class:`relay.pool.TokenBuckets`), so every replica of the gateway
draws from one budget. A pair over its share gets :class:`OverShare` (503) saying which share and when
it refills; the other buckets are not charged.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from relay.gateway.errors import RelayFailed
from relay.pool import Bucket, TokenBuckets
from relay.topology import FairShare, Link


def qkd_bits_spent(link: Link, key_sizes_bits: Sequence[int], qkd_key_bits: int) -> int:
    """The most QKD key bits relaying keys of these sizes takes on ``link``: one QKD key per frame, a frame
    of their own for every ``frame_keys`` of them (fewer when they share frames with other keys), and on
    ``otp`` links whole QKD keys as each key's one-time pad (leftover bits discarded)."""
    frames = -(-len(key_sizes_bits) // link.frame_keys)
    pads = sum(-(-bits // qkd_key_bits) for bits in key_sizes_bits) if link.qkd_use == "otp" else 0
    return (frames + pads) * qkd_key_bits


class OverShare(RelayFailed):
    """An SAE pair asked for more than its fair share: final for this request, the pair may ask later."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class FairShares:
    def __init__(
        self,
        share: FairShare,
        buckets: TokenBuckets,
        qkd_rates_bps: Mapping[str, float],
        relay_links: Mapping[str, Link],
        *,
        qkd_key_bits: int,
    ) -> None:
        """``qkd_rates_bps``: each QKD link's secret-key rate, and ``relay_links`` the relay link over it (its
        ``qkd_use`` and ``frame_keys``), by QKD link ID."""
        self._share = share
        self._buckets = buckets
        self._rates = dict(qkd_rates_bps)
        self._links = dict(relay_links)
        self._qkd_key_bits = qkd_key_bits

    async def admit(self, master: str, slave: str, key_sizes_bits: Sequence[int], qkd_links: Sequence[str]) -> None:
        """Charge the pair for keys of these sizes relayed across ``qkd_links``; :class:`OverShare` if it
        cannot pay."""
        share = self._share
        buckets = [Bucket("keys", share.keys_burst, share.keys_per_s, len(key_sizes_bits))]
        buckets += [
            Bucket(
                f"qkd:{link}",
                share.qkd_burst_bits,
                share.qkd_share * self._rates[link],
                qkd_bits_spent(self._links[link], key_sizes_bits, self._qkd_key_bits),
            )
            for link in qkd_links
        ]
        shortfall = await self._buckets.take(master, slave, buckets)
        if shortfall is None:
            return
        bucket, what = shortfall.bucket, _what(shortfall.bucket.name)
        pair = f"SAE pair {master} -> {slave}"
        if shortfall.retry_after_s is None:
            raise OverShare(
                f"{pair} asks for more than its share of {what} at once ({bucket.cost:g} of at most "
                f"{bucket.capacity:g}): ask for fewer keys per request"
            )
        raise OverShare(
            f"{pair} is over its share of {what} ({bucket.capacity:g} at once, {bucket.per_s:g}/s): "
            f"retry in {shortfall.retry_after_s:.1f} s"
        )


def _what(bucket: str) -> str:
    kind, _, link = bucket.partition(":")
    return f"QKD key on link {link} (bits)" if kind == "qkd" else "relayed keys"

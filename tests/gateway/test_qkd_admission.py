"""Admission onto a require-qkd link: keys wait for QKD key only while the link can serve them in time."""

from __future__ import annotations

import pytest

from relay.gateway.errors import QkdExhausted
from relay.gateway.qkd_admission import QkdAdmission


def admission(level: int | None, *, padded: bool, rate: float = 8.0) -> QkdAdmission:
    return QkdAdmission("QKD-GW2-GW3", rate, 512, padded=padded, level=lambda: level)


def test_an_otp_request_takes_a_place_for_all_its_keys_or_none() -> None:
    """16 keys of 256 bits need 16 pads and a share of a frame's key; 4 keys in the lane and 8 a second for
    2.25 s of waiting (the 0.25 s left for sending taken off) cover one such request, not two."""
    link = admission(4, padded=True)
    with link.admit([256] * 16, 2.5):
        assert link.waiting == pytest.approx(16 + 16 / 512)
        with pytest.raises(QkdExhausted, match="oversubscribed"), link.admit([256] * 16, 2.5):
            pass
        assert link.waiting == pytest.approx(16 + 16 / 512)  # the refused request holds nothing
    assert link.waiting == 0


def test_hkdf_keys_need_only_their_share_of_a_frame() -> None:
    link = admission(0, padded=False, rate=1.0)
    with link.admit([8192] * 512, 1.25):  # one frame's key, distilled in the second it may wait
        assert link.waiting == pytest.approx(1)


def test_a_link_with_no_time_left_admits_only_what_its_lane_holds() -> None:
    link = admission(None, padded=True)  # level unknown: counted as empty
    with pytest.raises(QkdExhausted):
        with link.admit([256], 0.2):
            pass
    with admission(2, padded=True).admit([256], 0.2):
        pass


def test_each_of_two_replicas_admits_half_of_what_the_link_can_serve() -> None:
    """The lane and the rate cover one 16-key otp request in time (see the first test): one process admits
    it, each of two replicas (which count their waiting keys apart) admits at most half of it."""
    single = admission(4, padded=True)
    with single.admit([256] * 16, 2.5):
        pass
    replicas = [QkdAdmission("QKD-GW2-GW3", 8.0, 512, padded=True, level=lambda: 4, replicas=2) for _ in range(2)]
    for replica in replicas:
        with pytest.raises(QkdExhausted, match="oversubscribed"), replica.admit([256] * 16, 2.5):
            pass
        with replica.admit([256] * 8, 2.5):
            assert replica.waiting == pytest.approx(8 + 8 / 512)

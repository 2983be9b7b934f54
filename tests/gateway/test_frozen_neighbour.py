"""A frozen neighbour, seen through a real gRPC channel to a real child process stopped with SIGSTOP.

The review's finding: a SIGSTOPped gateway keeps its TCP connections open, so its channel stays READY and
was never marked down. Here: the application-level probe fails at once while the channel is still READY,
and keepalive pings (which the frozen C core cannot answer either) take the channel out of READY. The
keepalive settings on both ends agree: idle pings are never answered with GOAWAY, while grpc's default
server options do answer them so (the control case, which shows the check can fail).
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import replace

import grpc

from relay import topology as topology_module
from relay.crypto import system_clock_ms
from relay.crypto.identity import load_trust_store
from relay.gateway.config import plan_gateway
from relay.gateway.keepalive import KeepaliveSettings
from relay.gateway.peers import Peer
from relay.pki.layout import KeyDirectory
from tests.support.grpc_child import child_server
from tests.support.waiting import wait_until

FAST = KeepaliveSettings(time_s=0.5, timeout_s=0.5)
IDLE_WATCH_S = 4.0  # several ping intervals, past grpc's default two strikes


@asynccontextmanager
async def peer_of(keys: KeyDirectory, port: int, keepalive: KeepaliveSettings) -> AsyncIterator[Peer]:
    gw2 = plan_gateway(topology_module.load_default(), "GW1").neighbours["GW2"]
    neighbour = replace(gw2, gateway=replace(gw2.gateway, host="127.0.0.1", grpc_port=port))
    peer = Peer(neighbour, keys, "GW1", load_trust_store(keys.identities), system_clock_ms, keepalive)
    try:
        assert await peer.wait_ready(10)
        yield peer
    finally:
        await peer.close()


def frozen(pid: int) -> Callable[[], None]:
    os.kill(pid, signal.SIGSTOP)
    return lambda: os.kill(pid, signal.SIGCONT)


async def test_a_frozen_neighbour_fails_its_probe_while_its_channel_stays_ready(topology_keys: KeyDirectory) -> None:
    with child_server(topology_keys, "GW2") as (process, port):
        async with peer_of(topology_keys, port, KeepaliveSettings()) as peer:
            assert await peer.probe(1.0)
            thaw = frozen(process.pid)
            try:
                assert not await peer.probe(0.5)
                assert peer.is_connected()  # what the channel says: READY, which fooled the old rule
            finally:
                thaw()
            assert await peer.probe(5.0)


async def test_keepalive_takes_a_frozen_neighbours_channel_out_of_ready(topology_keys: KeyDirectory) -> None:
    with child_server(topology_keys, "GW2", "--keepalive", str(FAST.time_s), str(FAST.timeout_s)) as (process, port):
        async with peer_of(topology_keys, port, FAST) as peer:
            thaw = frozen(process.pid)
            try:
                await wait_until(lambda: not peer.is_connected(), timeout_s=15, what="channel out of READY")
            finally:
                thaw()
            assert await peer.wait_ready(10) and await peer.probe(5.0)


async def _states_while_idle(peer: Peer) -> list[grpc.ChannelConnectivity]:
    """Every connectivity state the idle channel passes through in ``IDLE_WATCH_S``."""
    channel = peer._channel  # the very channel the peer uses
    states = [channel.get_state()]
    try:
        async with asyncio.timeout(IDLE_WATCH_S):
            while True:
                await channel.wait_for_state_change(states[-1])
                states.append(channel.get_state())
    except TimeoutError:
        pass
    return states


async def test_matching_server_settings_take_idle_pings_without_goaway(topology_keys: KeyDirectory) -> None:
    with child_server(topology_keys, "GW2", "--keepalive", str(FAST.time_s), str(FAST.timeout_s)) as (_, port):
        async with peer_of(topology_keys, port, FAST) as peer:
            assert await _states_while_idle(peer) == [grpc.ChannelConnectivity.READY]


async def test_grpc_default_server_settings_answer_the_same_pings_with_goaway(topology_keys: KeyDirectory) -> None:
    """The control case: without the matching server options the same channel is dropped."""
    with child_server(topology_keys, "GW2", "--grpc-defaults") as (_, port):
        async with peer_of(topology_keys, port, FAST) as peer:
            assert len(await _states_while_idle(peer)) > 1

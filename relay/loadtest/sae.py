"""Simulated SAEs: one measured key exchange over ETSI 014, as real SAEs do it.

A worker is one master SAE client at its gateway plus one slave SAE client at the slave's gateway, each
with its own HTTP session (kept alive across requests) and the SAE's certificate. Only the topology's
SAEs have certificates, so N workers share the topology's identities: worker ``i`` acts as the scenario's
``i``-th SAE pair, round robin. The measured request is ``enc_keys`` at the master's gateway; with
verification on, the slave then fetches the same keys with ``dec_keys`` at its own gateway and the bytes
are compared; a mismatch is an error (it must never happen).
"""

from __future__ import annotations

import ssl
import time
from dataclasses import dataclass

from relay.etsi014.client import Etsi014Client, KmeClientError, KmeError, KmeProtocolError, KmeUnreachable
from relay.etsi014.models import KeyRequest
from relay.loadtest.runner import Outcome
from relay.pki.layout import KeyDirectory


@dataclass(frozen=True)
class SaePair:
    master: str
    slave: str
    master_gateway: str
    slave_gateway: str
    hops: int  # on the cheapest route when every link works


class Identities:
    """Client TLS contexts by SAE ID, each loaded once and shared by every worker acting as that SAE."""

    def __init__(self, keys: KeyDirectory) -> None:
        self._keys = keys
        self._contexts: dict[str, ssl.SSLContext] = {}

    def context(self, sae_id: str) -> ssl.SSLContext:
        if sae_id not in self._contexts:
            self._contexts[sae_id] = self._keys.client_context(sae_id)
        return self._contexts[sae_id]


class SaeWorker:
    def __init__(
        self,
        pair: SaePair,
        urls: dict[str, str],
        identities: Identities,
        *,
        number: int = 1,
        verify: bool = True,
        timeout_s: float = 10.0,
    ) -> None:
        self.pair = pair
        self._number = number
        self._verify = verify
        self._master = Etsi014Client(urls[pair.master_gateway], identities.context(pair.master), timeout_s=timeout_s)
        self._slave = Etsi014Client(urls[pair.slave_gateway], identities.context(pair.slave), timeout_s=timeout_s)

    async def connect(self) -> None:
        """Open both sessions' connections (TLS handshakes) before the measurement, with a status call."""
        for client, peer in ((self._master, self.pair.slave), (self._slave, self.pair.master))[: 1 + self._verify]:
            try:
                await client.get_status(peer)
            except (KmeError, KmeProtocolError):
                pass  # it answered: the connection is up, which is all this is for

    async def exchange(self) -> Outcome:
        try:
            container = await self._master.get_key(self.pair.slave, KeyRequest(number=self._number))
        except KmeError as exc:
            return Outcome(f"http-{exc.status}", http_status=exc.status, detail=_message(exc))
        except KmeUnreachable as exc:
            return Outcome("unreachable", detail=str(exc))
        except KmeProtocolError as exc:
            return Outcome("protocol", http_status=200, detail=str(exc))
        keys = len(container.keys)
        if not self._verify:
            return Outcome("ok", keys=keys, http_status=200)
        started = time.perf_counter()
        try:
            fetched = await self._slave.get_key_with_ids(self.pair.master, [k.key_id for k in container.keys])
        except KmeError as exc:
            return Outcome(f"dec-http-{exc.status}", keys=keys, http_status=exc.status, detail=_message(exc))
        except KmeClientError as exc:  # no answer, or one that breaks the spec
            return Outcome("dec-failed", keys=keys, detail=str(exc))
        dec_ms = (time.perf_counter() - started) * 1000
        issued = {key.key_id: key.key for key in container.keys}
        if any(issued.get(key.key_id) != key.key for key in fetched.keys):
            return Outcome(
                "mismatch",
                keys=keys,
                http_status=200,
                dec_ms=dec_ms,
                detail="the slave received other key bytes than the master",
            )
        return Outcome("ok", keys=keys, http_status=200, dec_ms=dec_ms)

    async def close(self) -> None:
        await self._master.close()
        await self._slave.close()


def _message(exc: KmeError) -> str:
    return exc.error.message if exc.error else str(exc)

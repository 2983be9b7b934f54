"""The gateway as an ETSI 014 KME for its local SAEs, whose slaves may sit in other regions.

``enc_keys`` answers from the SAE pair's ready pool when it holds enough pre-relayed keys of the default
size, and otherwise relays fresh keys on demand; either way a key reaches the master only once its slave's
gateway holds it. ``dec_keys`` reserves each relayed key for its slave; the 014 front end commits the
reservation once the answer is written, or releases it if the slave has gone. ``status`` reports the real
ready-pool level, so an SAE can see whether its next request will be served from the pool.

Answers name the condition, never internals: a storage failure is "key storage unavailable" to the SAE,
with the Redis detail in the log.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable
from typing import TypeVar

from relay.etsi014.errors import KeysInDelivery, UnauthorizedError, UnavailableError, ValidationError
from relay.etsi014.models import MSG_KEYS_NOT_FOUND, KeyContainer, KeyIds, KeyLimits, KeyRequest, Status
from relay.etsi014.server import ReservedKeys
from relay.gateway.config import GatewayPlan
from relay.gateway.demand import DemandTracker
from relay.gateway.errors import RelayFailed
from relay.gateway.relay_engine import RelayEngine
from relay.pool import KeysBeingDelivered, KeysNotIssuedToSlave, PoolError, RelayedKeysNotFound, RelayedKeyStore

T = TypeVar("T")

log = logging.getLogger(__name__)

MAX_KEY_PER_REQUEST = 128
MIN_KEY_SIZE = 64
MAX_KEY_SIZE = 8192  # the hop header carries at most 1024-byte keys


class NorthboundBackend:
    """:class:`relay.etsi014.server.KeyDeliveryBackend` for the SAEs homed at this gateway."""

    def __init__(
        self,
        plan: GatewayPlan,
        engine: RelayEngine,
        store: RelayedKeyStore,
        key_size_bits: int,
        demand: DemandTracker | None = None,
    ) -> None:
        """``demand`` counts the default-size keys each pair asks for, so pre-relay keeps its pool."""
        self._plan = plan
        self._engine = engine
        self._store = store
        self._demand = demand
        # One slave per key: a relayed key is stored for exactly one SAE at the far gateway.
        self.limits = KeyLimits(key_size_bits, MIN_KEY_SIZE, MAX_KEY_SIZE, MAX_KEY_PER_REQUEST, max_sae_id_count=0)

    async def status(self, master_sae_id: str, slave_sae_id: str) -> Status:
        self._check_local(master_sae_id)
        slave_gateway = self._home_of(slave_sae_id)
        stored = await _unavailable_on_pool_error(self._store.ready_level(master_sae_id, slave_sae_id))
        high = self._store.settings.ready_watermarks.high
        return Status(
            source_kme_id=self._plan.id,
            target_kme_id=slave_gateway,
            master_sae_id=master_sae_id,
            slave_sae_id=slave_sae_id,
            key_size=self.limits.key_size,
            stored_key_count=stored,
            max_key_count=high,
            max_key_per_request=self.limits.max_key_per_request,
            max_key_size=self.limits.max_key_size,
            min_key_size=self.limits.min_key_size,
            max_sae_id_count=self.limits.max_sae_id_count,
        )

    async def enc_keys(self, master_sae_id: str, slave_sae_id: str, request: KeyRequest) -> KeyContainer:
        self._check_local(master_sae_id)
        self._home_of(slave_sae_id)
        number, size = self.limits.resolve(request, master_sae_id, slave_sae_id)
        if size == self.limits.key_size:
            if self._demand is not None:
                self._demand.asked(master_sae_id, slave_sae_id, number)
            ready = await _unavailable_on_pool_error(self._store.take_ready(master_sae_id, slave_sae_id, number))
            if ready:
                return KeyContainer(tuple(ready))
        extension = json.dumps(request.extension_optional[0]) if request.extension_optional else ""
        try:
            keys = await self._engine.relay_new_keys(master_sae_id, slave_sae_id, number, size // 8, extension)
        except RelayFailed as exc:
            raise UnavailableError(f"cannot relay keys to {slave_sae_id}: {exc.message}") from None
        except PoolError as exc:
            raise _storage_failure(exc) from None
        return KeyContainer(tuple(keys))

    async def dec_keys(self, slave_sae_id: str, master_sae_id: str, key_ids: KeyIds) -> ReservedKeys:
        self._check_local(slave_sae_id)
        try:
            reserved = await self._store.reserve_for_slave(slave_sae_id, master_sae_id, list(key_ids.key_ids))
        except RelayedKeysNotFound as exc:
            raise ValidationError(MSG_KEYS_NOT_FOUND, [{"key_ID_not_found": k} for k in exc.key_ids]) from None
        except KeysNotIssuedToSlave:
            raise UnauthorizedError(f"one or more keys were not issued to {slave_sae_id}") from None
        except KeysBeingDelivered:
            raise KeysInDelivery() from None
        except PoolError as exc:
            raise _storage_failure(exc) from None
        return ReservedKeys(KeyContainer(reserved.keys), reserved.commit, reserved.release)

    def _check_local(self, sae_id: str) -> None:
        if self._plan.sae_homes.get(sae_id) != self._plan.id:
            raise UnauthorizedError(f"SAE {sae_id} is not served by gateway {self._plan.id}")

    async def enc_keys_abandoned(self, master_sae_id: str, slave_sae_id: str, container: KeyContainer) -> None:
        """The master left before its answer was written: no one may get these keys, at any end."""
        self._engine.withdraw(master_sae_id, slave_sae_id, [key.key_id for key in container.keys])

    def _home_of(self, sae_id: str) -> str:
        home = self._plan.gateway_of(sae_id)
        if home is None:
            raise ValidationError(f"SAE {sae_id} is not known to gateway {self._plan.id}")
        return home


async def _unavailable_on_pool_error(call: Awaitable[T]) -> T:
    try:
        return await call
    except PoolError as exc:
        raise _storage_failure(exc) from None


def _storage_failure(exc: PoolError) -> UnavailableError:
    """The 503 an SAE gets: the condition only; the detail (Redis address, client error) goes to the log."""
    log.warning("014 request failed on key storage: %s", exc)
    return UnavailableError(exc.public_message)

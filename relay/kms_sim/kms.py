"""A simulated vendor QKD network: its links, the keys masters have fetched, and one 014 view per KME.

Keys a master fetched wait here for their slaves until the availability timeout (vendors drop them about
10 s after the master fetched them), then vanish; each slave gets each key once. All state changes happen
without an ``await`` in between, so the asyncio loop makes every operation atomic. A slave's dec_keys
reserves its keys (no other request gets them meanwhile); the 014 front end commits the reservation once
the answer is written or releases it if the slave has gone, and a released key that has meanwhile
expired stays gone, as any expired key does.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from relay.domain import Key, new_key_id
from relay.etsi014.errors import KeysInDelivery, UnauthorizedError, UnavailableError, ValidationError
from relay.etsi014.models import MSG_KEYS_NOT_FOUND, KeyContainer, KeyIds, KeyLimits, KeyRequest, Status
from relay.etsi014.server import ReservedKeys
from relay.kms_sim.config import SimConfig, SimulatedLink
from relay.kms_sim.link import Clock, InsufficientKey, LinkHalted, LinkState, QkdLinkSimulator


@dataclass
class _IssuedKey:
    key: Key
    master_sae_id: str
    waiting_slaves: set[str]
    expires_at: float
    in_delivery: set[str] = field(default_factory=set)  # slaves whose dec_keys answer is being written


@dataclass(frozen=True)
class LinkReport:
    link: SimulatedLink
    state: LinkState


class SimulatedKms:
    def __init__(self, config: SimConfig, *, clock: Clock = time.monotonic) -> None:
        self.config = config
        self._clock = clock
        settings = config.settings
        self.limits = KeyLimits(
            key_size=settings.key_size,
            min_key_size=settings.min_key_size,
            max_key_size=settings.max_key_size,
            max_key_per_request=settings.max_key_per_request,
            max_sae_id_count=settings.max_sae_id_count,
        )
        self._links: dict[frozenset[str], tuple[SimulatedLink, QkdLinkSimulator]] = {}
        for link in config.links:
            simulator = QkdLinkSimulator(
                link.rate_bps,
                settings.max_key_count * settings.key_size,
                initial_bits=settings.initial_key_count * settings.key_size,
                qber=settings.baseline_qber,
                qber_threshold=settings.qber_threshold,
                clock=clock,
            )
            self._links[frozenset((link.sae_a, link.sae_b))] = (link, simulator)
        self._issued: OrderedDict[str, _IssuedKey] = OrderedDict()

    def frontend(self, kme_id: str) -> KmeFrontend:
        if kme_id not in {kme.id for kme in self.config.kmes}:
            raise KeyError(f"{kme_id} is not a KME of {self.config.kms_id}")
        return KmeFrontend(self, kme_id)

    def links(self) -> list[LinkReport]:
        return [LinkReport(link, simulator.state()) for link, simulator in self._links.values()]

    def set_qber(self, link_id: str, qber: float) -> LinkReport:
        for link, simulator in self._links.values():
            if link.id == link_id:
                simulator.set_qber(qber)
                return LinkReport(link, simulator.state())
        raise KeyError(link_id)

    def home_kme(self, sae_id: str) -> str | None:
        return self.config.sae_homes.get(sae_id)

    def link_between(self, master: str, slave: str) -> tuple[SimulatedLink, QkdLinkSimulator]:
        found = self._links.get(frozenset((master, slave)))
        if found is None:
            raise ValidationError(f"there is no QKD link between {master} and {slave}")
        return found

    def issue(self, master: str, slave: str, request: KeyRequest) -> KeyContainer:
        self._expire()
        number, size = self.limits.resolve(request, master, slave)
        link, simulator = self.link_between(master, slave)
        unknown = [sae for sae in request.additional_slave_sae_ids if self.home_kme(sae) is None]
        if unknown:
            raise ValidationError(f"additional_slave_SAE_IDs names unknown SAEs: {', '.join(unknown)}")
        try:
            material = simulator.draw(number, size)
        except LinkHalted as exc:
            raise UnavailableError(f"QKD link {link.id} halted: {exc} (possible eavesdropper)") from None
        except InsufficientKey as exc:
            raise UnavailableError(f"insufficient key material on QKD link {link.id}: {exc}") from None
        expires_at = self._clock() + self.config.settings.availability_timeout_s
        keys = tuple(Key(new_key_id(), secret) for secret in material)
        for key in keys:
            slaves = {slave, *request.additional_slave_sae_ids}
            self._issued[key.key_id] = _IssuedKey(key, master, slaves, expires_at)
        return KeyContainer(keys)

    def accept(self, master: str, slave: str, keys: Sequence[Key]) -> None:
        """Keys another KMS handed over (ETSI 020) for ``slave``: they wait for it like keys drawn here."""
        self._expire()
        expires_at = self._clock() + self.config.settings.availability_timeout_s
        for key in keys:
            self._issued[key.key_id] = _IssuedKey(key, master, {slave}, expires_at)

    def withdraw(self, master: str, slave: str, key_ids: Sequence[str]) -> list[str]:
        """Void: those of ``key_ids`` still waiting for ``slave`` (not delivered, not being delivered)."""
        self._expire()
        voided = []
        for key_id in key_ids:
            record = self._issued.get(key_id)
            if record and record.master_sae_id == master and slave in record.waiting_slaves and not record.in_delivery:
                del self._issued[key_id]
                voided.append(key_id)
        return voided

    def redeem(self, slave: str, master: str, key_ids: KeyIds) -> ReservedKeys:
        """All requested keys or none, reserved for ``slave``: a partial answer would strand keys on one side."""
        self._expire()
        records = [self._issued.get(key_id) for key_id in key_ids.key_ids]
        missing = [
            key_id
            for key_id, record in zip(key_ids.key_ids, records)
            if record is None or record.master_sae_id != master
        ]
        if missing:
            raise ValidationError(MSG_KEYS_NOT_FOUND, [{"key_ID_not_found": key_id} for key_id in missing])
        held = [record for record in records if record is not None]
        if any(slave not in record.waiting_slaves | record.in_delivery for record in held):
            raise UnauthorizedError(f"one or more keys were not issued to {slave}")
        if any(slave in record.in_delivery for record in held):
            raise KeysInDelivery()
        for record in held:
            record.waiting_slaves.discard(slave)
            record.in_delivery.add(slave)

        async def commit() -> None:
            for record in held:
                record.in_delivery.discard(slave)
                if not record.waiting_slaves and not record.in_delivery:
                    self._issued.pop(record.key.key_id, None)

        async def release() -> None:
            for record in held:
                record.in_delivery.discard(slave)
                if self._issued.get(record.key.key_id) is record:
                    record.waiting_slaves.add(slave)

        return ReservedKeys(KeyContainer(tuple(record.key for record in held)), commit, release)

    def status(self, source_kme: str, master: str, slave: str) -> Status:
        link, simulator = self.link_between(master, slave)
        state = simulator.state()
        stored = 0 if state.halted else state.stored_bits // self.limits.key_size
        return Status(
            source_kme_id=source_kme,
            target_kme_id=self.home_kme(slave) or "",
            master_sae_id=master,
            slave_sae_id=slave,
            key_size=self.limits.key_size,
            stored_key_count=stored,
            max_key_count=self.config.settings.max_key_count,
            max_key_per_request=self.limits.max_key_per_request,
            max_key_size=self.limits.max_key_size,
            min_key_size=self.limits.min_key_size,
            max_sae_id_count=self.limits.max_sae_id_count,
            status_extension={"qkd_link": link.id, "qber": state.qber, "halted": state.halted},
        )

    def _expire(self) -> None:
        now = self._clock()
        # Every key gets the same timeout, so insertion order is expiry order.
        while self._issued:
            oldest = next(iter(self._issued.values()))
            if oldest.expires_at > now:
                break
            self._issued.popitem(last=False)


class KmeFrontend:
    """The 014 backend of one KME: only SAEs homed at this KME may call it."""

    def __init__(self, kms: SimulatedKms, kme_id: str) -> None:
        self._kms = kms
        self.kme_id = kme_id

    async def status(self, master_sae_id: str, slave_sae_id: str) -> Status:
        self._check_caller(master_sae_id)
        return self._kms.status(self.kme_id, master_sae_id, slave_sae_id)

    async def enc_keys(self, master_sae_id: str, slave_sae_id: str, request: KeyRequest) -> KeyContainer:
        self._check_caller(master_sae_id)
        return self._kms.issue(master_sae_id, slave_sae_id, request)

    async def dec_keys(self, slave_sae_id: str, master_sae_id: str, key_ids: KeyIds) -> ReservedKeys:
        self._check_caller(slave_sae_id)
        return self._kms.redeem(slave_sae_id, master_sae_id, key_ids)

    def _check_caller(self, sae_id: str) -> None:
        if self._kms.home_kme(sae_id) != self.kme_id:
            raise UnauthorizedError(f"SAE {sae_id} is not registered at KME {self.kme_id}")

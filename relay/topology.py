"""The topology file: the single source of truth for regions, vendor KMSs, gateways, SAEs and links.

Every launcher (local processes, docker-compose, certificate generation) derives from one parsed
``Topology``. The file's shape is described once by the dataclasses below and parsed by pydantic in
strict mode (no coercion: a port is an integer, never ``"8080"`` or ``true``); then every
cross-reference is checked, so that a typo fails at load time with the name of the offending entry, not
later inside a relay.

Invariant: nothing in the file is ignored and nothing is overridden. An unknown key is refused with its
path and the nearest valid key (a misspelt ``cost`` or ``admin_port`` would otherwise fall back to its
default and silently move traffic or disable a listener), and every identifier, gateway pair and port is
unique (a second link for one pair would otherwise replace the first, e.g. a require-qkd link by a
pqc-only one).
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, TypeVar, get_args, get_type_hints

import yaml
from pydantic import ConfigDict, Field, TypeAdapter, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

POLICIES = ("qkd+pqc", "pqc-only", "require-qkd")
QKD_USES = ("hkdf", "otp")  # how a QKD link spends QKD key per frame: see relay.crypto.header.QkdUse
MAX_FRAME_KEYS = 4096  # relay.crypto.header.MAX_FRAME_KEYS
DEFAULT_TOPOLOGY = "three-region"
_STRICT = ConfigDict(strict=True, extra="forbid")

Text = Annotated[str, Field(min_length=1, pattern=r"\S")]
MAX_PORT = 65535
Port = Annotated[int, Field(ge=1, le=MAX_PORT)]
MAX_REPLICAS = 16
Replicas = Annotated[int, Field(ge=1, le=MAX_REPLICAS)]
Positive = Annotated[float, Field(gt=0)]


NON_EMPTY = Field(min_length=1)


class TopologyError(ValueError):
    """The topology file is malformed or inconsistent."""


@dataclass(frozen=True)
class Kme:
    __pydantic_config__ = _STRICT

    id: Text
    port: Port
    host: Text = "127.0.0.1"
    tls_name: Text | None = None  # a vendor-issued certificate's DNS name or commonName (relay.pki.tls)


@dataclass(frozen=True)
class VendorKms:
    """A vendor QKD network (simulated by ``qkd-relay kms-sim``), reachable through one or more KMEs."""

    __pydantic_config__ = _STRICT

    id: Text
    region: Text
    admin_port: Port
    kmes: Annotated[tuple[Kme, ...], NON_EMPTY]


@dataclass(frozen=True)
class Gateway:
    """A relay gateway: ETSI 014 for local SAEs, ETSI 020 for other KMSs, gRPC for neighbouring gateways.

    In the file it sits inside its region, whose ID it takes. With ``replicas: N`` it runs as N
    active-active processes (``gateway run --replica K``) that share its identity, its Redis and its ETSI
    014 and 020 ports (SO_REUSEPORT); each has its own gRPC address, so that neighbours spread calls over
    them, and its own admin port (see :meth:`replica_grpc_port`).
    """

    __pydantic_config__ = _STRICT

    id: Text
    region: Text
    etsi014_port: Port
    etsi020_port: Port
    grpc_port: Port
    host: Text = "127.0.0.1"
    admin_port: Port | None = None  # loopback status, health and metrics; none if absent
    replicas: Replicas = 1  # active-active processes sharing the identity, the 014/020 ports and the Redis

    @property
    def replicas_share_a_machine(self) -> bool:
        """Whether the host is an IP literal: the replicas then run on that one machine and need a gRPC and
        an admin port each; behind a DNS name each replica is a host of its own and uses the base ports."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    def replica_grpc_port(self, replica: int) -> int:
        """Where replica ``replica`` (1-based) serves gRPC: its own port on a shared machine, else the base."""
        return self.grpc_port + self._port_offset(replica)

    def replica_admin_port(self, replica: int) -> int | None:
        """Replica ``replica``'s loopback admin port (None when the gateway has no admin listener)."""
        return None if self.admin_port is None else self.admin_port + self._port_offset(replica)

    def replica_names(self) -> tuple[str, ...]:
        """How logs, the testbed and status name each replica: the gateway ID alone when it runs once."""
        if self.replicas == 1:
            return (self.id,)
        return tuple(f"{self.id}/{k}" for k in range(1, self.replicas + 1))

    def check_replica(self, replica: int) -> None:
        """Refuse a replica number the topology does not give this gateway (they run from 1 to ``replicas``)."""
        if not 1 <= replica <= self.replicas:
            has = "1 replica" if self.replicas == 1 else f"{self.replicas} replicas (1 to {self.replicas})"
            raise TopologyError(f"gateway {self.id} has {has} in the topology; there is no replica {replica}")

    def _port_offset(self, replica: int) -> int:
        self.check_replica(replica)
        return replica - 1 if self.replicas_share_a_machine else 0


@dataclass(frozen=True)
class Region:
    id: str
    redis_port: int


@dataclass(frozen=True)
class Sae:
    """An SAE of our domains. ``prerelay_to`` names slave SAEs at other gateways whose ready pools this
    SAE's gateway keeps full even while the pair is idle (others get one only once they ask)."""

    __pydantic_config__ = _STRICT

    id: Text
    gateway: Text
    prerelay_to: tuple[Text, ...] = ()


@dataclass(frozen=True)
class QkdEndpoint:
    """One end of a QKD link: the SAE (a gateway) and the KME it pulls key from."""

    __pydantic_config__ = _STRICT

    sae: Text
    kme: Text


@dataclass(frozen=True)
class QkdLink:
    __pydantic_config__ = _STRICT

    id: Text
    kms: Text
    rate_bps: Positive
    endpoints: Annotated[tuple[QkdEndpoint, QkdEndpoint], Field(description="exactly two endpoints")]


@dataclass(frozen=True)
class Link:
    """A relay link between two gateways and how keys crossing it are protected."""

    gateways: tuple[str, str]
    policy: str
    qkd_link: str | None = None
    cost: float = 1.0
    qkd_use: str = "hkdf"  # one QKD key per frame into the combiner, or also a one-time pad per key ("otp")
    frame_keys: int = 512  # the most keys one hop frame on this link carries


@dataclass(frozen=True)
class ForeignKms:
    """A KMS domain run by another vendor, a peer over ETSI 020 through the one gateway that borders it.

    Its SAEs are destinations like ours: a key for one of them is relayed to ``border``, which hands it
    over with ``ext_keys`` at ``https://host:etsi020_port``; keys it hands us for our SAEs arrive there
    or at any other gateway. ``identity`` is the entity its 020 certificate names (URI SAN
    ``urn:qkd-relay:kme:<identity>``), the one to pin. ``etsi014_port`` and ``admin_port`` are its own
    SAEs' 014 face and its loopback admin listener, used only when the testbed runs the simulated stand-in
    (``qkd-relay kms-sim run --kms <id>``); a real foreign KMS leaves them out.
    """

    __pydantic_config__ = _STRICT

    id: Text
    identity: Text
    border: Text
    etsi020_port: Port
    saes: Annotated[tuple[Text, ...], NON_EMPTY]
    host: Text = "127.0.0.1"
    etsi014_port: Port | None = None
    admin_port: Port | None = None

    @property
    def etsi020_url(self) -> str:
        return f"https://{self.host}:{self.etsi020_port}"


@dataclass(frozen=True)
class FairShare:
    """What one SAE pair (master, slave) may draw, as token buckets at its master's gateway (kept in that
    region's Redis, so the gateway's replicas share them): relayed keys on demand, and the QKD key those
    relays spend on each QKD link of their route, for keys an SAE asks for and keys another KMS hands
    over with 020 alike. A pair over its share gets 503 saying so; pre-relay (background, bounded by its
    own watermarks) is not charged.

    Defaults: per QKD link a burst of 16,384 bits (64 QKD keys of 256 bits, half a full 128-key lane, so
    one pair never empties a lane) refilled at a quarter of the link's ``rate_bps`` (four busy pairs share
    a link evenly); 128 relayed keys at once (one maximal request) refilled at 64 keys/s, which bounds the
    hop-sealing CPU one pair can claim.
    """

    __pydantic_config__ = _STRICT

    keys_burst: Positive = 128.0
    keys_per_s: Positive = 64.0
    qkd_burst_bits: Positive = 16384.0
    qkd_share: Annotated[float, Field(gt=0, le=1)] = 0.25


@dataclass(frozen=True)
class Topology:
    name: str
    kms: tuple[VendorKms, ...]
    regions: tuple[Region, ...]
    gateways: tuple[Gateway, ...]
    saes: tuple[Sae, ...]
    qkd_links: tuple[QkdLink, ...]
    links: tuple[Link, ...]
    foreign_kms: tuple[ForeignKms, ...] = ()
    fair_share: FairShare = FairShare()

    def foreign_domain(self, kms_id: str) -> ForeignKms:
        for foreign in self.foreign_kms:
            if foreign.id == kms_id:
                return foreign
        raise TopologyError(f"unknown foreign KMS {kms_id!r}")

    def vendor_kms(self, kms_id: str) -> VendorKms:
        for kms in self.kms:
            if kms.id == kms_id:
                return kms
        raise TopologyError(f"unknown vendor KMS {kms_id!r}")

    def qkd_links_of(self, kms_id: str) -> tuple[QkdLink, ...]:
        return tuple(link for link in self.qkd_links if link.kms == kms_id)


@dataclass(frozen=True)
class _GatewayEntry:
    """A gateway as the file lists it, inside its region."""

    __pydantic_config__ = _STRICT

    id: Text
    etsi014_port: Port
    etsi020_port: Port
    grpc_port: Port
    host: Text = "127.0.0.1"
    admin_port: Port | None = None
    replicas: Replicas = 1

    def in_region(self, region: str) -> Gateway:
        return Gateway(
            self.id,
            region,
            self.etsi014_port,
            self.etsi020_port,
            self.grpc_port,
            self.host,
            self.admin_port,
            self.replicas,
        )


@dataclass(frozen=True)
class _LinkEntry:
    """A link as the file lists it: with a QKD channel it is hybrid unless it says otherwise."""

    __pydantic_config__ = _STRICT

    gateways: tuple[Text, Text]
    policy: str | None = None
    qkd_link: Text | None = None
    cost: Positive = 1.0
    qkd_use: str = "hkdf"
    frame_keys: Annotated[int, Field(ge=1, le=MAX_FRAME_KEYS)] = 512

    @model_validator(mode="after")
    def _policy_fits_the_channel(self) -> _LinkEntry:
        ends, policy = list(self.gateways), self.effective_policy
        if policy not in POLICIES:
            raise _refusal(f"link {ends}: policy must be one of {', '.join(POLICIES)} (got {policy!r})")
        if policy == "pqc-only" and self.qkd_link is not None:
            raise _refusal(f"link {ends}: a pqc-only link must not name a qkd_link")
        if policy != "pqc-only" and self.qkd_link is None:
            raise _refusal(f"link {ends}: policy {policy} needs a qkd_link")
        if self.qkd_use not in QKD_USES:
            raise _refusal(f"link {ends}: qkd_use must be one of {', '.join(QKD_USES)} (got {self.qkd_use!r})")
        if self.qkd_use == "otp" and policy == "pqc-only":
            raise _refusal(f"link {ends}: qkd_use otp needs a QKD link, and this one is pqc-only")
        return self

    @property
    def effective_policy(self) -> str | None:
        return self.policy if self.policy is not None or self.qkd_link is None else "qkd+pqc"

    def to_link(self) -> Link:
        return Link(self.gateways, self.effective_policy or "", self.qkd_link, self.cost, self.qkd_use, self.frame_keys)


@dataclass(frozen=True)
class _RegionEntry:
    __pydantic_config__ = _STRICT

    id: Text
    redis_port: Port
    gateways: Annotated[tuple[_GatewayEntry, ...], NON_EMPTY]
    saes: tuple[Sae, ...] = ()


@dataclass(frozen=True)
class _TopologyFile:
    __pydantic_config__ = _STRICT

    name: Text
    kms: Annotated[tuple[VendorKms, ...], NON_EMPTY]
    regions: Annotated[tuple[_RegionEntry, ...], NON_EMPTY]
    links: Annotated[tuple[_LinkEntry, ...], NON_EMPTY]
    qkd_links: tuple[QkdLink, ...] = ()
    foreign_kms: tuple[ForeignKms, ...] = ()
    fair_share: FairShare = FairShare()


_FILE = TypeAdapter(_TopologyFile)
_TOPOLOGY_REFUSAL = "topology"
_LISTS = {"kms", "kmes", "regions", "gateways", "saes", "qkd_links", "links", "foreign_kms"}
_UNKNOWN_KEY = {"extra_forbidden", "unexpected_keyword_argument"}
_Id = TypeVar("_Id", str, int)


def load(path: Path) -> Topology:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TopologyError(f"cannot read topology {path}: {exc}") from None
    return parse(document)


def load_default() -> Topology:
    text = resources.files("relay.topologies").joinpath(f"{DEFAULT_TOPOLOGY}.yaml").read_text()
    return parse(yaml.safe_load(text))


def parse(document: Any) -> Topology:
    try:
        # JSON mode: strict means the types a YAML document can hold (lists for tuples, no coercion)
        file = _FILE.validate_json(_as_json(document))
    except ValidationError as exc:
        raise TopologyError(_message(exc.errors(include_url=False, include_input=False))) from None
    topology = Topology(
        name=file.name,
        kms=file.kms,
        regions=tuple(Region(region.id, region.redis_port) for region in file.regions),
        gateways=tuple(gateway.in_region(region.id) for region in file.regions for gateway in region.gateways),
        saes=tuple(sae for region in file.regions for sae in region.saes),
        qkd_links=file.qkd_links,
        links=tuple(link.to_link() for link in file.links),
        foreign_kms=file.foreign_kms,
        fair_share=file.fair_share,
    )
    _check_references(topology)
    return topology


def _check_references(topology: Topology) -> None:
    entity_ids = (
        [r.id for r in topology.regions]
        + [k.id for k in topology.kms]
        + [kme.id for k in topology.kms for kme in k.kmes]
        + [g.id for g in topology.gateways]
        + [s.id for s in topology.saes]
        + [f.id for f in topology.foreign_kms]
        + [f.identity for f in topology.foreign_kms if f.identity != f.id]
        + [sae for f in topology.foreign_kms for sae in f.saes]
    )
    duplicates = _repeated(entity_ids)
    if duplicates:
        raise TopologyError(f"identifiers used more than once: {', '.join(duplicates)}")
    duplicates = _repeated([q.id for q in topology.qkd_links])
    if duplicates:
        raise TopologyError(f"qkd_link identifiers used more than once: {', '.join(duplicates)}")
    _check_ports(topology)
    _check_one_link_per_pair(topology.links)
    gateway_ids = {g.id for g in topology.gateways}
    for sae in topology.saes:
        if sae.gateway not in gateway_ids:
            raise TopologyError(f"SAE {sae.id} names unknown gateway {sae.gateway}")
    _check_prerelay_pins(topology.saes)
    for qkd in topology.qkd_links:
        kme_ids = {kme.id for kme in topology.vendor_kms(qkd.kms).kmes}
        for endpoint in qkd.endpoints:
            if endpoint.sae not in gateway_ids:
                raise TopologyError(f"qkd_link {qkd.id}: {endpoint.sae} is not a gateway")
            if endpoint.kme not in kme_ids:
                raise TopologyError(f"qkd_link {qkd.id}: KME {endpoint.kme} is not part of {qkd.kms}")
        if qkd.endpoints[0].sae == qkd.endpoints[1].sae:
            raise TopologyError(f"qkd_link {qkd.id} joins {qkd.endpoints[0].sae} to itself")
    for foreign in topology.foreign_kms:
        if foreign.border not in gateway_ids:
            raise TopologyError(f"foreign KMS {foreign.id}: border {foreign.border} is not a gateway")
    qkd_by_id = {q.id: q for q in topology.qkd_links}
    for link in topology.links:
        if link.gateways[0] == link.gateways[1] or not set(link.gateways) <= gateway_ids:
            raise TopologyError(f"link {list(link.gateways)} must join two different known gateways")
        if link.qkd_link is not None:
            joined = qkd_by_id.get(link.qkd_link)
            if joined is None:
                raise TopologyError(f"link {list(link.gateways)} names unknown qkd_link {link.qkd_link}")
            if {e.sae for e in joined.endpoints} != set(link.gateways):
                raise TopologyError(f"qkd_link {joined.id} does not join the gateways of its link")


def _check_prerelay_pins(saes: Sequence[Sae]) -> None:
    """A pinned slave is an SAE of ours at another gateway: only such a pair has a ready pool."""
    homes = {sae.id: sae.gateway for sae in saes}
    for sae in saes:
        for slave in sae.prerelay_to:
            if slave not in homes:
                nearest = difflib.get_close_matches(slave, list(homes), n=1)
                hint = f"; did you mean '{nearest[0]}'?" if nearest else ""
                raise TopologyError(f"SAE {sae.id}: prerelay_to names unknown SAE '{slave}'{hint}")
            if homes[slave] == sae.gateway:
                raise TopologyError(
                    f"SAE {sae.id}: prerelay_to names {slave}, served by the same gateway {sae.gateway} (no relay)"
                )


def _check_ports(topology: Topology) -> None:
    """Every listener of the topology runs on one machine in the local testbed, so ports must not clash;
    the error names every listener of each clashing port (a replica's offset port is easily overlooked)."""
    users: list[tuple[int, str]] = [(region.redis_port, f"{region.id} Redis") for region in topology.regions]
    users += [(kms.admin_port, f"{kms.id} admin") for kms in topology.kms]
    users += [(kme.port, kme.id) for kms in topology.kms for kme in kms.kmes]
    users += [user for g in topology.gateways for user in _gateway_ports(g)]
    users += [
        (port, f"{f.id} {name}")
        for f in topology.foreign_kms
        for port, name in ((f.etsi020_port, "ETSI 020"), (f.etsi014_port, "ETSI 014"), (f.admin_port, "admin"))
        if port
    ]
    clashes = _repeated([port for port, _ in users])
    if clashes:
        named = ", ".join(f"{port} ({' and '.join(who for p, who in users if p == port)})" for port in clashes)
        raise TopologyError(f"ports used more than once: {named}")


def _gateway_ports(gateway: Gateway) -> list[tuple[int, str]]:
    """The ports a gateway's replicas listen on, each once, with who listens: 014 and 020 are shared by every
    replica (and a DNS-named gateway's replicas, on hosts of their own, share the base gRPC and admin ports)."""
    names = dict(zip(range(1, gateway.replicas + 1), gateway.replica_names(), strict=True))
    users = [(gateway.etsi014_port, f"{gateway.id} ETSI 014"), (gateway.etsi020_port, f"{gateway.id} ETSI 020")]
    for kind, port_of in (("gRPC", gateway.replica_grpc_port), ("admin", gateway.replica_admin_port)):
        seen: dict[int, str] = {}
        for k, name in names.items():
            port = port_of(k)
            if port is not None and port not in seen:
                seen[port] = f"{name if gateway.replicas_share_a_machine else gateway.id} {kind}"
        users += seen.items()
    if max(port for port, _ in users) > MAX_PORT:
        raise TopologyError(f"gateway {gateway.id}: {gateway.replicas} replicas need ports beyond {MAX_PORT}")
    return users


def _check_one_link_per_pair(links: Sequence[Link]) -> None:
    """A pair of gateways has one policy: a second entry must not silently replace (or shadow) the first."""
    first_entry: dict[frozenset[str], int] = {}
    for index, link in enumerate(links):
        pair = frozenset(link.gateways)
        if pair in first_entry:
            ends = "-".join(link.gateways)
            raise TopologyError(f"links[{index}]: gateways {ends} are already joined by links[{first_entry[pair]}]")
        first_entry[pair] = index


def _repeated(values: list[_Id]) -> list[_Id]:
    return sorted({value for value in values if values.count(value) > 1})


def _as_json(document: Any) -> str:
    try:
        return json.dumps(document, allow_nan=False)
    except (TypeError, ValueError) as exc:  # YAML can hold dates, sets, NaN: none is a topology value
        raise TopologyError(f"topology holds a value that is not plain data: {exc}") from None


def _refusal(message: str) -> PydanticCustomError:
    return PydanticCustomError(_TOPOLOGY_REFUSAL, message)


def _message(errors: list[ErrorDetails]) -> str:
    """The first fault, in the words the checks use: which member, what it must be, where.

    Unknown keys come first: a misspelt required key is also reported missing, and the typo is the cause.
    """
    error = min(errors, key=lambda e: e["type"] not in _UNKNOWN_KEY)
    if error["type"] == _TOPOLOGY_REFUSAL:
        return error["msg"]
    loc = error["loc"]
    names = [part for part in loc if isinstance(part, str)]
    name = names[-1] if names else "topology"
    where = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[:-1]).lstrip(".")
    where = where or "topology"
    if error["type"] in _UNKNOWN_KEY:
        return f"{where}: unknown key '{name}'; {_suggestion(name, _keys_at(loc[:-1]))}"
    if name.endswith("port"):
        return f"'{name}' must be a TCP port (in {where})"
    if name in {"rate_bps", "cost", "keys_burst", "keys_per_s", "qkd_burst_bits"}:
        return f"{where}: {name} must be a positive number"
    if name == "replicas":
        return f"{where}: replicas must be an integer from 1 to {MAX_REPLICAS}"
    if name == "qkd_share":
        return f"{where}: qkd_share must be a fraction of the link's rate, above 0 and at most 1"
    if name in _LISTS and isinstance(loc[-1], str):
        return f"'{name}' must be a non-empty list (in {where})"
    return f"'{name}' is invalid (in {where}): {error['msg']}"


def _suggestion(unknown: str, valid: Sequence[str]) -> str:
    nearest = difflib.get_close_matches(unknown, valid, n=1)
    return f"did you mean '{nearest[0]}'?" if nearest else f"valid keys: {', '.join(valid)}"


def _keys_at(path: Sequence[int | str]) -> tuple[str, ...]:
    """The keys the file may hold at ``path``, found by walking the file's dataclasses along it."""
    shape: Any = _TopologyFile
    for part in path:
        if isinstance(part, int):
            members = get_args(shape)  # tuple[X, ...] or a fixed tuple[X, Y]
            shape = members[0] if members[-1] is Ellipsis else members[part]
        else:
            shape = get_type_hints(shape)[part]  # every nested entry sits in a list: a tuple of dataclasses
    return tuple(field.name for field in dataclasses.fields(shape))

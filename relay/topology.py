"""The topology file: the single source of truth for regions, vendor KMSs, gateways, SAEs and links.

Every launcher (local processes, docker-compose, certificate generation) derives from one parsed
``Topology``; parsing validates every cross-reference so that a typo fails at load time with the name of
the offending entry, not later inside a relay.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

POLICIES = ("qkd+pqc", "pqc-only", "require-qkd")
DEFAULT_TOPOLOGY = "three-region"


class TopologyError(ValueError):
    """The topology file is malformed or inconsistent."""


@dataclass(frozen=True)
class Kme:
    id: str
    port: int
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class VendorKms:
    """A vendor QKD network (simulated by ``qkd-relay kms-sim``), reachable through one or more KMEs."""

    id: str
    region: str
    admin_port: int
    kmes: tuple[Kme, ...]


@dataclass(frozen=True)
class Gateway:
    """A relay gateway: ETSI 014 for local SAEs, ETSI 020 for other KMSs, gRPC for neighbouring gateways."""

    id: str
    region: str
    etsi014_port: int
    etsi020_port: int
    grpc_port: int
    host: str = "127.0.0.1"
    admin_port: int | None = None  # loopback status, health and metrics; none if absent


@dataclass(frozen=True)
class Region:
    id: str
    redis_port: int


@dataclass(frozen=True)
class Sae:
    id: str
    gateway: str


@dataclass(frozen=True)
class QkdEndpoint:
    """One end of a QKD link: the SAE (a gateway) and the KME it pulls key from."""

    sae: str
    kme: str


@dataclass(frozen=True)
class QkdLink:
    id: str
    kms: str
    rate_bps: float
    endpoints: tuple[QkdEndpoint, QkdEndpoint]


@dataclass(frozen=True)
class Link:
    """A relay link between two gateways and how keys crossing it are protected."""

    gateways: tuple[str, str]
    policy: str
    qkd_link: str | None = None
    cost: float = 1.0


@dataclass(frozen=True)
class Topology:
    name: str
    kms: tuple[VendorKms, ...]
    regions: tuple[Region, ...]
    gateways: tuple[Gateway, ...]
    saes: tuple[Sae, ...]
    qkd_links: tuple[QkdLink, ...]
    links: tuple[Link, ...]

    def vendor_kms(self, kms_id: str) -> VendorKms:
        for kms in self.kms:
            if kms.id == kms_id:
                return kms
        raise TopologyError(f"unknown vendor KMS {kms_id!r}")

    def qkd_links_of(self, kms_id: str) -> tuple[QkdLink, ...]:
        return tuple(link for link in self.qkd_links if link.kms == kms_id)


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
    root = _object(document, "topology")
    kms = tuple(_parse_kms(item) for item in _list(root, "kms"))
    regions: list[Region] = []
    gateways: list[Gateway] = []
    saes: list[Sae] = []
    for region in _list(root, "regions"):
        region = _object(region, "region")
        region_id = _text(region, "id")
        regions.append(Region(region_id, _port(region, "redis_port")))
        gateways += [_parse_gateway(g, region_id) for g in _list(region, "gateways")]
        saes += [Sae(_text(_object(s, "sae"), "id"), _text(s, "gateway")) for s in region.get("saes", [])]
    topology = Topology(
        name=_text(root, "name"),
        kms=kms,
        regions=tuple(regions),
        gateways=tuple(gateways),
        saes=tuple(saes),
        qkd_links=tuple(_parse_qkd_link(item) for item in root.get("qkd_links", [])),
        links=tuple(_parse_link(item) for item in _list(root, "links")),
    )
    _check_references(topology)
    return topology


def _parse_kms(item: Any) -> VendorKms:
    item = _object(item, "kms")
    kmes = tuple(
        Kme(_text(_object(k, "kme"), "id"), _port(k, "port"), str(k.get("host", "127.0.0.1")))
        for k in _list(item, "kmes")
    )
    return VendorKms(_text(item, "id"), _text(item, "region"), _port(item, "admin_port"), kmes)


def _parse_gateway(item: Any, region_id: str) -> Gateway:
    item = _object(item, "gateway")
    return Gateway(
        id=_text(item, "id"),
        region=region_id,
        etsi014_port=_port(item, "etsi014_port"),
        etsi020_port=_port(item, "etsi020_port"),
        grpc_port=_port(item, "grpc_port"),
        host=str(item.get("host", "127.0.0.1")),
        admin_port=_port(item, "admin_port") if "admin_port" in item else None,
    )


def _parse_qkd_link(item: Any) -> QkdLink:
    item = _object(item, "qkd_link")
    endpoints = _list(item, "endpoints")
    if len(endpoints) != 2:
        raise TopologyError(f"qkd_link {item.get('id')!r} needs exactly two endpoints")
    first, second = (QkdEndpoint(_text(_object(e, "endpoint"), "sae"), _text(e, "kme")) for e in endpoints)
    rate = item.get("rate_bps")
    if not isinstance(rate, (int, float)) or isinstance(rate, bool) or rate <= 0:
        raise TopologyError(f"qkd_link {item.get('id')!r}: rate_bps must be a positive number")
    return QkdLink(_text(item, "id"), _text(item, "kms"), float(rate), (first, second))


def _parse_link(item: Any) -> Link:
    item = _object(item, "link")
    ends = item.get("gateways")
    if not isinstance(ends, list) or len(ends) != 2 or not all(isinstance(g, str) for g in ends):
        raise TopologyError(f"link {item!r}: 'gateways' must name two gateways")
    policy = item.get("policy", "qkd+pqc" if item.get("qkd_link") else None)
    if policy not in POLICIES:
        raise TopologyError(f"link {ends}: policy must be one of {', '.join(POLICIES)} (got {policy!r})")
    qkd_link = item.get("qkd_link")
    if policy == "pqc-only" and qkd_link is not None:
        raise TopologyError(f"link {ends}: a pqc-only link must not name a qkd_link")
    if policy != "pqc-only" and qkd_link is None:
        raise TopologyError(f"link {ends}: policy {policy} needs a qkd_link")
    cost = item.get("cost", 1.0)
    if not isinstance(cost, (int, float)) or isinstance(cost, bool) or cost <= 0:
        raise TopologyError(f"link {ends}: cost must be a positive number")
    return Link((ends[0], ends[1]), policy, qkd_link, float(cost))


def _check_references(topology: Topology) -> None:
    entity_ids = (
        [r.id for r in topology.regions]
        + [k.id for k in topology.kms]
        + [kme.id for k in topology.kms for kme in k.kmes]
        + [g.id for g in topology.gateways]
        + [s.id for s in topology.saes]
    )
    duplicates = sorted({i for i in entity_ids if entity_ids.count(i) > 1})
    if duplicates:
        raise TopologyError(f"identifiers used more than once: {', '.join(duplicates)}")
    _check_ports(topology)
    gateway_ids = {g.id for g in topology.gateways}
    for sae in topology.saes:
        if sae.gateway not in gateway_ids:
            raise TopologyError(f"SAE {sae.id} names unknown gateway {sae.gateway}")
    for qkd in topology.qkd_links:
        kme_ids = {kme.id for kme in topology.vendor_kms(qkd.kms).kmes}
        for endpoint in qkd.endpoints:
            if endpoint.sae not in gateway_ids:
                raise TopologyError(f"qkd_link {qkd.id}: {endpoint.sae} is not a gateway")
            if endpoint.kme not in kme_ids:
                raise TopologyError(f"qkd_link {qkd.id}: KME {endpoint.kme} is not part of {qkd.kms}")
        if qkd.endpoints[0].sae == qkd.endpoints[1].sae:
            raise TopologyError(f"qkd_link {qkd.id} joins {qkd.endpoints[0].sae} to itself")
    qkd_by_id = {q.id: q for q in topology.qkd_links}
    for link in topology.links:
        if link.gateways[0] == link.gateways[1] or not set(link.gateways) <= gateway_ids:
            raise TopologyError(f"link {list(link.gateways)} must join two different known gateways")
        if link.qkd_link is not None:
            qkd = qkd_by_id.get(link.qkd_link)
            if qkd is None:
                raise TopologyError(f"link {list(link.gateways)} names unknown qkd_link {link.qkd_link}")
            if {e.sae for e in qkd.endpoints} != set(link.gateways):
                raise TopologyError(f"qkd_link {qkd.id} does not join the gateways of its link")


def _check_ports(topology: Topology) -> None:
    """Every listener of the topology runs on one machine in the local testbed, so ports must not clash."""
    ports = [region.redis_port for region in topology.regions]
    ports += [kms.admin_port for kms in topology.kms] + [kme.port for kms in topology.kms for kme in kms.kmes]
    ports += [p for g in topology.gateways for p in (g.etsi014_port, g.etsi020_port, g.grpc_port, g.admin_port) if p]
    clashes = sorted({port for port in ports if ports.count(port) > 1})
    if clashes:
        raise TopologyError(f"ports used more than once: {', '.join(map(str, clashes))}")


def _object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise TopologyError(f"{what} must be a mapping, got {value!r}")
    return value


def _list(parent: dict[str, Any], name: str) -> list[Any]:
    value = parent.get(name)
    if not isinstance(value, list) or not value:
        raise TopologyError(f"'{name}' must be a non-empty list (in {parent.get('id', 'topology')})")
    return value


def _text(parent: dict[str, Any], name: str) -> str:
    value = parent.get(name)
    if not isinstance(value, str) or not value.strip():
        raise TopologyError(f"'{name}' must be a non-empty string (in {parent!r})")
    return value


def _port(parent: dict[str, Any], name: str) -> int:
    value = parent.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise TopologyError(f"'{name}' must be a TCP port (in {parent.get('id')!r})")
    return value

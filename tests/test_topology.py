"""The topology file: the embedded default loads, and every inconsistency is named at load time."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from relay import topology
from relay.topology import TopologyError, parse


def default_document() -> dict[str, Any]:
    from importlib import resources

    return yaml.safe_load(resources.files("relay.topologies").joinpath("three-region.yaml").read_text())


def test_default_topology_describes_three_regions() -> None:
    loaded = topology.load_default()
    assert {g.region for g in loaded.gateways} == {"region1", "region2", "region3"}
    assert {link.policy for link in loaded.links} == {"qkd+pqc", "require-qkd", "pqc-only"}
    assert all(sae.gateway in {g.id for g in loaded.gateways} for sae in loaded.saes)


def mutate(change: Any) -> dict[str, Any]:
    document = copy.deepcopy(default_document())
    change(document)
    return document


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["regions"][0]["saes"][0].update(gateway="GW9"), "unknown gateway GW9"),
        (lambda d: d["links"][0].update(policy="best-effort"), "policy must be one of"),
        (lambda d: d["links"][2].update(qkd_link="QKD-GW1-GW2"), "pqc-only link must not name"),
        (lambda d: d["links"][0].pop("qkd_link"), "needs a qkd_link"),
        (lambda d: d["links"][0].update(qkd_link="QKD-GW2-GW3"), "does not join the gateways"),
        (lambda d: d["qkd_links"][0]["endpoints"][0].update(kme="KME-R2-A"), "is not part of KMS-R1"),
        (lambda d: d["qkd_links"][0].update(rate_bps=0), "rate_bps must be a positive number"),
        (lambda d: d["regions"][1]["gateways"][0].update(id="GW1"), "used more than once: GW1"),
        (lambda d: d["kms"][0].update(admin_port=70000), "must be a TCP port"),
        (lambda d: d["links"][0].update(gateways=["GW1", "GW1"]), "two different known gateways"),
        (lambda d: d.pop("links"), "'links' must be a non-empty list"),
        (lambda d: d["regions"][0]["gateways"][0].update(grpc_port=18411), "ports used more than once: 18411"),
        (lambda d: d["regions"][0].pop("redis_port"), "'redis_port' must be a TCP port"),
    ],
)
def test_inconsistent_topologies_are_refused_with_the_reason(change: Any, message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        parse(mutate(change))


def test_unreadable_file_is_a_topology_error(tmp_path: Any) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("name: [unclosed")
    with pytest.raises(TopologyError, match="cannot read topology"):
        topology.load(path)

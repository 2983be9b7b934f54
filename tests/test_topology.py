"""The topology file: the embedded default loads, and every inconsistency is named at load time."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from relay import topology
from relay.topology import TopologyError, parse
from tests.support.cli import one_line_error, run_cli


def default_document() -> dict[str, Any]:
    from importlib import resources

    return yaml.safe_load(resources.files("relay.topologies").joinpath("three-region.yaml").read_text())


def test_default_topology_describes_three_regions() -> None:
    loaded = topology.load_default()
    assert {g.region for g in loaded.gateways} == {"region1", "region2", "region3"}
    assert {link.policy for link in loaded.links} == {"qkd+pqc", "require-qkd", "pqc-only"}
    assert all(sae.gateway in {g.id for g in loaded.gateways} for sae in loaded.saes)


def test_default_topology_has_a_foreign_domain_bordered_by_one_gateway() -> None:
    foreign = topology.load_default().foreign_domain("KMS-X")
    assert (foreign.identity, foreign.border, foreign.saes) == ("KME-X", "GW3", ("SAE-X-A", "SAE-X-B"))
    assert foreign.etsi020_url == f"https://127.0.0.1:{foreign.etsi020_port}"


def test_a_foreign_sae_is_a_destination_reached_through_the_bordering_gateway() -> None:
    from relay.gateway.config import plan_gateway

    plan = plan_gateway(topology.load_default(), "GW1")
    assert plan.gateway_of("SAE-X-A") == "GW3"
    assert plan.gateway_of("SAE-R1-A") == "GW1"
    assert plan.gateway_of("SAE-NOWHERE") is None
    assert "SAE-X-A" not in plan.remote_saes  # not pre-relayed: a hand-over waits for the foreign KMS's ack
    assert plan.bordered_domains == ()
    assert [f.id for f in plan_gateway(topology.load_default(), "GW3").bordered_domains] == ["KMS-X"]


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
        (
            lambda d: d["regions"][0]["gateways"][0].update(
                etsi020_port=d["regions"][0]["gateways"][0]["etsi014_port"]
            ),
            "ports used more than once: 19401 \\(GW1 ETSI 014 and GW1 ETSI 020\\)",
        ),
        (lambda d: d["regions"][0].pop("redis_port"), "'redis_port' must be a TCP port"),
        (lambda d: d["foreign_kms"][0].update(border="GW9"), "foreign KMS KMS-X: border GW9 is not a gateway"),
        (lambda d: d["foreign_kms"][0].update(saes=[]), "'saes' must be a non-empty list"),
        (lambda d: d["foreign_kms"][0].update(etsi020_port=0), "'etsi020_port' must be a TCP port"),
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


@pytest.mark.parametrize(
    ("change", "message"),
    [
        # a misspelt cost fell back to 1.0 and moved GW1->GW3 traffic onto the pqc-only link
        (
            lambda d: d["links"][2].update(cots=d["links"][2].pop("cost")),
            "links[2]: unknown key 'cots'; did you mean 'cost'?",
        ),
        # a misspelt admin_port left the gateway without its admin listener
        (
            lambda d: d["regions"][0]["gateways"][0].update(
                admin_prot=d["regions"][0]["gateways"][0].pop("admin_port")
            ),
            "regions[0].gateways[0]: unknown key 'admin_prot'; did you mean 'admin_port'?",
        ),
        # a misspelt required key is also missing: the typo is what the operator must read
        (
            lambda d: d["kms"][1].update(admin_prot=d["kms"][1].pop("admin_port")),
            "kms[1]: unknown key 'admin_prot'; did you mean 'admin_port'?",
        ),
        (
            lambda d: d["qkd_links"][0]["endpoints"][1].update(kmee="x"),
            "qkd_links[0].endpoints[1]: unknown key 'kmee'; did you mean 'kme'?",
        ),
        (lambda d: d.update(lniks=[]), "topology: unknown key 'lniks'; did you mean 'links'?"),
        (lambda d: d["links"][0].update(colour="red"), "links[0]: unknown key 'colour'; valid keys: gateways, policy"),
        # a misspelt border would leave the foreign domain without the gateway that speaks 020 to it
        (
            lambda d: d["foreign_kms"][0].update(boarder=d["foreign_kms"][0].pop("border")),
            "foreign_kms[0]: unknown key 'boarder'; did you mean 'border'?",
        ),
    ],
)
def test_unknown_keys_are_refused_with_their_path_and_the_nearest_valid_key(change: Any, message: str) -> None:
    with pytest.raises(TopologyError) as refused:
        parse(mutate(change))
    assert str(refused.value).startswith(message)


def duplicate_pqc_only_link(document: dict[str, Any]) -> None:
    """The attack: a later entry for GW2-GW3 (listed the other way round) replaced its require-qkd link."""
    document["links"].append({"gateways": ["GW3", "GW2"], "policy": "pqc-only"})


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (duplicate_pqc_only_link, "links[3]: gateways GW3-GW2 are already joined by links[1]"),
        (lambda d: d["qkd_links"].append(dict(d["qkd_links"][0])), "qkd_link identifiers used more than once"),
        (lambda d: d["regions"][2]["saes"].append({"id": "SAE-R1-A", "gateway": "GW3"}), "more than once: SAE-R1-A"),
        (lambda d: d["kms"][1]["kmes"][0].update(id="KME-R1-A"), "used more than once: KME-R1-A"),
        (lambda d: d["kms"][1].update(id="KMS-R1"), "used more than once: KMS-R1"),
        (lambda d: d["regions"][2]["gateways"][0].update(admin_port=19404), "ports used more than once: 19404"),
        (lambda d: d["foreign_kms"][0].update(saes=["SAE-R1-A"]), "more than once: SAE-R1-A"),
        (lambda d: d["foreign_kms"][0].update(identity="KME-R1-A"), "more than once: KME-R1-A"),
        (lambda d: d["foreign_kms"][0].update(etsi014_port=19401), "ports used more than once: 19401"),
    ],
)
def test_nothing_in_the_file_is_silently_overridden(change: Any, message: str) -> None:
    with pytest.raises(TopologyError, match=re.escape(message)):
        parse(mutate(change))


@pytest.mark.parametrize(
    ("command", "change", "message"),
    [
        (
            ["testbed", "up", "--state", "state"],
            duplicate_pqc_only_link,
            "links[3]: gateways GW3-GW2 are already joined by links[1]",
        ),
        (
            ["gateway", "run", "--id", "GW1"],
            lambda d: d["links"][2].update(cots=3),
            "links[2]: unknown key 'cots'; did you mean 'cost'?",
        ),
    ],
)
def test_the_cli_refuses_a_bad_topology_in_one_line(
    tmp_path: Path, command: list[str], change: Any, message: str
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(mutate(change)))
    finished = run_cli(*command, "--topology", bad, cwd=tmp_path)
    assert one_line_error(finished) == f"qkd-relay: error: {message}"


@pytest.mark.parametrize(
    ("pins", "message"),
    [
        (["SAE-R2-AA"], "SAE SAE-R1-A: prerelay_to names unknown SAE 'SAE-R2-AA'; did you mean 'SAE-R2-A'?"),
        (["SAE-R1-B"], "SAE SAE-R1-A: prerelay_to names SAE-R1-B, served by the same gateway GW1 (no relay)"),
        ("SAE-R3-A", "'prerelay_to' is invalid (in regions[0].saes[0]): Input should be a valid array"),
    ],
)
def test_a_prerelay_pin_names_an_sae_at_another_gateway(pins: Any, message: str) -> None:
    document = default_document()
    document["regions"][0]["saes"][0]["prerelay_to"] = pins
    with pytest.raises(TopologyError) as error:
        parse(document)
    assert str(error.value) == message


def with_replicas(document: dict[str, Any], region: int, replicas: Any, **changes: Any) -> dict[str, Any]:
    document["regions"][region]["gateways"][0].update(replicas=replicas, **changes)
    return document


def test_a_gateway_runs_once_unless_its_entry_says_replicas() -> None:
    gw1 = topology.load_default().gateways[0]
    assert (gw1.replicas, gw1.replica_names()) == (1, ("GW1",))
    assert (gw1.replica_grpc_port(1), gw1.replica_admin_port(1)) == (gw1.grpc_port, gw1.admin_port)


def test_replicas_on_an_ip_literal_host_have_a_grpc_and_admin_port_each() -> None:
    # GW2's base ports are 19503 (gRPC) and 19504 (admin): with three replicas the admin ports move clear
    document = with_replicas(default_document(), 1, 3, admin_port=19510)
    gw2 = next(g for g in parse(document).gateways if g.id == "GW2")
    assert gw2.replica_names() == ("GW2/1", "GW2/2", "GW2/3")
    assert [gw2.replica_grpc_port(k) for k in (1, 2, 3)] == [19503, 19504, 19505]
    assert [gw2.replica_admin_port(k) for k in (1, 2, 3)] == [19510, 19511, 19512]
    with pytest.raises(
        TopologyError, match=re.escape("gateway GW2 has 3 replicas (1 to 3) in the topology; there is no replica 4")
    ):
        gw2.replica_grpc_port(4)


def test_replicas_behind_a_dns_name_share_the_base_ports() -> None:
    gw2 = next(g for g in parse(with_replicas(default_document(), 1, 2, host="gw2")).gateways if g.id == "GW2")
    assert [gw2.replica_grpc_port(k) for k in (1, 2)] == [19503, 19503]
    assert [gw2.replica_admin_port(k) for k in (1, 2)] == [19504, 19504]


@pytest.mark.parametrize("replicas", [0, 17, "2", 2.0, True, None])
def test_replicas_must_be_an_integer_from_1_to_16(replicas: Any) -> None:
    with pytest.raises(TopologyError) as refused:
        parse(with_replicas(default_document(), 0, replicas))
    assert str(refused.value) == "regions[0].gateways[0]: replicas must be an integer from 1 to 16"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        # GW1 listens on 19401..19404: a second replica's gRPC port is GW1's own admin port
        ({}, "ports used more than once: 19404 (GW1/2 gRPC and GW1/1 admin)"),
        # its second admin port is GW2's ETSI 014 port
        ({"admin_port": 19500}, "ports used more than once: 19501 (GW1/2 admin and GW2 ETSI 014)"),
        ({"grpc_port": 65535, "admin_port": 19410}, "gateway GW1: 2 replicas need ports beyond 65535"),
    ],
)
def test_every_replica_port_is_checked_for_clashes(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(TopologyError, match=re.escape(message)):
        parse(with_replicas(default_document(), 0, 2, **changes))


def test_replicas_behind_a_dns_name_clash_with_nothing_by_sharing_their_ports() -> None:
    loaded = parse(with_replicas(default_document(), 0, 4, host="gw1"))
    assert loaded.gateways[0].replicas == 4

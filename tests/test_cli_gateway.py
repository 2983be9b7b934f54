"""`qkd-relay gateway run` as an operator starts it: tunables that cannot work are refused in one line."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest
import yaml

from tests.support.cli import one_line_error, run_cli


@pytest.mark.parametrize(
    ("option", "value", "complaint"),
    [
        ("--qkd-fill-batch", "0", "max_batch must be positive"),
        ("--qkd-fill-interval", "-1", "interval_s"),
        ("--hop-timeout", "0", "timeouts and intervals must be positive"),
    ],
)
def test_gateway_run_refuses_unworkable_settings_before_starting(
    tmp_path: Path, option: str, value: str, complaint: str
) -> None:
    finished = run_cli("gateway", "run", "--id", "GW1", option, value, cwd=tmp_path)
    assert complaint in one_line_error(finished)


@pytest.mark.parametrize(
    ("replica", "complaint"),
    [
        ("2", "gateway GW1 has 1 replica in the topology; there is no replica 2"),
        ("0", "gateway GW1 has 1 replica in the topology; there is no replica 0"),
    ],
)
def test_gateway_run_refuses_a_replica_the_topology_does_not_give_the_gateway(
    tmp_path: Path, replica: str, complaint: str
) -> None:
    finished = run_cli("gateway", "run", "--id", "GW1", "--replica", replica, cwd=tmp_path)
    assert one_line_error(finished) == f"qkd-relay: error: {complaint}"


def test_gateway_run_refuses_a_replica_beyond_the_topologys_count(tmp_path: Path) -> None:
    document = yaml.safe_load(resources.files("relay.topologies").joinpath("three-region.yaml").read_text())
    document["regions"][1]["gateways"][0].update(replicas=2, admin_port=19510)
    path = tmp_path / "replicas.yaml"
    path.write_text(yaml.safe_dump(document))
    finished = run_cli("gateway", "run", "--topology", path, "--id", "GW2", "--replica", "3", cwd=tmp_path)
    assert (
        one_line_error(finished)
        == "qkd-relay: error: gateway GW2 has 2 replicas (1 to 2) in the topology; there is no replica 3"
    )

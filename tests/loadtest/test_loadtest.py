"""``qkd-relay loadtest`` end to end with real processes (Redis, KMS simulators, gateways), tiny loads."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from relay import topology as topology_module
from relay.cli import main
from relay.loadtest.campaign import LoadtestOptions, run_loadtest
from relay.loadtest.runner import LoopMode
from relay.loadtest.schedule import Arrival
from relay.loadtest.topologies import three_region_document, with_free_ports
from relay.testbed.launcher import down, up

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def keys_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


def test_cli_runs_on_demand_and_pool_scenarios_and_writes_every_file(
    tmp_path: Path, keys_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    status = main(
        [
            "loadtest",
            "--scenario",
            "pqc-1hop-ondemand",
            "--scenario",
            "pqc-1hop-pool",
            "--concurrency",
            "2",
            "--requests",
            "12",
            "--pool-size",
            "8",
            "--out",
            str(out),
            "--keys",
            str(keys_root),
        ]
    )
    printed = capsys.readouterr()
    assert status == 0, printed.err
    assert "SCENARIO" in printed.out and "pqc-1hop-ondemand" in printed.out and "pqc-1hop-pool" in printed.out
    assert "100%" in printed.err  # the progress bar's last line

    for name in (
        "requests.csv",
        "summary.json",
        "key_rates.json",
        "latency_over_time.png",
        "latency_percentiles.png",
        "key_rates.png",
    ):
        assert (out / name).stat().st_size > 0, name
    for name in ("latency_over_time.png", "latency_percentiles.png", "key_rates.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
    assert (out / "logs" / "loadtest-chain-ondemand" / "GW1.log").is_file()

    rows = list(csv.DictReader((out / "requests.csv").open()))
    assert len(rows) == 24 and {row["status"] for row in rows} == {"ok"}
    assert {row["pool_served"] for row in rows if row["scenario"] == "pqc-1hop-pool"} == {"1"}
    assert {row["pool_served"] for row in rows if row["scenario"] == "pqc-1hop-ondemand"} == {"0"}
    assert all(float(row["dec_ms"]) > 0 and float(row["latency_ms"]) > 0 for row in rows)  # verified by the slave
    assert {row["gateway"] for row in rows} == {"GW1"} and {row["hops"] for row in rows} == {"1"}
    pool_masters = {row["master"] for row in rows if row["scenario"] == "pqc-1hop-pool"}
    assert len(pool_masters) == 2  # two workers, taking the eight source SAEs in turn

    summary = json.loads((out / "summary.json").read_text())
    runs = {run["scenario"]: run for run in summary["runs"]}
    on_demand, pool = runs["pqc-1hop-ondemand"], runs["pqc-1hop-pool"]
    for run in (on_demand, pool):
        assert run["requests"] == run["ok"] == 12 and run["errors"] == run["mismatches"] == 0
        assert (
            0
            < run["latency_ms"]["p50"]
            <= run["latency_ms"]["p90"]
            <= run["latency_ms"]["p99"]
            <= run["latency_ms"]["p99.9"]
            <= run["latency_ms"]["max_ms"]
        )
        assert run["throughput_rps"] > 0
    assert on_demand["pool"]["relayed_on_demand"] == on_demand["pool"]["on_demand_by_counters"] == 12
    assert on_demand["gateways"]["GW1"]["keys_relayed"] == 12 and on_demand["gateways"]["GW2"]["hops_received"] == 12
    assert pool["pool"]["served_from_pool"] == 12
    levels = pool["pool"]["ready_levels_at_start"]  # two workers use two of the eight pairs, 6 requests each
    assert sorted(levels) == ["SAE-C1-A->SAE-C2-A", "SAE-C1-B->SAE-C2-A"] and min(levels.values()) >= 6


def test_attached_testbed_open_loop_skips_what_it_cannot_serve(tmp_path: Path, keys_root: Path) -> None:
    topology_file = tmp_path / "topology.yaml"
    topology_file.write_text(yaml.safe_dump(with_free_ports(three_region_document())))
    state_dir = tmp_path / "state"
    up(topology_module.load(topology_file), topology_file, keys_root, state_dir, ["--no-prerelay"])
    try:
        options = LoadtestOptions(
            out=tmp_path / "out",
            scenarios=("qkd-1hop-ondemand", "qkd-1hop-pool", "pqc-1hop-ondemand"),
            concurrency=(2,),
            mode=LoopMode.OPEN,
            rate=25.0,
            arrival=Arrival.UNIFORM,
            duration_s=None,
            requests=10,
            state=state_dir,
            plots=False,
        )
        report = run_loadtest(options, stream=(tmp_path / "progress.txt").open("w"))
    finally:
        down(state_dir)
    assert {item["scenario"]: item["reason"] for item in report.skipped} == {
        "qkd-1hop-pool": "needs gateways that pre-relay (these run with --no-prerelay)",
        "pqc-1hop-ondemand": "needs topology loadtest-chain, the testbed runs three-region",
    }
    (run,) = report.runs
    assert run.group == "three-region/ondemand" and len(run.records) == 10
    assert sorted(r.scheduled_s for r in run.records) == [k / 25 for k in range(10)]
    assert all(r.outcome.ok and r.sent_s >= r.scheduled_s for r in run.records)
    assert all(r.latency_ms >= r.service_ms for r in run.records)
    summary = report.summary("qkd-1hop-ondemand")
    assert summary["mode"] == "open" and summary["rate"] == 25.0 and "service_ms" in summary
    assert summary["qkd"]["QKD-GW1-GW2"]["qkd_key_bits"] == 256
    assert summary["gateways"]["GW1"]["keys_relayed"] == 10
    frames = summary["frames"]["GW1->GW2"]  # from GW1's /metrics: qkd+pqc hkdf, at most one QKD key per frame
    assert frames["keys"] == 10 and 1 <= frames["frames"] <= 10
    assert frames["qkd_bits"] % 256 == 0 and frames["qkd_bits"] <= 256 * frames["frames"]
    assert frames["qkd_bits_per_key"] == round(frames["qkd_bits"] / 10, 2)
    assert not (tmp_path / "out" / "latency_over_time.png").exists()
    assert (tmp_path / "out" / "requests.csv").stat().st_size > 0

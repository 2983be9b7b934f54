"""``qkd-relay loadtest``: run scenarios at given concurrencies, then write the CSV, JSON and plots.

Scenarios needing different testbeds (topology, pre-relay on or off) run in groups, each on a testbed of
its own started for it, or, with a state directory, on the testbed already running there (scenarios it
cannot serve are skipped and say why). Before an on-demand run each SAE pair exchanges one key, retrying
503 while the QKD fillers make their first rounds; before a pool run the pairs' ready pools are filled
to their high watermark (or as far as they get within the prefill timeout) and the run is sized to what
they hold, so every request is pool-served.
"""

from __future__ import annotations

import asyncio
import datetime
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from relay.etsi014.client import KmeUnreachable
from relay.loadtest import output, plots
from relay.loadtest.admin import AdminClient, Sampler, Snapshot
from relay.loadtest.cpu import CpuMeter
from relay.loadtest.progress import ProgressBar
from relay.loadtest.results import RunResult, key_rates, summarize
from relay.loadtest.runner import Budget, LoadSpec, LoopMode, run_load
from relay.loadtest.sae import Identities, SaePair, SaeWorker
from relay.loadtest.scenarios import DEFAULT_SCENARIOS, RelayMode, Scenario, scenario
from relay.loadtest.schedule import Arrival
from relay.loadtest.target import Target, TargetError, attach, own_testbed

WARM_UP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class LoadtestOptions:
    out: Path
    scenarios: tuple[str, ...] = DEFAULT_SCENARIOS
    concurrency: tuple[int, ...] = (4,)
    mode: LoopMode = LoopMode.CLOSED
    rate: float = 20.0
    arrival: Arrival = Arrival.POISSON
    duration_s: float | None = 3.0
    requests: int | None = None
    number: int = 1
    verify: bool = True
    state: Path | None = None
    keys_root: Path = Path("keys")
    pool_size: int = 32  # ready-pool high watermark of the gateways a pool run starts
    prefill_timeout_s: float = 20.0
    seed: int | None = 1
    plots: bool = True

    def __post_init__(self) -> None:
        for name in self.scenarios:
            scenario(name)  # raises ValueError naming the choices
        if self.number < 1 or self.pool_size < 1 or not self.concurrency or min(self.concurrency) < 1:
            raise ValueError("concurrency, keys per request and pool size must be at least 1")
        self.spec(self.concurrency[0])  # validates duration, count and rate

    def spec(self, concurrency: int) -> LoadSpec:
        return LoadSpec(
            self.mode,
            concurrency,
            self.duration_s,
            self.requests,
            self.rate if self.mode is LoopMode.OPEN else None,
            self.arrival,
            self.seed,
        )


@dataclass
class Report:
    options: LoadtestOptions
    runs: list[RunResult] = field(default_factory=list)
    summaries: list[dict[str, Any]] = field(default_factory=list)
    groups: list[tuple[str, dict[str, Any], list[RunResult]]] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    def summary(self, scenario_name: str, concurrency: int | None = None) -> dict[str, Any]:
        for item in self.summaries:
            if item["scenario"] == scenario_name and concurrency in (None, item["concurrency"]):
                return item
        raise KeyError(f"no run of {scenario_name} at concurrency {concurrency}")


def run_loadtest(options: LoadtestOptions, stream: TextIO | None = None) -> Report:
    """Run every scenario at every concurrency; progress goes to ``stream`` (default: stderr)."""
    stream = stream or sys.stderr
    options.out.mkdir(parents=True, exist_ok=True)
    report = Report(options)
    origin = time.perf_counter()
    clock: Callable[[], float] = lambda: time.perf_counter() - origin  # noqa: E731
    wanted = [scenario(name) for name in dict.fromkeys(options.scenarios)]
    if options.state is not None:
        target = attach(options.state)
        fits = [s for s in wanted if _fits(s, target)]
        report.skipped += [{"scenario": s.name, "reason": _misfit(s, target)} for s in wanted if s not in fits]
        if fits:
            _run_group(target, fits, options, clock, stream, report)
    else:
        for (topology_name, prerelay), members in _groups(wanted).items():
            print(
                f"starting {topology_name} ({'pre-relay on' if prerelay else '--no-prerelay'}) ...",
                file=stream,
                flush=True,
            )
            logs = options.out / "logs" / f"{topology_name}-{'pool' if prerelay else 'ondemand'}"
            with own_testbed(
                topology_name, options.keys_root, prerelay=prerelay, ready_high=options.pool_size, logs_to=logs
            ) as target:
                _run_group(target, members, options, clock, stream, report)
    write_outputs(report)
    return report


def write_outputs(report: Report) -> None:
    out = report.options.out
    report.files.append(output.write_csv(report.runs, out / "requests.csv"))
    document = {
        "generated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(report.options).items()},
        "runs": report.summaries,
        "skipped": report.skipped,
        "key_rates": {label: rates["stats"] for label, rates, _ in report.groups},
        "identities": "N concurrent SAEs are N workers, each with its own HTTP sessions; they present the "
        "certificates of the scenario's SAE pairs in turn (only topology SAEs have certificates)",
    }
    report.files.append(output.write_json(document, out / "summary.json"))
    report.files.append(
        output.write_json({label: rates["series"] for label, rates, _ in report.groups}, out / "key_rates.json")
    )
    if report.options.plots and report.runs:
        rates_bps = {
            link: float(info["vendor_rate_bps"])
            for s in report.summaries
            for link, info in s["qkd"].items()
            if info.get("vendor_rate_bps")
        }
        report.files += [
            plots.latency_over_time(report.runs, out / "latency_over_time.png"),
            plots.latency_percentiles(report.runs, out / "latency_percentiles.png"),
            plots.key_rates(report.groups, rates_bps, out / "key_rates.png"),
        ]


def _groups(wanted: list[Scenario]) -> dict[tuple[str, bool], list[Scenario]]:
    groups: dict[tuple[str, bool], list[Scenario]] = {}
    for item in wanted:
        groups.setdefault((item.topology, item.relay is RelayMode.POOL), []).append(item)
    return groups


def _fits(item: Scenario, target: Target) -> bool:
    return item.topology == target.topology.name and (item.relay is RelayMode.POOL) == target.prerelay


def _misfit(item: Scenario, target: Target) -> str:
    if item.topology != target.topology.name:
        return f"needs topology {item.topology}, the testbed runs {target.topology.name}"
    if target.prerelay:
        return "needs gateways started with --no-prerelay (these pre-relay)"
    return "needs gateways that pre-relay (these run with --no-prerelay)"


def _run_group(
    target: Target,
    members: list[Scenario],
    options: LoadtestOptions,
    clock: Callable[[], float],
    stream: TextIO,
    report: Report,
) -> None:
    admin = target.admin()
    sampler = Sampler(admin, clock)

    async def main() -> list[RunResult]:
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.run(stop))
        runs = []
        try:
            for item in members:
                for concurrency in options.concurrency:
                    runs.append(await _run_one(target, admin, item, options.spec(concurrency), options, clock, stream))
        finally:
            stop.set()
            await sampling
        return runs

    runs = asyncio.run(main())
    rates = key_rates(sampler.samples)
    for run in runs:
        summary = summarize(run)
        end = run.started_at_s + summary["elapsed_s"]
        window = [s for s in sampler.samples if run.started_at_s - 1.0 <= s.at_s <= end + 1.0]
        summary["key_rates"] = key_rates(window)["stats"]
        report.summaries.append(summary)
    report.runs += runs
    report.groups.append((target.label, rates, runs))


async def _run_one(
    target: Target,
    admin: AdminClient,
    item: Scenario,
    spec: LoadSpec,
    options: LoadtestOptions,
    clock: Callable[[], float],
    stream: TextIO,
) -> RunResult:
    pairs = item.pairs(target.topology)
    identities = Identities(target.keys)
    workers = [
        SaeWorker(pairs[i % len(pairs)], target.etsi014, identities, number=options.number, verify=options.verify)
        for i in range(spec.concurrency)
    ]
    notes: list[str] = []
    levels = None
    budget = None
    try:
        if item.relay is RelayMode.ON_DEMAND:
            notes += await _warm_up(workers[: len(pairs)])
        else:
            in_use = pairs[: spec.concurrency]  # worker i acts as pair i mod len(pairs)
            levels, why = await _prefill(admin, in_use, options, clock, stream)
            notes += why
            budget = Budget(per_group={i: levels[_pair_name(p)] // options.number for i, p in enumerate(in_use)})
            held = sum(levels[_pair_name(p)] // options.number for p in in_use)
            if spec.planned_requests is None or held < spec.planned_requests:
                notes.append(f"sized to the ready pools: at most {held} requests")
        try:
            await asyncio.gather(*(worker.connect() for worker in workers))
        except KmeUnreachable as exc:
            raise TargetError(f"cannot reach a gateway: {exc}") from None
        before = await admin.snapshot(clock(), frames=True)
        cpu = CpuMeter(target.pids)
        cpu.start()
        progress = ProgressBar(
            stream, f"{item.name} c={spec.concurrency}", total=spec.planned_requests, duration_s=spec.duration_s
        )
        started_at = clock()
        _, records = await run_load(
            spec,
            lambda w: workers[w].exchange(),
            budget=budget,
            group_of=lambda w: w % len(pairs),
            on_record=lambda r: progress.update(r.outcome.ok),
        )
        progress.finish()
        cores = cpu.stop()
        after = await admin.snapshot(clock(), frames=True)
    finally:
        await asyncio.gather(*(worker.close() for worker in workers))
    return RunResult(
        target.label,
        item,
        spec,
        options.number,
        pairs,
        started_at,
        records,
        before,
        after,
        pool_levels=levels,
        cpu_cores=cores,
        notes=notes,
    )


async def _warm_up(workers: list[SaeWorker]) -> list[str]:
    """One exchange per SAE pair; 503s are retried while the QKD fillers make their first rounds."""
    notes = []
    for worker in workers:
        deadline = time.monotonic() + WARM_UP_TIMEOUT_S
        while True:
            outcome = await worker.exchange()
            if outcome.ok:
                break
            if outcome.status not in ("http-503", "unreachable") or time.monotonic() > deadline:
                notes.append(
                    f"warm-up of {worker.pair.master}->{worker.pair.slave} failed: {outcome.status} {outcome.detail}"
                )
                break
            await asyncio.sleep(0.5)
    return notes


SETTLED_POLLS = 6  # 3 s of unchanged ready pools: pre-relay's budgets hold them there


async def _prefill(
    admin: AdminClient,
    pairs: list[SaePair],
    options: LoadtestOptions,
    clock: Callable[[], float],
    stream: TextIO,
) -> tuple[dict[str, int], list[str]]:
    """Wait until each pair's ready pool is full (at its high watermark, or settled where pre-relay's
    budgets stop it lower: unchanged for ``SETTLED_POLLS`` polls), or the prefill timeout.

    Full rather than just enough for the run: a pool below its target keeps pre-relay busy refilling it,
    and that work (hop sealing) competes with the requests being measured.
    """
    distinct = list(dict.fromkeys(pairs))
    deadline = time.monotonic() + options.prefill_timeout_s
    live = stream.isatty()
    announced = False
    history: list[dict[str, int]] = []
    while True:
        snapshot = await admin.snapshot(clock())
        levels = _levels(snapshot, distinct)
        high = min((snapshot.ready_high(p.master_gateway) or 0) for p in distinct)
        need = max(options.number, high)  # full pools: pre-relay idles until the run takes keys
        if live or not announced:
            print(
                f"{chr(13) if live else ''}prefilling the ready pools of {len(distinct)} SAE pair(s) to {need} keys: "
                f"{min(levels.values())} ",
                end="",
                file=stream,
                flush=True,
            )
            announced = True
        history = [*history[-SETTLED_POLLS + 1 :], levels]
        settled = len(history) == SETTLED_POLLS and min(levels.values()) > 0 and all(h == levels for h in history)
        if min(levels.values()) >= need or settled or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    filled = min(levels.values()) >= need or settled
    print(f"{'done' if filled else 'timed out'} ({min(levels.values())} at the lowest)", file=stream, flush=True)
    notes = (
        []
        if filled
        else [f"ready pools reached {min(levels.values())} of {need} keys within {options.prefill_timeout_s:g} s"]
    )
    return levels, notes


def _levels(snapshot: Snapshot, pairs: list[SaePair]) -> dict[str, int]:
    return {_pair_name(p): snapshot.ready_level(p.master, p.slave, p.master_gateway) or 0 for p in pairs}


def _pair_name(pair: SaePair) -> str:
    return f"{pair.master}->{pair.slave}"


__all__ = ["LoadtestOptions", "Report", "TargetError", "run_loadtest"]

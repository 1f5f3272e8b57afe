"""Workload 5, scale-out: 1, 2 and 3 `onc-pipeline run` instances sharing one PostgreSQL.

Every run gets a fresh emulator process (200 ms added per request) and a fresh PostgreSQL
schema (dropped afterwards). The harness migrates the schema, launches N daemons together on
S identical CTD streams (the same 1 Hz x 8-sensor device under S names and datasets, as in
the backfill workload) starting H hours ago, and polls the shared state until every stream's
cursor has reached the end of the range fixed at launch; then it sends SIGTERM to all of them.

Each instance may run ceil(S / N) passes at once (`daemon.max_concurrent_passes`), its share
of the streams. The range fits one pass (at most 24 windows), so streams are harvested in the
scheduler's first, optimistic pass and the bulk lane's slots play no part.

With PostgreSQL state the politeness caps (`onc.max_concurrency`, `onc.max_rate_per_s`) are
shared by all instances, so two settings are measured: the default concurrency cap (3), which
binds at one instance already, and raised caps (12 in flight, 50 requests/s), which one
instance does not reach on its own. Requests are small (`row_limit` rows per page) so the 200
ms latency, not parsing, sets the pace of a single request.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import socket
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from benchmarks.context import BenchContext
from benchmarks.harness import (
    REPO,
    TOKEN,
    EmulatorProcess,
    PeakRssSampler,
    child_env,
    paired_ratio,
    proc_cpu_seconds,
    python_argv,
)
from benchmarks.report import Scenario, Target, WorkloadResult
from pipeline.state import PostgresStateStore
from pipeline.state.sql.postgres_connection import quote_ident

DEVICE = "SBECTD16p7128"  # BACAX CTD: 1 Hz, 8 sensors
SENSORS = 8
SAFETY_LAG = timedelta(seconds=30)
# Short, so the scheduler's spread of first polls (up to one cadence) delays little; a
# caught-up stream polls again at this cadence while the others finish (tiny requests).
CADENCE = "3s"
POSTGRES_URL = os.environ.get("ONC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
INSTANCES = (1, 2, 3)


@dataclass(frozen=True, slots=True)
class Caps:
    """One politeness setting, shared by every instance through PostgreSQL."""

    key: str
    title: str
    max_concurrency: int
    max_rate_per_s: float


SHARED_CAP = Caps("shared_cap", "default concurrency cap", 3, 50.0)
RAISED_CAPS = Caps("raised_caps", "raised caps", 12, 50.0)


@dataclass(frozen=True, slots=True)
class Plan:
    """The size of one scale-out run."""

    streams: int
    hours: int
    row_limit: int
    window: str = "1h"


def contender(instances: int) -> str:
    """The row label of N instances."""
    return f"{instances} instance" + ("s" if instances > 1 else "")


def passes_per_instance(streams: int, instances: int) -> int:
    """`daemon.max_concurrent_passes`: each instance's share of the streams, rounded up."""
    if streams < 1 or instances < 1:
        raise ValueError("need at least one stream and one instance")
    return math.ceil(streams / instances)


def state_url(schema: str, base: str = POSTGRES_URL) -> str:
    """The shared state URL of one run: the server plus `?schema=` (no other query)."""
    return f"{base}?{urllib.parse.urlencode({'schema': schema})}"


def unique_schema() -> str:
    """A schema name no other run uses."""
    return f"onc_bench_{uuid.uuid4().hex[:12]}"


def daemon_config(
    *, base_url: str, url: str, out: Path, plan: Plan, caps: Caps, instances: int, start: datetime
) -> dict[str, Any]:
    """The one config every instance of a run reads."""
    return {
        "onc": {
            "base_url": base_url,
            "token": TOKEN,
            "max_concurrency": caps.max_concurrency,
            "max_rate_per_s": caps.max_rate_per_s,
        },
        "state": {"url": url},
        "output": {"root": str(out)},
        "ops": {"enabled": False},  # N instances on one host would fight over its port
        "logging": {"format": "json", "level": "info"},
        "daemon": {"max_concurrent_passes": passes_per_instance(plan.streams, instances)},
        "streams": [
            {
                "name": f"ctd-{i:02d}",
                "kind": "scalardata",
                "device_code": DEVICE,
                "dataset_id": f"bench_scale_{i:02d}",
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "window": plan.window,
                "row_limit": plan.row_limit,
                "cadence": CADENCE,
                "safety_lag": f"{int(SAFETY_LAG.total_seconds())}s",
                "formats": ["jsonl"],
            }
            for i in range(plan.streams)
        ],
    }


def caught_up(cursors: Mapping[str, datetime | None], names: Iterable[str], end: datetime) -> bool:
    """True when every named stream's cursor is at or past `end`."""
    for name in names:
        cursor = cursors.get(name)
        if cursor is None or cursor < end:
            return False
    return True


def new_records(log_text: str) -> int:
    """Records added by the `window_harvested` events of one daemon's JSON log."""
    total = 0
    for line in log_text.splitlines():
        if '"window_harvested"' not in line:
            continue
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if event.get("event") == "window_harvested":
            total += int(event.get("new_records", 0))
    return total


def peak_concurrency(intervals: Sequence[tuple[float, float]]) -> int:
    """The most intervals [start, end) open at one instant (an end before a start at a tie)."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = peak = 0
    for _, step in edges:
        level += step
        peak = max(peak, level)
    return peak


def max_starts_within(starts: Sequence[float], seconds: float) -> int:
    """The most start times inside any closed span of `seconds`."""
    ordered = sorted(starts)
    best = lo = 0
    for hi, t in enumerate(ordered):
        while ordered[lo] < t - seconds:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def request_stats(
    records: Sequence[Mapping[str, Any]], *, until: datetime | None = None
) -> dict[str, float]:
    """Combined load on the emulator: count, peak in flight, mean and peak 1-s request rate.

    Only requests begun by `until` count (the caught-up streams' polls during shutdown do
    not); the mean rate is over the span from the first start to the last end.
    """
    intervals = [
        (float(r["started_monotonic"]), float(r["ended_monotonic"]))
        for r in records
        if until is None or datetime.fromisoformat(r["started_wall"]) <= until
    ]
    if not intervals:
        return {"requests": 0.0, "peak_in_flight": 0.0, "req_per_s": 0.0, "peak_req_per_s": 0.0}
    span = max(e for _, e in intervals) - min(s for s, _ in intervals)
    return {
        "requests": float(len(intervals)),
        "peak_in_flight": float(peak_concurrency(intervals)),
        "req_per_s": len(intervals) / span if span > 0 else 0.0,
        "peak_req_per_s": float(max_starts_within([s for s, _ in intervals], 1.0)),
    }


def postgres_reachable(base: str = POSTGRES_URL) -> bool:
    """True when something accepts TCP connections at the server's host and port."""
    parts = urllib.parse.urlsplit(base)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 5432), 2.0):
            return True
    except OSError:
        return False


async def drop_schema(schema: str, base: str = POSTGRES_URL) -> None:
    """Drop a run's schema and everything in it."""
    conn = await asyncpg.connect(base, timeout=5)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(schema)} CASCADE", timeout=30)
    finally:
        await conn.close()


def proc_stat(pid: int | str) -> tuple[str, list[str]]:
    """(comm, the fields after it) of /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    head, _, rest = text.rpartition(")")
    return head.partition("(")[2], rest.split()


def postgres_cpu_seconds() -> float | None:
    """CPU seconds the local PostgreSQL server has used so far (None when not visible).

    The postmaster's own time, its reaped children's (backends of closed connections) and its
    live children's: a delta over a run is the server's work for every client in that time.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, float, float]] = {}  # pid -> (ppid, own s, reaped children s)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, fields = proc_stat(entry.name)
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if comm == "postgres":
            own = (int(fields[11]) + int(fields[12])) / ticks
            reaped = (int(fields[13]) + int(fields[14])) / ticks
            procs[int(entry.name)] = (int(fields[1]), own, reaped)
    roots = [pid for pid, (ppid, _, _) in procs.items() if ppid not in procs]
    if len(roots) != 1:
        return None
    root = roots[0]
    _, own, reaped = procs[root]
    return own + reaped + sum(o for ppid, o, _ in procs.values() if ppid == root)


@dataclass
class _Instance:
    proc: subprocess.Popen[bytes]
    sampler: PeakRssSampler
    log: Path


def _launch(config: Path, log: Path) -> _Instance:
    with log.open("ab") as out:
        proc = subprocess.Popen(
            python_argv("-m", "pipeline", "run", "--config", str(config)),
            cwd=REPO,
            env=child_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sampler = PeakRssSampler(proc.pid)
    sampler.__enter__()
    return _Instance(proc, sampler, log)


def _stop_all(instances: list[_Instance], timeout: float = 30.0) -> list[tuple[int, float]]:
    """SIGTERM to all, then reap each with wait4: [(exit code, the child's CPU seconds)]."""
    for instance in instances:
        if instance.proc.returncode is None:
            instance.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    out: list[tuple[int, float]] = []
    for instance in instances:
        proc = instance.proc
        if proc.returncode is not None:  # died early and reaped by poll(): no rusage left
            instance.sampler.__exit__(None, None, None)
            out.append((proc.returncode, math.nan))
            continue
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()  # then reaped on the next turn
                deadline = math.inf
            time.sleep(0.05)
        instance.sampler.__exit__(None, None, None)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.append((proc.returncode, usage.ru_utime + usage.ru_stime + instance.sampler.deep_cpu_s))
    return out


async def _wait_caught_up(
    store: PostgresStateStore, instances: list[_Instance], names: list[str], end: datetime
) -> None:
    """Poll the shared cursors until every stream reached `end` (or an instance died)."""
    while True:
        cursors = {r.name: r.cursor_time for r in await store.list_streams()}
        if caught_up(cursors, names, end):
            return
        dead = [i for i in instances if i.proc.poll() is not None]
        if dead:
            raise RuntimeError(
                f"an instance exited early ({dead[0].proc.returncode}): {dead[0].log}"
            )
        await asyncio.sleep(0.2)


async def _run_instances(
    root: Path,
    emu: EmulatorProcess,
    url: str,
    plan: Plan,
    caps: Caps,
    instances: int,
    limit_s: float,
) -> dict[str, float]:
    launch = datetime.now(UTC)
    end = (launch - SAFETY_LAG).replace(microsecond=0)
    start = end - timedelta(hours=plan.hours)
    config = root / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            daemon_config(
                base_url=emu.url, url=url, out=root / "out", plan=plan, caps=caps,
                instances=instances, start=start,
            )
        )
    )  # fmt: skip
    names = [f"ctd-{i:02d}" for i in range(plan.streams)]
    # Migrate before launching, so the instances do not race to create the schema and the
    # poller can read it from the first moment.
    async with PostgresStateStore(url, pool_size=1) as store:
        assert emu.proc is not None
        emu_cpu0, pg_cpu0 = proc_cpu_seconds(emu.proc.pid), postgres_cpu_seconds()
        started = time.perf_counter()
        procs = [_launch(config, root / f"daemon-{i}.log") for i in range(instances)]
        try:
            async with asyncio.timeout(limit_s):
                await _wait_caught_up(store, procs, names, end)
            wall = time.perf_counter() - started
            done_at = datetime.now(UTC)
            emu_cpu = proc_cpu_seconds(emu.proc.pid) - emu_cpu0
        except TimeoutError as exc:
            raise RuntimeError(f"not caught up within {limit_s:.0f} s; see {root}") from exc
        finally:
            stopped = _stop_all(procs)
        # Counted up to the instances' exit: their backends' shutdown work is part of the run.
        await asyncio.sleep(0.3)
        pg_cpu1 = postgres_cpu_seconds()
    failed = [code for code, _ in stopped if code != 0]
    if failed:
        raise RuntimeError(f"instances exited with {failed} after SIGTERM; see {root}")
    values = sum(new_records(p.log.read_text(errors="replace")) for p in procs)
    cpu = sum(c for _, c in stopped)
    metrics = {
        "wall_s": wall,
        "values": float(values),
        "values_per_s": values / wall,
        "cpu_s": cpu,
        "cpu_per_instance_s": cpu / instances,
        "max_rss_mb": max(p.sampler.peak_mb for p in procs),
        "emulator_cpu_s": emu_cpu,
    }
    if pg_cpu0 is not None and pg_cpu1 is not None:
        metrics["postgres_cpu_s"] = pg_cpu1 - pg_cpu0
    metrics.update(request_stats(emu.get_json("/_emulator/requests"), until=done_at))
    return metrics


def run_point(
    ctx: BenchContext, plan: Plan, caps: Caps, instances: int, tag: str
) -> dict[str, float]:
    """One run of N instances on a fresh emulator and a fresh schema (dropped afterwards)."""
    root = ctx.scratch("scale_out", tag)
    schema = unique_schema()
    limit_s = 120.0 if ctx.quick else 600.0
    try:
        with EmulatorProcess(root / "emu") as emu:
            return asyncio.run(
                _run_instances(root, emu, state_url(schema), plan, caps, instances, limit_s)
            )
    finally:
        asyncio.run(drop_schema(schema))


def run_caps(ctx: BenchContext, plan: Plan, caps: Caps) -> Scenario:
    """1, 2 and 3 instances up to twice under one setting, order rotated per repetition."""
    scenario = Scenario(
        f"{caps.title}: max_concurrency {caps.max_concurrency}, "
        f"max_rate_per_s {caps.max_rate_per_s:g}",
        {
            "streams": plan.streams,
            "hours": plan.hours,
            "window": plan.window,
            "row_limit": plan.row_limit,
        },
    )
    # At most two repetitions: twelve runs of about half a minute each already.
    reps = min(ctx.reps, 2)
    for rep in range(reps):
        shift = rep % len(INSTANCES)
        for n in INSTANCES[shift:] + INSTANCES[:shift]:
            print(f"  scale_out {caps.key} rep {rep + 1}/{reps}: {contender(n)}", flush=True)
            scenario.add(contender(n), run_point(ctx, plan, caps, n, f"{caps.key}-{n}-{rep}"))
    one = contender(1)
    for n in INSTANCES[1:]:
        scenario.ratios[f"values/s of {contender(n)} / {one}"] = paired_ratio(
            scenario.series(contender(n), "values_per_s"), scenario.series(one, "values_per_s")
        )
        scenario.ratios[f"CPU s per instance, {contender(n)} / {one}"] = paired_ratio(
            scenario.series(contender(n), "cpu_per_instance_s"),
            scenario.series(one, "cpu_per_instance_s"),
        )
    return scenario


def run(ctx: BenchContext) -> WorkloadResult:
    """Both settings; targets: the shared caps held for the instances together."""
    result = WorkloadResult("scale_out", "Workload 5 - scale-out on one PostgreSQL")
    if not postgres_reachable():
        result.notes.append(f"Not run: no PostgreSQL at {POSTGRES_URL} (ONC_BENCH_POSTGRES_URL).")
        return result
    plan = Plan(streams=6, hours=2, row_limit=1200) if ctx.quick else Plan(12, 12, 1200)
    for caps in (SHARED_CAP, RAISED_CAPS):
        scenario = run_caps(ctx, plan, caps)
        result.scenarios.append(scenario)
        peak = max(max(scenario.series(contender(n), "peak_in_flight")) for n in INSTANCES)
        rate = max(max(scenario.series(contender(n), "peak_req_per_s")) for n in INSTANCES)
        result.targets += [
            Target(
                f"scale_out ({caps.title}): combined peak in flight",
                peak,
                "<=",
                caps.max_concurrency,
            ),
            # At most rate + burst (1) requests start per second; one more for the jitter of
            # their arrival at the emulator, as in the acceptance test.
            Target(
                f"scale_out ({caps.title}): most requests begun in 1 s",
                rate,
                "<=",
                caps.max_rate_per_s + 2,
            ),
        ]
    result.notes.append(
        "Wall = the daemons' start to every cursor at the end of the range; CPU = the daemons' "
        "own, start-up included; peak RSS = the largest daemon's; requests, rates and peak in "
        "flight from the emulator's log, all instances together. The caps hold for all of them."
    )
    return result

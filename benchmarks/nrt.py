"""Workload 3, near-real-time: N streams at a fixed cadence, `onc-pipeline run` as a daemon.

Freshness of a sample = (when its line landed on disk: the published file's mtime, which the
atomic rename keeps from the write) - (its `sampleTime`). A watcher in this process re-reads
only the tail of each JSON Lines file whose mtime changed. Samples count when their time falls
in [launch + cadence, launch + duration] (the first cadence is start-up); the daemon keeps
running one more cadence plus a margin so those samples can land. CPU share = the daemon's
CPU seconds / wall seconds over the same steady period, read from /proc.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import ujson
import yaml

from benchmarks.context import BenchContext
from benchmarks.harness import (
    REPO,
    TOKEN,
    EmulatorProcess,
    PeakRssSampler,
    child_env,
    proc_memory_mb,
    python_argv,
    tree_cpu_seconds,
)
from benchmarks.report import Scenario, Target, WorkloadResult

DEVICES = ("SBECTD16p7128", "SBECTD19p7027", "RBRQUARTZ3BPR203659")  # 1 Hz each
SAFETY_LAG_S = 2  # the emulator publishes data 2 s after its sample time
PIPELINE = "onc-pipeline run"


def parse_onc_time(text: str) -> float:
    """Epoch seconds of ONC's `yyyy-MM-ddTHH:mm:ss.SSSZ`."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def tail_lines(path: Path, newer_than: str, chunk: int = 64 * 1024) -> list[str]:
    """Complete lines at the end of a time-sorted JSONL file with sampleTime > `newer_than`.

    Reads backwards in chunks until a line at or before `newer_than` (or the file start).
    """
    with path.open("rb") as fh:
        size = fh.seek(0, os.SEEK_END)
        pos, data = size, b""
        while pos > 0:
            step = min(chunk, pos)
            pos -= step
            fh.seek(pos)
            data = fh.read(step) + data
            lines = data.split(b"\n")
            # The first piece may be a partial line unless we reached the start.
            complete = lines if pos == 0 else lines[1:]
            first = next((ln for ln in complete if ln.strip()), None)
            if first is not None and ujson.loads(first)["sampleTime"] <= newer_than:
                break
    lines = data.split(b"\n") if pos == 0 else data.split(b"\n")[1:]
    out = []
    for raw in lines:
        if raw.strip():
            line = raw.decode()
            if ujson.loads(line)["sampleTime"] > newer_than:
                out.append(line)
    return out


@dataclass
class FreshnessWatcher:
    """Records (landed - sampleTime) for every new sample time of every JSONL file."""

    root: Path
    window_from: float
    window_to: float
    freshness: list[float] = field(default_factory=list)
    _seen: dict[Path, tuple[int, str]] = field(default_factory=dict)

    def scan(self) -> None:
        """Look at every file once; read the tail of those that changed."""
        for path in self.root.rglob("*.jsonl"):
            try:
                mtime_ns = path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
            prev_mtime, newest = self._seen.get(path, (0, ""))
            if mtime_ns == prev_mtime:
                continue
            try:
                lines = tail_lines(path, newest)
            except FileNotFoundError:
                continue
            self.record(lines, mtime_ns / 1e9)
            times = [ujson.loads(ln)["sampleTime"] for ln in lines]
            self._seen[path] = (mtime_ns, max(times, default=newest))

    def record(self, lines: list[str], landed: float) -> None:
        """One freshness value per distinct sample time inside the measured window."""
        for stamp in {ujson.loads(ln)["sampleTime"] for ln in lines}:
            sampled = parse_onc_time(stamp)
            if self.window_from <= sampled <= self.window_to:
                self.freshness.append(landed - sampled)


def daemon_config(root: Path, base_url: str, streams: int, cadence_s: int, start: datetime) -> Path:
    """`streams` scalardata streams over three 1 Hz devices, each its own dataset."""
    data = {
        "onc": {"base_url": base_url, "token": TOKEN, "max_concurrency": 3, "max_rate_per_s": 50},
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out")},
        "ops": {"enabled": False},
        "logging": {"format": "json", "level": "info"},
        "streams": [
            {
                "name": f"nrt-{i:03d}",
                "kind": "scalardata",
                "device_code": DEVICES[i % len(DEVICES)],
                "dataset_id": f"bench_nrt_{i:03d}",
                "start": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "cadence": f"{cadence_s}s",
                "safety_lag": f"{SAFETY_LAG_S}s",
                "formats": ["jsonl"],
            }
            for i in range(streams)
        ],
    }
    path = root / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run_once(
    ctx: BenchContext, streams: int, cadence_s: int, duration_s: float
) -> dict[str, float]:
    """One daemon run; returns freshness percentiles, CPU share and memory."""
    root = ctx.scratch("nrt", f"{streams}")
    with EmulatorProcess(root / "emu") as emu:
        launch = time.time()
        start = datetime.fromtimestamp(launch, UTC) - timedelta(seconds=30)
        config = daemon_config(root, emu.url, streams, cadence_s, start)
        watcher = FreshnessWatcher(root / "out", launch + cadence_s, launch + duration_s)
        with (root / "daemon.log").open("ab") as log:
            proc = subprocess.Popen(
                python_argv("-m", "pipeline", "run", "--config", str(config)),
                cwd=REPO,
                env=child_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        sampler = PeakRssSampler(proc.pid)
        try:
            with sampler:
                steady_at, cpu0 = None, 0.0
                end = launch + duration_s + cadence_s + 5
                while time.time() < end:
                    if proc.poll() is not None:
                        raise RuntimeError(f"daemon exited early ({proc.returncode}); see {root}")
                    if steady_at is None and time.time() >= launch + cadence_s:
                        # The whole tree: the daemon and its window workers.
                        steady_at, cpu0 = time.time(), tree_cpu_seconds(proc.pid)
                    watcher.scan()
                    time.sleep(0.2)
                cpu1, steady_end = tree_cpu_seconds(proc.pid), time.time()
                memory = proc_memory_mb(proc.pid)
            proc.send_signal(signal.SIGTERM)
            _, status, _ = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
    if not watcher.freshness:
        raise RuntimeError(f"no sample landed in the measured window; see {root}")
    assert steady_at is not None
    return {
        "freshness_p50_s": percentile(watcher.freshness, 50),
        "freshness_p99_s": percentile(watcher.freshness, 99),
        "freshness_max_s": max(watcher.freshness),
        "samples": float(len(watcher.freshness)),
        "cpu_share": (cpu1 - cpu0) / (steady_end - steady_at),
        "rss_mb": memory.get("VmRSS", float("nan")),
        "max_rss_mb": sampler.peak_mb,
        "exit_code": float(proc.returncode),
    }


def run(ctx: BenchContext) -> WorkloadResult:
    """One long run (repetitions of a 5-minute run are left to --reps-nrt)."""
    streams, cadence, duration = (10, 4, 10.0) if ctx.quick else (200, 30, 300.0)
    result = WorkloadResult("nrt", "Workload 3 - near-real-time daemon")
    scenario = Scenario(
        f"{streams} streams, cadence {cadence} s, {duration:g} s",
        {
            "streams": streams,
            "cadence_s": cadence,
            "duration_s": duration,
            "safety_lag_s": SAFETY_LAG_S,
        },
    )
    print(f"  nrt {streams} streams for {duration:g} s", flush=True)
    scenario.add(PIPELINE, run_once(ctx, streams, cadence, duration))
    result.scenarios.append(scenario)
    result.targets += [
        Target(
            "nrt: p99 freshness",
            scenario.median(PIPELINE, "freshness_p99_s"),
            "<=",
            cadence + 2.0,
            "s",
        ),
        Target("nrt: CPU share of one core", scenario.median(PIPELINE, "cpu_share"), "<=", 0.25),
    ]
    result.notes.append(
        f"Freshness = landed - sampleTime: at least the {SAFETY_LAG_S} s safety lag (equal to "
        "the emulator's publication delay), plus up to one cadence until the next poll, plus "
        "queueing behind the other streams (3 requests in flight, 200 ms each)."
    )
    return result

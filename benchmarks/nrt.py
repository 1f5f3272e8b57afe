"""Workload 3, near-real-time late in the day: `onc-pipeline run` on N scalardata streams at a
fixed cadence, publishing NetCDF daily partitions that already hold about 23 hours.

Late in the day whatever the real time: the emulator (`clock_offset_s`) and the pipeline
(`benchmarks.shifted_clock`) both run on real time plus one fixed offset, chosen so that the
seeding starts at SEED_AT on the current UTC date. Seeding: `once` on the same streams, dataset
ids, format and partition, from midnight to the shifted now (with `window: 1d` and raised caps
so that it takes seconds, not the hour 1-hour windows at the default politeness would; it is
not measured). Then `run` on the measured config, whose streams continue from the seeded
cursors.

Measured, over the steady period [launch + WARMUP cadences, launch + WARMUP cadences +
duration]:
- freshness of a sample = (when it became visible) - (its sample time). A watcher in this
  process stats every NetCDF file every 0.2 s; when a file changed it reads the records past
  the `numrecs` it last read (the partitions are NetCDF-3 files appended in place: records
  first, then numrecs), and every sample time it had not seen became visible at the file's
  ctime (set by the append's numrecs write, or by the rename of a rewrite). A read during
  which the file changed, or while an append's records lie past numrecs, is redone at the
  next scan. The watcher's own lag (change to read) and longest scan are reported beside:
  while the lag stays under the cadence, no sample is stamped with a later append's time.
- bytes written: the process tree's `/proc/<pid>/io` `wchar` at both ends of the period, less
  the log bytes the daemon sent through its stdout pipe meanwhile, extrapolated to a day,
  against a day's files: the size of the output at the end scaled from the hours the
  partitions hold to 24. `write_bytes` (pages dirtied) is reported beside it.
- CPU share: the tree's CPU seconds over the period / its wall seconds, from /proc.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.context import BenchContext
from benchmarks.harness import (
    REPO,
    TOKEN,
    EmulatorProcess,
    IoCounts,
    PeakRssSampler,
    child_env,
    copy_stream,
    dir_bytes,
    proc_memory_mb,
    python_argv,
    reap_orphans,
    run_measured,
    tree_cpu_seconds,
    tree_io,
)
from benchmarks.report import Scenario, Target, WorkloadResult
from pipeline.outputs import nc3

DEVICES = ("SBECTD16p7128", "SBECTD19p7027", "RBRQUARTZ3BPR203659")  # 1 Hz each
SAFETY_LAG_S = 2  # the emulator publishes data 2 s after its sample time
PIPELINE = "onc-pipeline run"
# The shifted time of day at which seeding starts: the partitions then hold ~23 h.
SEED_AT = timedelta(hours=22, minutes=55)
# Cadences left out at the start (the first polls catch up from the seeded cursors).
WARMUP = 2
# 200 streams polled every 30 s make 6.7 requests/s; the default cap (1/s) would need 200 s
# per round. See BENCHMARKS.md for why 10/s is a polite setting.
MAX_RATE_PER_S = 10
DAY_S = 86_400.0


class DaemonExitedError(RuntimeError):
    """The daemon ended before the measured period did: what the run shows is a failure."""

    def __init__(self, returncode: int, log_tail: str, root: Path) -> None:
        super().__init__(f"daemon exited early ({returncode}); see {root}")
        self.returncode = returncode
        self.log_tail = log_tail


def notable_lines(log: str, count: int = 3) -> list[str]:
    """What explains a daemon's end: a fatal error with the pipeline's frames of every
    thread (faulthandler's dump), else the last warnings and errors of its JSON log, else its
    last lines."""
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    fatal = next((i for i, ln in enumerate(lines) if ln.startswith("Fatal Python error")), None)
    if fatal is not None:
        frames = [ln for ln in lines[fatal:] if ln.startswith('File "') and "/pipeline/" in ln]
        return [lines[fatal], *frames[: count * 3]]
    marked = [ln for ln in lines if '"level": "warning"' in ln or '"level": "error"' in ln]
    return (marked or lines)[-count:]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation between closest ranks."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def record_times(path: Path, header: nc3.Header, first: int) -> list[float]:
    """The `time` values (seconds since 1970) of records `first` to `header.numrecs` of a
    NetCDF classic record file: one read of those whole records, `time` picked from each."""
    count = header.numrecs - first
    if count <= 0:
        return []
    size = count * header.recsize
    with open(path, "rb") as handle:
        handle.seek(header.records_begin + first * header.recsize)
        data = handle.read(size)
    if len(data) != size:
        raise nc3.NotClassicError(f"{path} is shorter than its {header.numrecs} records")
    times = np.frombuffer(data, dtype=header.record_dtype(), count=count)["time"]
    return [float(v) for v in np.asarray(times, dtype=np.float64) if np.isfinite(v)]


def landed_freshness(
    times: list[float], seen: set[float], landed: float, window: tuple[float, float]
) -> list[float]:
    """(landed - sample time) for every sample time not in `seen` that falls in `window`;
    adds every new time from the window's start on to `seen` (earlier ones are never
    measured, so they need not be remembered)."""
    out = []
    for sampled in times:
        if sampled < window[0] or sampled in seen:
            continue
        seen.add(sampled)
        if sampled <= window[1]:
            out.append(landed - sampled)
    return out


@dataclass(frozen=True)
class _FileMark:
    """What the watcher knew of a file when it last read it."""

    stat_key: tuple[int, int, int, int]  # inode, mtime, ctime (ns), size
    numrecs: int


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)


@dataclass
class NetcdfFreshnessWatcher:
    """Records (visible - sample time) for every new sample time of every NetCDF file.

    Reads only what changed: the partitions are NetCDF-3 record files that the pipeline
    appends to in place (records first, then `numrecs`: `pipeline/outputs/nc3.py`), so an
    append's samples are the records past the `numrecs` last read, a few kB, while the whole
    `time` column of a 23 h partition is strided over its 8 MB. A file with a new inode
    (rewritten and renamed into place) or fewer records is read whole, and only its times
    not seen before count. A sample became visible when the record count that holds it was
    written: the file's ctime, which the append's last write and the rename of a rewrite
    both set (the mtime of a renamed file is the temporary's, before its fsync).

    Times are on the pipeline's (shifted) clock: `offset_s` is added to file times. The
    watcher's own lag is measured beside: `lag_max_s`, the longest a change waited before
    it was read (each file is appended once a cadence, so while it stays under the cadence
    no sample is stamped with a later append's time), and `scan_max_s`, the longest scan;
    `first_change` holds when each file first changed after `prime` (real time).
    """

    root: Path
    window_from: float
    window_to: float
    offset_s: float = 0.0
    freshness: list[float] = field(default_factory=list)
    lag_max_s: float = 0.0
    scan_max_s: float = 0.0
    first_change: dict[Path, float] = field(default_factory=dict)
    _marks: dict[Path, _FileMark] = field(default_factory=dict)
    _seen: dict[Path, set[float]] = field(default_factory=dict)

    def prime(self) -> None:
        """Take the seeded contents as seen: only later samples are measured."""
        self.scan(record=False)

    def scan(self, *, record: bool = True) -> None:
        """Stat every file once; read the new records of those that changed."""
        started = time.time()
        for path in self.root.rglob("*.nc"):
            try:
                self._read_changes(path, record=record)
            except (OSError, nc3.NotClassicError, ValueError):
                continue  # replaced, half-written or not ours; the next scan retries
        if record:
            self.scan_max_s = max(self.scan_max_s, time.time() - started)

    def _read_changes(self, path: Path, *, record: bool) -> None:
        before = path.stat()
        key = _stat_key(before)
        mark = self._marks.get(path)
        if mark is not None and mark.stat_key == key:
            return
        header = nc3.read_header(path)
        same_file = mark is not None and mark.stat_key[0] == before.st_ino
        first = mark.numrecs if mark is not None and same_file else 0
        if header.numrecs < first:
            first = 0  # fewer records than before: read it whole
        times = record_times(path, header, first)
        if _stat_key(path.stat()) != key:
            return  # written while read: the next scan reads it again
        if before.st_size > header.records_begin + header.numrecs * header.recsize:
            # An append under way (its records are written before numrecs moves; both may
            # fall in one tick of the file system's clock): read again once it is done.
            return
        self._marks[path] = _FileMark(key, header.numrecs)
        landed_real = before.st_ctime_ns / 1e9
        if record:
            self.first_change.setdefault(path, landed_real)
        seen = self._seen.setdefault(path, set())
        fresh = landed_freshness(
            times, seen, landed_real + self.offset_s, (self.window_from, self.window_to)
        )
        if record and fresh:
            self.freshness += fresh
            self.lag_max_s = max(self.lag_max_s, time.time() - landed_real)


def clock_offset_s(real_now: datetime, seed_at: timedelta = SEED_AT) -> float:
    """Seconds to add to real time so that it is `seed_at` into today's UTC date now."""
    midnight = real_now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return (midnight + seed_at - real_now).total_seconds()


def bytes_per_day(written: float, period_s: float) -> float:
    """Bytes written over `period_s` seconds, at the same pace for a whole day."""
    if period_s <= 0:
        raise ValueError("the period must be positive")
    return written * DAY_S / period_s


def day_file_bytes(size_now: float, held_s: float) -> float:
    """A day's files, from partitions that hold `held_s` seconds of the day at `size_now`."""
    if held_s <= 0:
        raise ValueError("the partitions must hold some of the day")
    return size_now * DAY_S / held_s


def daemon_config(
    root: Path,
    base_url: str,
    streams: int,
    cadence_s: int,
    start: datetime,
    *,
    seed: bool = False,
    fmt: str = "netcdf",
) -> Path:
    """`streams` scalardata streams over three 1 Hz devices, each its own dataset, in `fmt`
    (NetCDF by default) in daily partitions, the default window; the seeding variant takes
    whole-day windows and raised caps (same datasets, files and partition)."""
    stream_extra: dict[str, Any] = {"window": "1d"} if seed else {}
    onc: dict[str, Any] = {"base_url": base_url, "token": TOKEN}
    onc |= (
        {"max_concurrency": 8, "max_rate_per_s": 50}
        if seed
        else {
            "max_concurrency": 3,
            "max_rate_per_s": MAX_RATE_PER_S,
        }
    )
    data = {
        "onc": onc,
        "state": {"url": f"sqlite:///{root / 'state.db'}"},
        "output": {"root": str(root / "out"), "partition": "daily"},
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
                "formats": [fmt],
                **stream_extra,
            }
            for i in range(streams)
        ],
    }
    path = root / ("seed.yaml" if seed else "config.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def shifted(offset_s: float, *args: str) -> list[str]:
    """The pipeline's CLI with its clock shifted by `offset_s`."""
    return python_argv("-m", "benchmarks.shifted_clock", repr(offset_s), *args)


def run_once(
    ctx: BenchContext, streams: int, cadence_s: int, duration_s: float, fmt: str = "netcdf"
) -> dict[str, float]:
    """Seed, then one daemon run; returns bytes, CPU share and memory, and for NetCDF the
    freshness (the watcher reads NetCDF files)."""
    root = ctx.scratch("nrt", f"{streams}-{fmt}")
    offset = clock_offset_s(datetime.now(UTC))
    with EmulatorProcess(root / "emu", clock_offset_s=offset) as emu:
        sim_now = datetime.now(UTC) + timedelta(seconds=offset)
        midnight = sim_now.replace(hour=0, minute=0, second=0, microsecond=0)
        seed = run_measured(
            shifted(
                offset,
                "once",
                "--config",
                str(daemon_config(root, emu.url, streams, cadence_s, midnight, seed=True, fmt=fmt)),
            ),
            env=child_env(),
            log_dir=root,
            name="seed",
        )
        if not seed.ok:
            raise RuntimeError(f"seeding failed ({seed.returncode}): {seed.stderr[-2000:]}")
        config = daemon_config(root, emu.url, streams, cadence_s, midnight, fmt=fmt)
        launch_real = time.time()
        launch = launch_real + offset
        steady_from = launch + WARMUP * cadence_s
        watcher = NetcdfFreshnessWatcher(
            root / "out", steady_from, steady_from + duration_s, offset_s=offset
        )
        watcher.prime()  # finds no NetCDF file in another format's run
        proc = subprocess.Popen(
            shifted(offset, "run", "--config", str(config)),
            cwd=REPO,
            # A crash in C code (netCDF/HDF5) leaves the Python stacks of every thread.
            env=child_env(PYTHONFAULTHANDLER="1"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        # Logs through a pipe, as journald would take them: not counted as the tree's disk writes.
        copier = threading.Thread(
            target=copy_stream, args=(proc.stdout, root / "daemon.log"), daemon=True
        )
        copier.start()
        sampler = PeakRssSampler(proc.pid)
        try:
            with sampler:
                steady_at, cpu0, io0, logged0 = None, 0.0, IoCounts(), 0
                end = steady_from + duration_s + cadence_s + 5
                while time.time() + offset < end:
                    if proc.poll() is not None:
                        copier.join(timeout=10)
                        tail = (root / "daemon.log").read_text(errors="replace")[-20_000:]
                        raise DaemonExitedError(proc.returncode, tail, root)
                    if steady_at is None and time.time() + offset >= steady_from:
                        # The whole tree: the daemon and any window worker.
                        steady_at = time.time()
                        cpu0, io0 = tree_cpu_seconds(proc.pid), tree_io(proc.pid)
                        logged0 = log_bytes(root / "daemon.log")
                    watcher.scan()
                    time.sleep(0.2)
                cpu1, io1, steady_end = tree_cpu_seconds(proc.pid), tree_io(proc.pid), time.time()
                time.sleep(0.5)  # the copier catches up with the pipe before it is measured
                logged = log_bytes(root / "daemon.log") - logged0
                memory = proc_memory_mb(proc.pid)
            proc.send_signal(signal.SIGTERM)
            _, status, _ = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            reap_orphans(sampler.seen)
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
            copier.join(timeout=10)
            if proc.stdout is not None:
                with contextlib.suppress(OSError):
                    proc.stdout.close()
        held_s = steady_end + offset - midnight.timestamp()
        files_now = dir_bytes(root / "out")
    if fmt == "netcdf" and not watcher.freshness:
        raise RuntimeError(f"no sample landed in the measured window; see {root}")
    assert steady_at is not None
    period = steady_end - steady_at
    written = io1 - io0
    # The measure is wchar (every write() of the tree); the log lines the daemon
    # wrote to its stdout pipe (what journald would take) are not files, so they are taken
    # out. write_bytes (pages the tree dirtied, 4 kB each at least) is reported beside it.
    file_wchar = max(0, written.wchar - logged)
    per_day = bytes_per_day(file_wchar, period)
    disk_per_day = bytes_per_day(written.write_bytes, period)
    day_files = day_file_bytes(files_now, held_s)
    freshness = (
        {
            "freshness_p50_s": percentile(watcher.freshness, 50),
            "freshness_p99_s": percentile(watcher.freshness, 99),
            "freshness_max_s": max(watcher.freshness),
            # The watcher's own delays: while the lag stays under the cadence, no sample is
            # stamped with a later append's time.
            "watcher_lag_max_s": watcher.lag_max_s,
            "watcher_scan_max_s": watcher.scan_max_s,
            # Launch to the last stream's first publish (nan: some stream never published).
            "all_published_s": (
                max(watcher.first_change.values()) - launch_real
                if len(watcher.first_change) >= streams
                else float("nan")
            ),
            "samples": float(len(watcher.freshness)),
        }
        if fmt == "netcdf"
        else {}
    )
    return freshness | {
        "cpu_share": (cpu1 - cpu0) / period,
        "rss_mb": memory.get("VmRSS", float("nan")),
        "max_rss_mb": sampler.peak_mb,
        "seed_s": seed.wall_s,
        "partition_hours": held_s / 3600,
        "steady_written_mb": written.write_bytes / 1e6,
        "steady_wchar_mb": written.wchar / 1e6,
        "steady_logged_mb": logged / 1e6,
        "written_per_day_mb": per_day / 1e6,
        "disk_written_per_day_mb": disk_per_day / 1e6,
        "day_files_mb": day_files / 1e6,
        "day_write_amplification": per_day / day_files,
        "day_disk_amplification": disk_per_day / day_files,
        "exit_code": float(proc.returncode),
    }


def run(ctx: BenchContext) -> WorkloadResult:
    """One long run (a single repetition: the run is long and the day's clock moves on)."""
    streams, cadence, duration = (10, 10, 40.0) if ctx.quick else (200, 30, 300.0)
    result = WorkloadResult(
        "nrt", "Workload 3 - near-real-time daemon, late in the day (NetCDF; CSV beside)"
    )
    scenario = Scenario(
        f"{streams} streams, cadence {cadence} s, {duration:g} s, daily partitions from "
        f"{SEED_AT.total_seconds() / 3600:.1f} h",
        {
            "streams": streams,
            "cadence_s": cadence,
            "duration_s": duration,
            "safety_lag_s": SAFETY_LAG_S,
            "max_rate_per_s": MAX_RATE_PER_S,
        },
    )
    if not _measure(ctx, result, scenario, "netcdf", duration):
        return result
    result.targets += [
        Target(
            "nrt: bytes written per day / a day's files",
            scenario.median(PIPELINE, "day_write_amplification"),
            "<=",
            3.0,
            "x",
        ),
        Target(
            "nrt: p99 freshness",
            scenario.median(PIPELINE, "freshness_p99_s"),
            "<=",
            cadence + 2.0,
            "s",
        ),
        Target("nrt: CPU share of one core", scenario.median(PIPELINE, "cpu_share"), "<=", 0.25),
    ]
    lag = scenario.median(PIPELINE, "watcher_lag_max_s")
    result.notes += [
        f"Freshness = when a sample time first became visible in its NetCDF file (the "
        "file's ctime at the append that holds it) - the sample time: at least the "
        f"{SAFETY_LAG_S} s safety lag (equal to the emulator's publication delay), plus up to "
        "one cadence until the next poll, plus the request and the append, plus queueing "
        f"behind the other streams (3 requests in flight, 200 ms each, at most "
        f"{MAX_RATE_PER_S} requests/s). The oldest sample of each poll is one cadence + the "
        "safety lag + the poll's own time old, so the p99 cannot be below about "
        f"{SAFETY_LAG_S} s + 0.99 cadence + the time a poll takes.",
        "The watcher's own lag, from a file's change to its read: at most "
        f"{lag:.2f} s (longest scan {scenario.median(PIPELINE, 'watcher_scan_max_s'):.2f} s); "
        + (
            "under the cadence (a stream polls once a cadence), so no poll's samples are "
            "stamped with the next poll's time. "
            if lag < cadence
            else "over the cadence: samples of an append may be stamped with a later one's "
            "time, and the freshness overstated by up to that lag. "
        )
        + "Every stream had published within "
        f"{scenario.median(PIPELINE, 'all_published_s'):.0f} s of the daemon's start "
        f"(the measured period starts at {WARMUP * cadence} s).",
        "Written per day = the process tree's `wchar` (every write(): files and state) over "
        "the steady period less the log bytes it sent down its stdout pipe, scaled to 24 h "
        "(the issue's measure); disk = `write_bytes`, the pages it dirtied (at least a 4 kB "
        "page per file touched per poll); a day's files = the output's size at the end scaled "
        "from the hours the partitions hold to 24.",
    ]
    add_csv(ctx, result, streams, cadence)
    return result


def _measure(
    ctx: BenchContext, result: WorkloadResult, scenario: Scenario, fmt: str, duration: float
) -> bool:
    """One run of `scenario` in `fmt`, added to `result`; False when the daemon exited early
    (recorded as a failed target, not raised: the other workloads keep their results)."""
    streams, cadence = int(scenario.params["streams"]), int(scenario.params["cadence_s"])
    print(f"  nrt {streams} {fmt} streams: seed, then {duration:g} s measured", flush=True)
    try:
        scenario.add(PIPELINE, run_once(ctx, streams, cadence, duration, fmt))
    except DaemonExitedError as exc:
        print(f"  nrt: {exc}", flush=True)
        result.targets.append(
            Target(f"nrt {fmt}: daemon ran through the measured period", 0.0, ">=", 1.0)
        )
        last = notable_lines(exc.log_tail)
        result.notes.append(
            f"The {fmt} daemon exited with {exc.returncode} before the end of the measured "
            "period; the last lines of its log: " + " / ".join(f"`{line[:300]}`" for line in last)
        )
        return False
    result.scenarios.append(scenario)
    return True


def add_csv(ctx: BenchContext, result: WorkloadResult, streams: int, cadence: int) -> None:
    """The same streams and day in CSV, a shorter run: the format whose partition a poll once
    parsed back whole, or kept as a table per dataset (docs/dev/memory.md). Held to the
    NetCDF run's bytes and CPU targets; its memory is reported beside."""
    duration = 40.0 if ctx.quick else 120.0
    scenario = Scenario(
        f"{streams} CSV streams, cadence {cadence} s, {duration:g} s, daily partitions from "
        f"{SEED_AT.total_seconds() / 3600:.1f} h",
        {"streams": streams, "cadence_s": cadence, "duration_s": duration, "format": "csv"},
    )
    if not _measure(ctx, result, scenario, "csv", duration):
        return
    result.targets += [
        Target(
            "nrt csv: bytes written per day / a day's files",
            scenario.median(PIPELINE, "day_write_amplification"),
            "<=",
            3.0,
            "x",
        ),
        Target(
            "nrt csv: CPU share of one core", scenario.median(PIPELINE, "cpu_share"), "<=", 0.25
        ),
    ]
    result.notes.append(
        f"CSV: peak RSS of the tree {scenario.median(PIPELINE, 'max_rss_mb'):.0f} MB, the "
        f"daemon's RSS at the end {scenario.median(PIPELINE, 'rss_mb'):.0f} MB (NetCDF above: "
        "the same streams and day). CSV's freshness is not measured (the watcher reads NetCDF)."
    )


def log_bytes(path: Path) -> int:
    """Bytes of log the harness has copied so far (0 before the file exists)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0

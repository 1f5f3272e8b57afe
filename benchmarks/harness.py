"""Measuring subprocesses (wall, CPU, peak RSS), summarising repetitions, and the emulator process.

Every contender runs as its own process so its CPU seconds and peak RSS are its own: `os.wait4`
returns the child's rusage (user + system seconds) without counting the harness or the
emulator, which runs as a separate process too. A contender's own worker processes count:
their CPU seconds reach the child's rusage when it reaps them, and peak RSS is sampled over
the whole process tree.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TOKEN = "bench-token"
# Added to every Oceans API request by the emulator: a realistic server-side delay.
SERVER_LATENCY_S = 0.2


@dataclass(slots=True)
class RunResult:
    """What one measured subprocess cost."""

    argv: list[str]
    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mb: float
    timed_out: bool = False
    # CPU of worker processes the child did not reap itself (see PeakRssSampler).
    deep_cpu_s: float = 0.0
    stdout: str = ""
    stderr: str = ""

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds of the child and every process it started."""
        return self.user_s + self.sys_s + self.deep_cpu_s

    @property
    def ok(self) -> bool:
        """Exited 0 within its time limit."""
        return self.returncode == 0 and not self.timed_out


def rusage_to_result(
    argv: Sequence[str],
    status: int,
    wall_s: float,
    usage: Any,
    peak_rss_mb: float,
    *,
    timed_out: bool = False,
) -> RunResult:
    """Build a RunResult from `os.wait4`'s status and rusage plus the sampled peak RSS.

    `ru_maxrss` is not used for memory: Linux's exec() copies the high-water mark of the
    forked copy of the parent into the child's record, so every child of a large harness
    would report at least the harness's own peak.
    """
    return RunResult(
        argv=list(argv),
        returncode=os.waitstatus_to_exitcode(status),
        wall_s=wall_s,
        user_s=float(usage.ru_utime),
        sys_s=float(usage.ru_stime),
        max_rss_mb=peak_rss_mb,
        timed_out=timed_out,
    )


def descendants(pid: int) -> list[tuple[int, int]]:
    """Every live descendant of `pid` as (pid, depth): children are depth 1."""
    found: list[tuple[int, int]] = []
    stack = [(pid, 0)]
    while stack:
        parent, depth = stack.pop()
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in os.listdir(f"/proc/{parent}/task"):
                with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                    text = Path(f"/proc/{parent}/task/{task}/children").read_text()
                    children = [(int(c), depth + 1) for c in text.split()]
                    found += children
                    stack += children
    return found


class PeakRssSampler:
    """Peak memory of a live process *and its descendants* (window workers), and the CPU of
    descendants that `os.wait4` on the process cannot see.

    Memory, every `interval` seconds: the kernel's VmHWM of the process itself (a high-water
    mark, so no peak of its own is missed), and the sum of PSS (proportional set size: a
    page shared by forked workers counts once in all, not once per process) over the process
    and every descendant (a sample: a peak shorter than the interval may be missed).
    `peak_mb` is the larger of the two; `own_peak_mb` is the process's alone.

    CPU: `os.wait4` reports the process plus the children it reaped. Workers forked by a
    fork server are grandchildren, reaped by that server, which the process does not reap;
    `deep_cpu_s` sums their last sampled user + system seconds (descendants at depth 2 or
    more), the part to add to wait4's figure.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._pid, self._interval = pid, interval
        self.peak_mb = 0.0
        self.own_peak_mb = 0.0
        self._deep_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    @property
    def deep_cpu_s(self) -> float:
        """CPU seconds of descendants below the direct children, as last sampled."""
        return sum(self._deep_cpu.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            # The process may exit between two reads; its last sample stands.
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                own = proc_memory_mb(self._pid)
                self.own_peak_mb = max(self.own_peak_mb, own.get("VmHWM", 0.0))
                tree = proc_pss_mb(self._pid)
                for child, depth in descendants(self._pid):
                    with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                        tree += proc_pss_mb(child)
                        if depth >= 2:
                            self._deep_cpu[child] = proc_cpu_seconds(child)
                self.peak_mb = max(self.peak_mb, self.own_peak_mb, tree)
            self._stop.wait(self._interval)

    def __enter__(self) -> PeakRssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_measured(
    argv: Sequence[str],
    *,
    cwd: Path = REPO,
    env: Mapping[str, str] | None = None,
    timeout: float = 3600.0,
    log_dir: Path | None = None,
    name: str = "run",
) -> RunResult:
    """Run `argv` to completion and measure it; stdout/stderr go to files and are kept."""
    log_dir = log_dir or Path(os.environ.get("TMPDIR", "/tmp"))
    log_dir.mkdir(parents=True, exist_ok=True)
    out_path, err_path = log_dir / f"{name}.stdout", log_dir / f"{name}.stderr"
    timed_out = threading.Event()
    with out_path.open("wb") as out, err_path.open("wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=cwd, env=dict(env or os.environ), stdout=out, stderr=err
        )

        def kill() -> None:
            timed_out.set()
            proc.send_signal(signal.SIGKILL)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            with PeakRssSampler(proc.pid) as sampler:
                # wait4 reaps the child and hands back its own CPU times (not the harness's).
                _, status, usage = os.wait4(proc.pid, 0)
        finally:
            timer.cancel()
        wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    result = rusage_to_result(
        argv, status, wall, usage, sampler.peak_mb, timed_out=timed_out.is_set()
    )
    result.deep_cpu_s = sampler.deep_cpu_s
    result.stdout = out_path.read_text(errors="replace")
    result.stderr = err_path.read_text(errors="replace")
    return result


def python_argv(*args: str) -> list[str]:
    """The interpreter running the suite (the project's .venv) with `args`."""
    return [sys.executable, *args]


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a contender: no ONC_* variables leaking in, unbuffered output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONC_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass(frozen=True, slots=True)
class Stats:
    """Median and spread of one metric over repetitions."""

    median: float
    low: float
    high: float
    n: int

    @property
    def spread_pct(self) -> float:
        """(max - min) / median, in percent: how much the repetitions disagree."""
        return 0.0 if self.median == 0 else (self.high - self.low) / abs(self.median) * 100


def summarize(values: Sequence[float]) -> Stats:
    """Median, min, max and count of `values` (at least one)."""
    if not values:
        raise ValueError("no values to summarize")
    return Stats(
        median=float(statistics.median(values)),
        low=float(min(values)),
        high=float(max(values)),
        n=len(values),
    )


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Stats:
    """Ratios of repetitions run side by side (same index), summarised.

    Pairing cancels slow drift of a shared machine better than a ratio of two medians.
    """
    pairs = [(a, b) for a, b in zip(numerators, denominators, strict=False) if b]
    if not pairs:
        raise ValueError("no pairs with a non-zero denominator")
    return summarize([a / b for a, b in pairs])


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def latency_plan(seconds: float = SERVER_LATENCY_S) -> dict[str, Any]:
    """A fault plan adding `seconds` to every Oceans API endpoint (downloads included)."""
    return {"rules": [{"kind": "latency", "endpoint": "*", "seconds": seconds}]}


@dataclass
class EmulatorProcess:
    """The emulator as a separate process: `python -m pipeline emulator`, or the launcher."""

    workdir: Path
    latency_s: float = SERVER_LATENCY_S
    archive_file_sizes: dict[str, int] = field(default_factory=dict)
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the Oceans API side."""
        return f"http://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        """The CLI when it can express the setup; the launcher when archive sizes are needed."""
        faults = self.workdir / "faults.json"
        faults.write_text(json.dumps(latency_plan(self.latency_s)))
        common = ["--onc-port", str(self.port), "--registry-port", str(free_port())]
        if self.archive_file_sizes:
            # `onc-pipeline emulator` has no flag for archive_file_sizes.
            return python_argv(
                "-m", "benchmarks.emulator_launcher", *common, "--token", TOKEN,
                "--faults", str(faults), "--sizes", json.dumps(self.archive_file_sizes),
            )  # fmt: skip
        return python_argv(
            "-m", "pipeline", "emulator", *common, "--token", TOKEN, "--faults", str(faults),
            "--log-level", "warning", "--log-format", "json",
        )  # fmt: skip

    def __enter__(self) -> EmulatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        log = (self.workdir / "emulator.log").open("ab")
        self.proc = subprocess.Popen(
            self.argv(), cwd=REPO, env=child_env(), stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        self._wait_ready(timeout=30.0)
        return self

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"emulator exited with {self.proc.returncode}; see {self.workdir}"
                )
            try:
                with urllib.request.urlopen(self.url + "/_emulator/counts", timeout=1.0):
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
        raise RuntimeError("emulator did not answer within 30 s")

    def get_json(self, path: str) -> Any:
        """GET an introspection route (`/_emulator/...`: no token, no faults)."""
        with urllib.request.urlopen(self.url + path, timeout=30.0) as resp:
            return json.loads(resp.read())

    def __exit__(self, *exc: object) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None


def proc_cpu_seconds(pid: int, *, reaped_children: bool = False) -> float:
    """utime + stime of a live process from /proc/<pid>/stat (plus cutime + cstime, the
    children it has reaped, when asked)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    own = int(fields[11]) + int(fields[12])
    if reaped_children:
        own += int(fields[13]) + int(fields[14])
    return own / ticks


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of a live process, its live descendants and the children it reaped."""
    total = proc_cpu_seconds(pid, reaped_children=True)
    for child, _ in descendants(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            total += proc_cpu_seconds(child)
    return total


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a live process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024 / 1e6
    return out


def proc_pss_mb(pid: int) -> float:
    """Proportional set size of a live process in MB (VmRSS where smaps_rollup is missing)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except (FileNotFoundError, PermissionError):
        return proc_memory_mb(pid).get("VmRSS", 0.0)
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024 / 1e6
    return proc_memory_mb(pid).get("VmRSS", 0.0)


def result_fields(result: RunResult) -> dict[str, Any]:
    """The numbers of a run for the results file (argv and logs left out)."""
    data = asdict(result)
    for key in ("argv", "stdout", "stderr"):
        data.pop(key)
    data["cpu_s"] = result.cpu_s
    return data

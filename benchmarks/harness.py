"""Measuring subprocesses (wall, CPU, peak RSS), summarising repetitions, and the emulator process.

Every contender runs as its own process so its CPU seconds and peak RSS are its own: `os.wait4`
returns the child's rusage (user + system seconds, `ru_maxrss`) without counting the harness or
the emulator, which runs as a separate process too.
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
    stdout: str = ""
    stderr: str = ""

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds of the child."""
        return self.user_s + self.sys_s

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


class PeakRssSampler:
    """Reads VmHWM (the kernel's per-process RSS high-water mark) of a live process.

    VmHWM only grows, so sampling it every `interval` seconds misses only a peak reached in
    the last interval before exit.
    """

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        self._pid, self._interval = pid, interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rss-{pid}", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            # The process may exit between two reads; its last sample stands.
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
                self.peak_mb = max(self.peak_mb, proc_memory_mb(self._pid).get("VmHWM", 0.0))
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


def proc_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of a live process, in MB."""
    out: dict[str, float] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(rest.split()[0]) * 1024 / 1e6
    return out


def result_fields(result: RunResult) -> dict[str, Any]:
    """The numbers of a run for the results file (argv and logs left out)."""
    data = asdict(result)
    for key in ("argv", "stdout", "stderr"):
        data.pop(key)
    data["cpu_s"] = result.cpu_s
    return data

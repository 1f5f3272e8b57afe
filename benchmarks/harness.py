"""Measuring subprocesses (wall, CPU, peak RSS), summarising repetitions, and the emulator process.

Every contender runs as its own process so its CPU seconds and peak RSS are its own: `os.wait4`
returns the child's rusage (user + system seconds) without counting the harness or the
emulator, which runs as a separate process too. A contender's own worker processes count:
their CPU seconds reach the child's rusage when it reaps them, and peak RSS is sampled over
the whole process tree.

Bytes written: the suite makes itself a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`, once,
in `benchmarks.__main__`), so a worker orphaned by the contender's exit (a fork server's
children) is re-parented to the harness instead of init. Each process's `/proc/<pid>/io`
counts its own writes plus those of every child it has reaped (the kernel adds a reaped
child's counts to its parent's when it reaps it), so the contender's figure, read while it is
a zombie (waited for with `WNOWAIT`, not yet reaped), plus the figures of the orphans the
harness reaps, counts every process of the tree exactly once.
The contender's stdout and stderr go through pipes to files the harness writes, as journald
would take them: its logs show in `wchar` (every `write()`) but not in `write_bytes` (bytes
sent to the storage layer).
"""

from __future__ import annotations

import compileall
import contextlib
import ctypes
import json
import os
import py_compile
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


@dataclass(frozen=True, slots=True)
class IoCounts:
    """Write counters of `/proc/<pid>/io`, in bytes.

    `wchar`: bytes passed to `write()`-like calls (files, pipes to workers, logs);
    `write_bytes`: bytes the process caused to be sent to the storage layer (pages dirtied;
    0 where the kernel does not account it, e.g. tmpfs); `cancelled_write_bytes`: dirty
    pages dropped before writeback (a file truncated or deleted soon after being written).
    """

    wchar: int = 0
    write_bytes: int = 0
    cancelled_write_bytes: int = 0

    def __add__(self, other: IoCounts) -> IoCounts:
        return IoCounts(
            self.wchar + other.wchar,
            self.write_bytes + other.write_bytes,
            self.cancelled_write_bytes + other.cancelled_write_bytes,
        )

    def __sub__(self, other: IoCounts) -> IoCounts:
        return IoCounts(
            self.wchar - other.wchar,
            self.write_bytes - other.write_bytes,
            self.cancelled_write_bytes - other.cancelled_write_bytes,
        )


def parse_proc_io(text: str) -> IoCounts:
    """The write counters of a `/proc/<pid>/io` text (`key: value` lines; missing keys are 0)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and value.strip().isdigit():
            fields[key.strip()] = int(value)
    return IoCounts(
        wchar=fields.get("wchar", 0),
        write_bytes=fields.get("write_bytes", 0),
        cancelled_write_bytes=fields.get("cancelled_write_bytes", 0),
    )


def proc_io(pid: int) -> IoCounts:
    """`/proc/<pid>/io` of a live or zombie process: its own writes and its reaped children's."""
    return parse_proc_io(Path(f"/proc/{pid}/io").read_text())


def tree_io(pid: int) -> IoCounts:
    """Writes of a live process (with the children it reaped) and of its live descendants.

    For deltas over a steady period: a descendant reaped between two reads moves into its
    parent's figure, so the sum stays continuous (one reaped in the instant between reading
    its parent and reading it is missed once).
    """
    total = proc_io(pid)
    for child, _ in descendants(pid):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
            total += proc_io(child)
    return total


def dir_bytes(root: Path, *, exclude: tuple[str, ...] = ()) -> int:
    """Sum of the sizes of the regular files under `root` (names in `exclude` skipped)."""
    if not root.exists():
        return 0
    total = 0
    for path in root.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            if path.is_file() and path.name not in exclude:
                total += path.stat().st_size
    return total


_PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False elsewhere."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def parent_pid(pid: int) -> int:
    """The parent of a live or zombie process, from `/proc/<pid>/stat`."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def reap_orphans(pids: set[int], timeout: float = 15.0) -> IoCounts:
    """Wait for the processes of `pids` that were re-parented to this one, read each one's io
    as a zombie, then reap it; those still alive after `timeout` are killed first."""
    total = IoCounts()
    me = os.getpid()
    deadline = time.monotonic() + timeout
    pending = set()
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            if parent_pid(pid) == me:
                pending.add(pid)
    while pending:
        for pid in sorted(pending):
            try:
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
            except ChildProcessError:
                pending.discard(pid)
                continue
            if info is None:
                if time.monotonic() > deadline:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                continue
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += proc_io(pid)
            os.waitpid(pid, 0)
            pending.discard(pid)
        if pending:
            time.sleep(0.02)
    return total


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
    # The process tree's /proc/<pid>/io, every process counted once (see the module doc).
    io: IoCounts = field(default_factory=IoCounts)
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
        # Every descendant ever seen: the ones orphaned at the end are reaped by the harness.
        self.seen: set[int] = set()
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
                    self.seen.add(child)
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


def copy_stream(source: Any, dest: Path) -> None:
    """Copy a pipe to a file until end of file (run in a thread)."""
    # The contender's logs reach the disk through the harness, as journald's would.
    with dest.open("wb") as out:
        while chunk := source.read1(1 << 16):
            out.write(chunk)


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
    started = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env or os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    copiers = [
        threading.Thread(target=copy_stream, args=(stream, path), daemon=True)
        for stream, path in ((proc.stdout, out_path), (proc.stderr, err_path))
    ]
    for copier in copiers:
        copier.start()

    def kill() -> None:
        timed_out.set()
        proc.send_signal(signal.SIGKILL)

    timer = threading.Timer(timeout, kill)
    timer.start()
    try:
        with PeakRssSampler(proc.pid) as sampler:
            # Exited but not reaped: its /proc/<pid>/io still holds the final counts.
            os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
            wall = time.perf_counter() - started
            io = IoCounts()
            with contextlib.suppress(FileNotFoundError, ProcessLookupError, PermissionError):
                io = proc_io(proc.pid)
            # wait4 reaps the child and hands back its own CPU times (not the harness's).
            _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    io += reap_orphans(sampler.seen - {proc.pid})
    for copier in copiers:
        # A descendant the harness never saw could hold the pipes open: do not wait forever.
        copier.join(timeout=30)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()
    result = rusage_to_result(
        argv, status, wall, usage, sampler.peak_mb, timed_out=timed_out.is_set()
    )
    result.deep_cpu_s = sampler.deep_cpu_s
    result.io = io
    result.stdout = out_path.read_text(errors="replace")
    result.stderr = err_path.read_text(errors="replace")
    return result


def io_metrics(io: IoCounts, published_bytes: int, state_bytes: int = 0) -> dict[str, float]:
    """Bytes written beside the bytes published, in MB, and their ratio (write amplification).

    `written_mb` is `write_bytes` (what reached the storage layer: data files, temporary
    files, SQLite state) where the kernel reports it, else `wchar` (every `write()`, pipes to
    worker processes and logs included); `state_mb` is the size of the state files at the end,
    for scale: the bytes SQLite wrote cannot be told apart from the rest without tracing.
    """
    written = io.write_bytes or io.wchar
    return {
        "written_mb": written / 1e6,
        "wchar_mb": io.wchar / 1e6,
        "cancelled_mb": io.cancelled_write_bytes / 1e6,
        "published_mb": published_bytes / 1e6,
        "state_mb": state_bytes / 1e6,
        "write_amplification": written / published_bytes if published_bytes else float("nan"),
    }


def state_bytes(db: Path) -> int:
    """Size of a SQLite database with its `-wal` and `-shm` files (0 for those missing)."""
    total = 0
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            total += db.with_name(db.name + suffix).stat().st_size
    return total


def compile_bytecode(root: Path = REPO) -> bool:
    """Write the bytecode of the checkout's packages, as `pip install` does for an installed
    package (the Docker image's included).

    Contenders run from the checkout. Without bytecode on disk, every process compiles what
    it imports from source, and with `PYTHONDONTWRITEBYTECODE` set (it is on the benchmark
    machine) it does so again in every run: 0.1 s of the daemon's start-up and more in the
    fork server, which no installed pipeline pays. The official client and aiohttp run from
    their installed, compiled packages.

    Plain bytecode (contenders run without `-O`), checked by timestamp as Python writes it
    itself. False, with a warning, when some file could not be compiled or written (a
    read-only checkout): the suite still runs, and those contenders compile from source.
    """
    ok = True
    for package in ("pipeline", "benchmarks"):
        with contextlib.redirect_stdout(sys.stderr):  # compileall reports on stdout
            ok &= bool(
                compileall.compile_dir(
                    root / package,
                    quiet=1,
                    workers=1,
                    optimize=0,
                    invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP,
                )
            )
    if not ok:
        print(
            f"warning: could not write all bytecode under {root} (see above): contenders "
            "compile those modules from source in every run",
            file=sys.stderr,
        )
    return ok


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


# Starts of an emulator tried before giving up (`EmulatorProcess.__enter__`).
_START_ATTEMPTS = 4


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
    # Seconds added to the emulator's clock (the launcher), for a simulated time of day.
    clock_offset_s: float = 0.0
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
        if self.archive_file_sizes or self.clock_offset_s:
            # `onc-pipeline emulator` has no flag for archive_file_sizes or a clock offset.
            return python_argv(
                "-m", "benchmarks.emulator_launcher", *common, "--token", TOKEN,
                "--faults", str(faults), "--sizes", json.dumps(self.archive_file_sizes),
                "--clock-offset-s", repr(self.clock_offset_s),
            )  # fmt: skip
        return python_argv(
            "-m", "pipeline", "emulator", *common, "--token", TOKEN, "--faults", str(faults),
            "--log-level", "warning", "--log-format", "json",
        )  # fmt: skip

    def __enter__(self) -> EmulatorProcess:
        self.workdir.mkdir(parents=True, exist_ok=True)
        # `free_port` closes its socket before the emulator binds: another process (often a
        # connection's ephemeral port) may take the port in between, and the emulator exits
        # at once. Such a start is retried on fresh ports.
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            log = (self.workdir / "emulator.log").open("ab")
            self.proc = subprocess.Popen(
                self.argv(), cwd=REPO, env=child_env(), stdout=log, stderr=subprocess.STDOUT
            )
            log.close()
            if self._wait_ready(timeout=30.0) or attempt == _START_ATTEMPTS:
                break
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(f"emulator exited with {self.proc.returncode}; see {self.workdir}")
        return self

    def _wait_ready(self, timeout: float) -> bool:
        """True once this emulator answers; False when it exited first (a port taken)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(self.url + "/_emulator/counts", timeout=1.0):
                    pass
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.05)
                continue
            return self.proc is None or self.proc.poll() is None
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

"""The benchmark harness measures and summarises correctly (no timing is asserted)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from benchmarks import harness
from benchmarks.harness import (
    PeakRssSampler,
    compile_bytecode,
    latency_plan,
    paired_ratio,
    proc_cpu_seconds,
    proc_memory_mb,
    run_measured,
    rusage_to_result,
    summarize,
)


def test_summarize_gives_median_min_max_and_spread() -> None:
    stats = summarize([4.0, 1.0, 3.0, 2.0])
    assert (stats.median, stats.low, stats.high, stats.n) == (2.5, 1.0, 4.0, 4)
    assert stats.spread_pct == pytest.approx(120.0)


def test_summarize_refuses_no_values() -> None:
    with pytest.raises(ValueError, match="no values"):
        summarize([])


def test_paired_ratio_pairs_repetitions_by_index() -> None:
    # Pairwise 10/2, 30/3, 8/4 -> 5, 10, 2: median 5, not median(a)/median(b) = 10/3.
    stats = paired_ratio([10.0, 30.0, 8.0], [2.0, 3.0, 4.0])
    assert stats.median == 5.0
    assert (stats.low, stats.high) == (2.0, 10.0)


def test_paired_ratio_skips_zero_denominators() -> None:
    assert paired_ratio([1.0, 6.0], [0.0, 2.0]).median == 3.0
    with pytest.raises(ValueError, match="non-zero"):
        paired_ratio([1.0], [0.0])


def test_rusage_to_result_takes_cpu_from_rusage_and_memory_from_the_sampler() -> None:
    usage = SimpleNamespace(ru_utime=1.25, ru_stime=0.5, ru_maxrss=999_999)
    result = rusage_to_result(["x"], 0, 2.0, usage, 42.0)
    assert result.cpu_s == 1.75
    assert result.max_rss_mb == 42.0
    assert result.ok


def test_rusage_to_result_decodes_exit_status() -> None:
    usage = SimpleNamespace(ru_utime=0.0, ru_stime=0.0, ru_maxrss=0)
    assert rusage_to_result(["x"], 3 << 8, 1.0, usage, 1.0).returncode == 3
    assert not rusage_to_result(["x"], 3 << 8, 1.0, usage, 1.0).ok


def test_run_measured_reports_the_childs_memory_not_the_harness(tmp_path: Path) -> None:
    # The child allocates and touches ~60 MB, then exits 4 with output on both streams.
    code = (
        "import sys, time; b = bytearray(60_000_000); b[::4096] = b'x' * len(b[::4096]);"
        "time.sleep(0.3); print('out'); print('err', file=sys.stderr); sys.exit(4)"
    )
    result = run_measured([sys.executable, "-c", code], log_dir=tmp_path, name="child")
    assert result.returncode == 4
    assert not result.ok
    assert result.stdout == "out\n"
    assert result.stderr == "err\n"
    assert 60 <= result.max_rss_mb < 200
    assert result.wall_s >= 0.3
    assert result.cpu_s > 0


def test_run_measured_kills_on_timeout(tmp_path: Path) -> None:
    code = "import time; time.sleep(30)"
    result = run_measured([sys.executable, "-c", code], log_dir=tmp_path, timeout=0.5)
    assert result.timed_out
    assert result.returncode == -9
    assert not result.ok


def test_proc_readers_see_this_process() -> None:
    import os

    memory = proc_memory_mb(os.getpid())
    assert memory["VmHWM"] >= memory["VmRSS"] > 0
    assert proc_cpu_seconds(os.getpid()) > 0


def test_peak_sampler_tolerates_a_vanished_process() -> None:
    with PeakRssSampler(2**22 + 12345, interval=0.001) as sampler:
        pass
    assert sampler.peak_mb == 0.0


def test_latency_plan_covers_every_endpoint() -> None:
    from pipeline.emulator.faults import FaultPlan

    plan = latency_plan(0.2)
    assert plan == {"rules": [{"kind": "latency", "endpoint": "*", "seconds": 0.2}]}
    parsed = FaultPlan.from_mapping(plan)
    assert parsed.rules[0].kind == "latency"
    assert parsed.rules[0].seconds == 0.2
    for endpoint in ("scalardata.device", "archivefile.download", "archivefile.device"):
        assert parsed.rules[0].matches(endpoint)


def test_compile_bytecode_writes_what_an_installed_package_has(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for package in ("pipeline", "benchmarks"):
        (tmp_path / package / "sub").mkdir(parents=True)
        (tmp_path / package / "sub" / "mod.py").write_text("VALUE = 1\n")
    assert compile_bytecode(tmp_path)
    for package in ("pipeline", "benchmarks"):
        cached = list((tmp_path / package / "sub" / "__pycache__").glob("mod.*.pyc"))
        assert [p.name.count(".") for p in cached] == [2]  # mod.cpython-311.pyc, no opt-N
    # A file that cannot be compiled is a warning, not the end of the run; stdout (where
    # the results go) stays clean.
    (tmp_path / "pipeline" / "broken.py").write_text("def (:\n")
    assert not compile_bytecode(tmp_path)
    out, err = capsys.readouterr()
    assert out == ""
    assert "broken.py" in err
    assert "compile those modules from source" in err


def test_an_emulator_whose_port_was_taken_starts_again_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `free_port` closes its socket before the emulator binds: here another process takes
    # the first port in between (and accepts connections without answering).
    real_free_port = harness.free_port
    taken: list[socket.socket] = []

    def racing_free_port() -> int:
        port = real_free_port()
        if not taken:
            squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            squatter.bind(("127.0.0.1", port))
            squatter.listen()
            taken.append(squatter)
        return port

    monkeypatch.setattr(harness, "free_port", racing_free_port)
    try:
        with harness.EmulatorProcess(tmp_path / "emu", latency_s=0.0) as emu:
            assert emu.port != taken[0].getsockname()[1]
            assert emu.get_json("/_emulator/counts")["total"] == 0
    finally:
        for squatter in taken:
            squatter.close()

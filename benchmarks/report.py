"""Results of a benchmark run: scenarios, targets, the machine, JSON and markdown renderings."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks.harness import Stats, summarize

# (metric key, column label, format) of the columns a scenario table shows when present.
COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("wall_s", "wall s", "{:.2f}"),
    ("values_per_s", "values/s", "{:,.0f}"),
    ("mb_per_s", "MB/s", "{:,.1f}"),
    ("transfer_mb_per_s", "transfer MB/s", "{:,.1f}"),
    ("values_per_cpu_s", "values/s/core", "{:,.0f}"),
    ("max_rss_mb", "peak RSS MB", "{:.0f}"),
    ("cpu_s", "CPU s", "{:.2f}"),
    ("written_mb", "written MB", "{:,.1f}"),
    ("wchar_mb", "wchar MB", "{:,.1f}"),
    ("published_mb", "files MB", "{:,.1f}"),
    ("write_amplification", "written / files", "{:.2f}"),
    ("cpu_per_instance_s", "CPU s/instance", "{:.2f}"),
    ("emulator_cpu_s", "emulator CPU s", "{:.2f}"),
    ("postgres_cpu_s", "PostgreSQL CPU s", "{:.2f}"),
    ("requests", "requests", "{:.0f}"),
    ("req_per_s", "req/s", "{:.1f}"),
    ("peak_req_per_s", "most req in 1 s", "{:.0f}"),
    ("peak_in_flight", "peak in flight", "{:.0f}"),
    ("freshness_p50_s", "fresh p50 s", "{:.2f}"),
    ("freshness_p99_s", "fresh p99 s", "{:.2f}"),
    ("cpu_share", "CPU share", "{:.3f}"),
    ("partition_hours", "partition h", "{:.1f}"),
    ("written_per_day_mb", "written MB/day (wchar)", "{:,.0f}"),
    ("disk_written_per_day_mb", "disk MB/day (write_bytes)", "{:,.0f}"),
    ("day_files_mb", "day's files MB", "{:,.0f}"),
    ("day_write_amplification", "written/day / day's files", "{:.2f}"),
    ("day_disk_amplification", "disk/day / day's files", "{:.2f}"),
)


@dataclass
class Target:
    """A goal of the issue, evaluated on a measured median."""

    name: str
    measured: float
    op: str  # ">=" or "<="
    threshold: float
    unit: str = ""

    @property
    def passed(self) -> bool:
        """True when the measurement meets the threshold."""
        if self.op == ">=":
            return self.measured >= self.threshold
        if self.op == "<=":
            return self.measured <= self.threshold
        raise ValueError(f"unknown operator {self.op!r}")

    def to_json(self) -> dict[str, Any]:
        """A plain mapping for the results file."""
        return {
            "name": self.name,
            "measured": self.measured,
            "op": self.op,
            "threshold": self.threshold,
            "unit": self.unit,
            "passed": self.passed,
        }


@dataclass
class Scenario:
    """One setting of a workload: every contender's repetitions, and ratios between them."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    # contender -> one mapping of metric -> value per repetition, in run order
    runs: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    ratios: dict[str, Stats] = field(default_factory=dict)

    def add(self, contender: str, metrics: dict[str, float]) -> None:
        """Record one repetition of a contender."""
        self.runs.setdefault(contender, []).append(metrics)

    def series(self, contender: str, metric: str) -> list[float]:
        """One metric of a contender over its repetitions (missing values skipped)."""
        return [r[metric] for r in self.runs.get(contender, []) if metric in r]

    def stats(self, contender: str, metric: str) -> Stats | None:
        """Median and spread of a metric, None when never measured."""
        values = self.series(contender, metric)
        return summarize(values) if values else None

    def median(self, contender: str, metric: str) -> float:
        """The median of a metric (NaN when never measured)."""
        stats = self.stats(contender, metric)
        return stats.median if stats is not None else float("nan")

    def to_json(self) -> dict[str, Any]:
        """Raw repetitions plus their summaries."""
        summary = {
            contender: {
                metric: _stats_json(s)
                for metric in sorted({k for run in runs for k in run})
                if (s := self.stats(contender, metric)) is not None
            }
            for contender, runs in self.runs.items()
        }
        return {
            "name": self.name,
            "params": self.params,
            "runs": self.runs,
            "summary": summary,
            "ratios": {k: _stats_json(v) for k, v in self.ratios.items()},
        }


@dataclass
class WorkloadResult:
    """Everything one workload measured."""

    name: str
    title: str
    scenarios: list[Scenario] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """A plain mapping for the results file."""
        return {
            "name": self.name,
            "title": self.title,
            "scenarios": [s.to_json() for s in self.scenarios],
            "targets": [t.to_json() for t in self.targets],
            "notes": self.notes,
        }


def _stats_json(stats: Stats) -> dict[str, float]:
    return {
        "median": stats.median,
        "min": stats.low,
        "max": stats.high,
        "n": stats.n,
        "spread_pct": stats.spread_pct,
    }


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, Python, OS and the load when the run started."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram_gb = 0.0
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram_gb = int(line.split()[1]) * 1024 / 1e9
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "ram_gb": round(ram_gb, 1),
        "python": sys.version.split()[0],
        "os": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def _cell(stats: Stats | None, fmt: str) -> str:
    if stats is None:
        return "-"
    text = fmt.format(stats.median)
    if stats.n > 1:
        text += f" ±{stats.spread_pct:.0f}%"
    return text


def scenario_table(scenario: Scenario) -> list[str]:
    """A markdown table: one row per contender, medians with their spread."""
    present = [c for c in COLUMNS if any(scenario.series(name, c[0]) for name in scenario.runs)]
    lines = [
        "| contender | " + " | ".join(label for _, label, _ in present) + " | reps |",
        "|---|" + "---:|" * (len(present) + 1),
    ]
    for name in scenario.runs:
        cells = [_cell(scenario.stats(name, key), fmt) for key, _, fmt in present]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {len(scenario.runs[name])} |")
    return lines


def render_markdown(results: list[WorkloadResult], machine: dict[str, Any], started: str) -> str:
    """The whole run as markdown: machine, per-scenario tables, ratios, targets, notes."""
    out = [
        f"Run {started} on {machine['cpu']}, {machine['cores']} cores, {machine['ram_gb']} GB RAM, "
        f"Python {machine['python']}, {machine['os']} (load at start "
        f"{', '.join(str(x) for x in machine['load_avg_at_start'])}).",
        "",
        "Cells: median over repetitions ±(max - min)/median.",
    ]
    for result in results:
        out += ["", f"### {result.title}"]
        for scenario in result.scenarios:
            params = ", ".join(f"{k}={v}" for k, v in scenario.params.items())
            out += ["", f"**{scenario.name}**" + (f" ({params})" if params else ""), ""]
            out += scenario_table(scenario)
            if scenario.ratios:
                out.append("")
                out += [
                    f"- {name}: {s.median:.2f} (min {s.low:.2f}, max {s.high:.2f}, n={s.n})"
                    for name, s in scenario.ratios.items()
                ]
        if result.targets:
            out += ["", "| target | measured | goal | result |", "|---|---:|---:|---|"]
            for t in result.targets:
                verdict = "PASS" if t.passed else "FAIL"
                out.append(
                    f"| {t.name} | {t.measured:.3g} {t.unit} | {t.op} {t.threshold:g} {t.unit} "
                    f"| {verdict} |"
                )
        if result.notes:
            out += [""] + [f"- {note}" for note in result.notes]
    return "\n".join(out) + "\n"


def write_results(
    results: list[WorkloadResult], machine: dict[str, Any], args: dict[str, Any], directory: Path
) -> tuple[Path, Path, str]:
    """Write `<timestamp>.json` and `<timestamp>.md` under `directory`; return both and the md."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    directory.mkdir(parents=True, exist_ok=True)
    markdown = render_markdown(results, machine, stamp)
    data = {
        "started": stamp,
        "machine": machine,
        "args": args,
        "workloads": [r.to_json() for r in results],
    }
    json_path = directory / f"{stamp}.json"
    json_path.write_text(json.dumps(data, indent=2, allow_nan=True) + "\n")
    md_path = directory / f"{stamp}.md"
    md_path.write_text(markdown)
    return json_path, md_path, markdown

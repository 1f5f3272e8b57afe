"""`python -m benchmarks [--quick] [--only backfill,...,scale_out] [--reps N]`.

Runs the workloads of issue 10 against the emulator in a separate process, writes
`benchmarks/results/<timestamp>.json` and `.md`, prints the markdown, and (for full runs of
every workload, or with --update-doc) puts the table into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks import archive, backfill, nrt, parse_write, scale_out
from benchmarks.context import BenchContext
from benchmarks.harness import REPO, become_subreaper, compile_bytecode
from benchmarks.report import WorkloadResult, machine_info, write_results
from pipeline.logs import configure_logging

WORKLOADS: dict[str, Callable[[BenchContext], WorkloadResult]] = {
    "backfill": backfill.run,
    "archive": archive.run,
    "nrt": nrt.run,
    "parse_write": parse_write.run,
    "scale_out": scale_out.run,
}
DOC = REPO / "BENCHMARKS.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"


def update_doc(markdown: str, doc: Path = DOC) -> None:
    """Replace the text between the result markers of BENCHMARKS.md."""
    text = doc.read_text()
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    doc.write_text(f"{head}{START}\n{markdown}{END}{tail}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repetition")
    parser.add_argument(
        "--only", default=",".join(WORKLOADS), help=f"comma-separated subset of {list(WORKLOADS)}"
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3; quick 1)")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    parser.add_argument("--workdir", type=Path, default=None, help="scratch (default: a temp dir)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target fails")
    parser.add_argument(
        "--update-doc", action="store_true", help="write the table to BENCHMARKS.md"
    )
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {sorted(unknown)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the chosen workloads and write the results."""
    args = parse_args(argv)
    # The in-process emulator of workload 4 logs; keep the terminal for the results.
    configure_logging(level="warning", fmt="json", stream=sys.stderr)
    # Workers orphaned when a contender exits come to us, so their writes are counted.
    become_subreaper()
    compile_bytecode()  # contenders start as an installed pipeline does (harness.py)
    reps = args.reps or (1 if args.quick else 3)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="onc-bench-"))
    ctx = BenchContext(quick=args.quick, reps=reps, workdir=workdir)
    machine = machine_info()
    results: list[WorkloadResult] = []
    started = time.perf_counter()
    try:
        for name in args.only.split(","):
            print(f"{name}:", flush=True)
            t0 = time.perf_counter()
            results.append(WORKLOADS[name](ctx))
            print(f"{name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    json_path, md_path, markdown = write_results(
        results,
        machine,
        {**vars(args), "reps": reps, "out": str(args.out), "workdir": str(workdir)},
        args.out,
    )
    print(markdown)
    print(f"wrote {json_path} and {md_path} in {time.perf_counter() - started:.0f} s")
    if args.update_doc or (not args.quick and len(results) == len(WORKLOADS)):
        update_doc(markdown)
        print(f"updated {DOC}")
    failed = [t.name for r in results for t in r.targets if not t.passed]
    return 1 if failed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python3
"""Developer entry point needing only Python 3.11+: `python3 dev.py run|test|bench|lint`.

It creates `.venv` on first use (again whenever pyproject.toml, the build hook or a C module
changes: the install compiles those), installs the package with its test extras there, and
runs the command inside it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = Path(os.environ.get("ONC_PIPELINE_VENV", ROOT / ".venv"))
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed"


def ensure_venv() -> None:
    """Create the virtual environment and install the project when what it builds from changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - dev.py may be started by an older python3
        sys.exit(f"onc-pipeline needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    digest = hashlib.sha256()
    # What the install builds from, and whether a C compiler is there to build with: one
    # installed later (after a pure-Python install) compiles the C modules then.
    sources = [ROOT / "pyproject.toml", ROOT / "hatch_build.py"]
    for source in [*sources, *sorted(ROOT.glob("pipeline/**/_*.c"))]:
        data = source.read_bytes()
        digest.update(f"{source.relative_to(ROOT)}\0{len(data)}\0".encode() + data)
    digest.update(b"cc" if shutil.which(os.environ.get("CC", "cc").split()[0]) else b"no cc")
    if STAMP.exists() and STAMP.read_text() == digest.hexdigest():
        return
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("dev.py: installing onc-pipeline and its test tools", flush=True)
    pip = [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "-e", f"{ROOT}[test]"], check=True, cwd=ROOT)
    STAMP.write_text(digest.hexdigest())


def run(*argv: str) -> None:
    """Run one command from the venv; stop with its exit code when it fails.

    Ctrl-C reaches the command too (same process group): it stops on its own, draining
    first, so dev.py waits for it instead of killing it or printing a traceback.
    """
    child = subprocess.Popen([str(BIN / argv[0]), *argv[1:]], cwd=ROOT)
    while True:
        try:
            code = child.wait()
            break
        except KeyboardInterrupt:
            continue
    if code:
        sys.exit(128 - code if code < 0 else code)


def main(args: list[str]) -> None:
    """Dispatch `run`, `test`, `lint`, `bench`."""
    command, rest = (args[0], args[1:]) if args else ("help", [])
    if command not in {"run", "test", "lint", "bench"}:
        print(__doc__)
        print("commands: run (the demo), test (lint, types, tests), lint, bench")
        sys.exit(0 if command == "help" else 2)
    ensure_venv()
    if command == "run":
        run("onc-pipeline", "demo", *rest)
    elif command in {"test", "lint"}:
        run("ruff", "check", "pipeline", "tests", "benchmarks", "dev.py")
        run("ruff", "format", "--check", "pipeline", "tests", "benchmarks", "dev.py")
        run("mypy", "pipeline")
        run("lint-imports")  # the layering contracts in pyproject.toml
        if command == "test":
            run("pytest", *rest)
    elif command == "bench":
        run("python", "-m", "benchmarks", *rest)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except KeyboardInterrupt:  # Ctrl-C while the environment is being set up
        sys.exit(130)

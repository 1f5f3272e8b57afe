"""Importing any output format puts Arrow's default memory pool on the C library's malloc
(`pipeline/outputs/arrow.py`), before a writer module imports pyarrow."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _pools(script: str, **env: str) -> list[str]:
    """What `script` prints in a fresh interpreter (the pool is process-wide, and this one's
    was set by earlier tests), without an ARROW_DEFAULT_MEMORY_POOL of the caller's."""
    environ = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env=environ | env,
    )
    return result.stdout.split()


@pytest.mark.parametrize(
    "module", ["pipeline.outputs.parquet", "pipeline.outputs.csv", "pipeline.outputs.numtext"]
)
def test_importing_a_writer_that_uses_arrow_puts_arrow_on_malloc(module: str) -> None:
    script = (
        f"import importlib, os; importlib.import_module({module!r})\n"
        "import pyarrow as pa\n"
        # Arrow's C++ default (what its own allocations use), not only pyarrow's.
        "print(pa.default_memory_pool().backend_name, os.environ['ARROW_DEFAULT_MEMORY_POOL'])\n"
    )
    assert _pools(script) == ["system", "system"]


def test_a_pyarrow_imported_earlier_still_gets_malloc_for_its_calls() -> None:
    script = (
        "import pyarrow as pa\n"
        "first = pa.default_memory_pool().backend_name\n"
        "import pipeline.outputs.parquet\n"
        "print(first, pa.default_memory_pool().backend_name)\n"
    )
    first, after = _pools(script)
    assert first != "system"  # the wheels' own default (mimalloc or jemalloc)
    assert after == "system"


def test_a_pool_the_environment_names_stands() -> None:
    script = (
        "import pipeline.outputs.parquet, pyarrow as pa\n"
        "print(pa.default_memory_pool().backend_name)\n"
    )
    assert _pools(script, ARROW_DEFAULT_MEMORY_POOL="mimalloc") == ["mimalloc"]

"""Importing the package sets the native libraries' environment defaults before either
library loads (`pipeline/native.py`); a value the environment gives stands."""

from __future__ import annotations

import os
import subprocess
import sys

from pipeline import native


def _run(script: str, **env: str) -> list[str]:
    """What `script` prints in a fresh interpreter, with the defaults' variables as `env` says
    (the package set them in this process already)."""
    environ = {k: v for k, v in os.environ.items() if k not in native.DEFAULTS} | env
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=environ
    )
    return result.stdout.split()


def test_importing_the_package_sets_the_defaults_before_numpy_or_pyarrow_load() -> None:
    script = (
        "import os, sys, pipeline\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['ARROW_DEFAULT_MEMORY_POOL'],\n"
        "      'numpy' in sys.modules, 'pyarrow' in sys.modules)\n"
    )
    assert _run(script) == ["1", "system", "False", "False"]


def test_a_value_the_environment_gives_stands_and_an_empty_one_counts_as_unset() -> None:
    script = (
        "import os, pipeline\n"
        "print(os.environ['OPENBLAS_NUM_THREADS'], os.environ['ARROW_DEFAULT_MEMORY_POOL'])\n"
    )
    assert _run(script, OPENBLAS_NUM_THREADS="4", ARROW_DEFAULT_MEMORY_POOL="") == ["4", "system"]
    assert _run(script, ARROW_DEFAULT_MEMORY_POOL="mimalloc") == ["1", "mimalloc"]


def test_arrow_in_a_writer_allocates_with_malloc_its_own_cxx_allocations_included() -> None:
    # Arrow's C++ default pool (pyarrow's is never set separately, so it reports the C++
    # one); after a Parquet write, the wheels' mimalloc pool has served nothing.
    script = (
        "import io, pipeline.outputs.parquet, pyarrow as pa, pyarrow.parquet as pq\n"
        "table = pa.table({'v': pa.array(range(200_000), type=pa.float64())})\n"
        "pq.write_table(table, io.BytesIO())\n"
        "try:\n"
        "    mimalloc = pa.mimalloc_memory_pool().max_memory()\n"
        "except NotImplementedError:\n"
        "    mimalloc = 0\n"
        "print(pa.default_memory_pool().backend_name, mimalloc)\n"
    )
    assert _run(script) == ["system", "0"]
    # Without the default, the same write goes to the wheels' own pool.
    assert _run(script, ARROW_DEFAULT_MEMORY_POOL="mimalloc")[0] == "mimalloc"

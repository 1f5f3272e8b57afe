"""The C module `_lines` (`_lines.c`): JSON Lines and CSV blocks rendered in one pass.

`COMPILED` is False where it was not built at install (no C compiler: `hatch_build.py`);
the writers then render the same bytes in Python (`jsonl._scalar_block_py`, the Arrow
rendering of `csv.CsvWindowWriter.render_blocks`), which are also the tests' reference.
"""

from __future__ import annotations

try:
    from pipeline.outputs._lines import csv_lines, scalar_lines, value_body
except ImportError:  # not compiled where it was installed
    COMPILED = False
else:
    COMPILED = True

__all__ = ["COMPILED", "csv_lines", "scalar_lines", "value_body"]

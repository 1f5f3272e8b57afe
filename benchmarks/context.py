"""What every workload gets from the command line: size, repetitions, a scratch directory."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path


@dataclass
class BenchContext:
    """Options of one suite run."""

    quick: bool
    reps: int
    workdir: Path

    def scratch(self, *parts: str) -> Path:
        """A fresh, empty directory under the work directory."""
        path = self.workdir.joinpath(*parts)
        shutil.rmtree(path, ignore_errors=True)
        path.mkdir(parents=True)
        return path

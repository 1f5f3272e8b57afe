"""The package's C modules in tests: each built wherever a compiler is (hatch_build.py)."""

from __future__ import annotations

import importlib
import os
import shutil
import sysconfig
from types import ModuleType

import pytest

COMPILER = (os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc").split()[0]


def built(name: str) -> ModuleType | None:
    """The C module `name`, or None where it was not built."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def required(module: ModuleType | None, name: str, instead: str) -> ModuleType:
    """`module`, for a test of it: one that fails without it wherever it should have been
    built (a compiler here, or CI), and is skipped only where no compiler is (`instead` says
    what runs then)."""
    if module is None:
        if os.environ.get("CI") == "true" or shutil.which(COMPILER):
            pytest.fail(f"{name} was not built although {COMPILER} is here")
        pytest.skip(f"no C compiler ({COMPILER}): {instead}")
    return module

"""Fixtures shared by unit tests."""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

import pytest

from pipeline import durable
from tests.diskwrites import Write, kernel_takes_direct


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[Write]:
    """Every write() to a regular file while the test runs (`os.write` is patched), in order."""
    seen: list[Write] = []
    real = os.write

    def recording(fd: int, data: memoryview) -> int:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            direct = bool(fcntl.fcntl(fd, fcntl.F_GETFL) & durable._O_DIRECT)
            seen.append(Write(len(data), direct))
        return real(fd, data)

    monkeypatch.setattr(durable.os, "write", recording)
    return seen


@pytest.fixture
def kernel_direct(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Whether O_DIRECT is used for files under `tmp_path` in this test: where the kernel
    takes it (`tests.diskwrites.kernel_takes_direct`)."""
    return kernel_takes_direct(tmp_path, monkeypatch)

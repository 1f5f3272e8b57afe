"""Start-up cleaning of temporaries: a crash's leftovers go, another instance's publish stays."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.outputs.publish import STALE_TEMPORARY_S, remove_stale_temporaries


def test_only_temporaries_untouched_for_an_hour_are_removed(tmp_path: Path) -> None:
    folder = tmp_path / "ds" / "2026"
    folder.mkdir(parents=True)
    now = time.time()
    crashed = folder / "ds_20261120.nc.tmp"
    crashed.write_bytes(b"left by a crash")
    os.utime(crashed, (now - STALE_TEMPORARY_S - 5, now - STALE_TEMPORARY_S - 5))
    # Instances that scale out share the output root: this one is being written right now.
    in_progress = folder / "ds_20261121.nc.tmp"
    in_progress.write_bytes(b"another instance's publish")
    final = folder / "ds_20261119.nc"
    final.write_bytes(b"published")
    os.utime(final, (now - 10 * STALE_TEMPORARY_S, now - 10 * STALE_TEMPORARY_S))

    assert remove_stale_temporaries(tmp_path, now=now) == [crashed]
    assert not crashed.exists()
    assert in_progress.read_bytes() == b"another instance's publish"
    assert final.read_bytes() == b"published"
    # With no age limit (a single instance that knows it is alone) every temporary goes.
    assert remove_stale_temporaries(tmp_path, older_than=-1, now=now) == [in_progress]

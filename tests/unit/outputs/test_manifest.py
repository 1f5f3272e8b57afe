"""The per-dataset manifest file for archive and product files."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipeline.exceptions import OutputError
from pipeline.outputs.manifest import MANIFEST_NAME, parse_manifest, render_manifest, write_manifest
from pipeline.state.base import ManifestEntry

AT = datetime(2026, 11, 20, 6, tzinfo=UTC)


def entry(path: str, dataset: str = "onc_sevip_hydrophone", **kw: object) -> ManifestEntry:
    values: dict[str, object] = {
        "path": path,
        "stream": "sevip",
        "dataset_id": dataset,
        "size": 200_000,
        "sha256": "ab" * 32,
        "time_start": AT,
        "time_end": None,
        "records": None,
        "source": "archivefile",
        "published_at": AT,
    }
    values.update(kw)
    return ManifestEntry(**values)  # type: ignore[arg-type]


def test_render_and_parse_round_trip(tmp_path: Path) -> None:
    entries = [
        entry("onc_sevip_hydrophone/2026/11/20/b.wav"),
        entry("onc_sevip_hydrophone/2026/11/20/a.wav", size=7, records=3),
        entry("onc_other/x.wav", dataset="onc_other"),
    ]
    rows = parse_manifest(render_manifest("onc_sevip_hydrophone", entries))
    assert [r["path"] for r in rows] == ["2026/11/20/a.wav", "2026/11/20/b.wav"]
    assert rows[0] == {
        "path": "2026/11/20/a.wav",
        "size": "7",
        "sha256": "ab" * 32,
        "source": "archivefile",
        "time_start": "2026-11-20T06:00:00Z",
        "time_end": "",
        "records": "3",
        "published_at": "2026-11-20T06:00:00Z",
    }
    published = write_manifest(tmp_path, "onc_sevip_hydrophone", entries)
    assert published.path == tmp_path / "onc_sevip_hydrophone" / MANIFEST_NAME
    assert len(parse_manifest(published.path.read_text())) == 2


def test_unsafe_values_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="tab or newline"):
        render_manifest("d", [entry("d/a\tb.wav", dataset="d")])
    with pytest.raises(OutputError):
        write_manifest(tmp_path, "../escape", [])
    with pytest.raises(OutputError, match="not a manifest"):
        parse_manifest("x\ty\n")

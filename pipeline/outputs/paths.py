"""Where every stream kind's files land under the output root: one home for the path rules.

Time-series files are named by their format (`Writer.relative_path`, by partition or
window); archive files and data products are downloaded as ONC names them, into folders
decided here. All are relative to the output root, so the engine, the manifest and
`erddap-config` agree on them.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pipeline.records import Window


def archive_folder(dataset_id: str, data_start: datetime | None) -> Path:
    """`<dataset>/<yyyy>/<mm>/<dd>`: an archive file's folder, by the day its data starts
    (`<dataset>/undated` when ONC gives no start). ERDDAP's EDDTableFromFileNames walks it
    recursively."""
    if data_start is None:
        return Path(dataset_id, "undated")
    return Path(dataset_id, f"{data_start:%Y}", f"{data_start:%m}", f"{data_start:%d}")


def product_folder(dataset_id: str, window: Window) -> Path:
    """`<dataset>/products/<period label>`: the folder of one period's data product files."""
    return Path(dataset_id, "products", window.label())

"""Output path rules of the archive and product stream kinds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from pipeline.outputs.paths import archive_folder, product_folder
from pipeline.records import Window

DAY = datetime(2026, 11, 20, tzinfo=UTC)


def test_archive_files_land_by_the_day_their_data_starts() -> None:
    assert archive_folder("onc_bacax_hyd", DAY + timedelta(hours=23)) == Path(
        "onc_bacax_hyd/2026/11/20"
    )
    assert archive_folder("onc_bacax_hyd", None) == Path("onc_bacax_hyd/undated")


def test_products_land_in_their_period_folder() -> None:
    period = Window(DAY, DAY + timedelta(days=1))
    assert product_folder("onc_bacax_png", period) == Path(
        "onc_bacax_png/products/20261120T000000Z_20261121T000000Z"
    )

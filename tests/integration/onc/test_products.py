"""dataProductDelivery against the emulator: 202 polling, 410 then restart, resume by ids."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest

from pipeline.emulator import Emulator
from pipeline.onc import DataSource, OncProductFailedError, OncProductGoneError, ProductOrder
from tests.integration.onc.conftest import client, running_emulator

ORDER = ProductOrder(
    DataSource(location_code="NC89", device_category_code="CTD"),
    data_product_code="TSSD",
    extension="csv",
    date_from="2020-01-01T00:00:00.000Z",
    date_to="2020-01-01T01:00:00.000Z",
    options={"qualityControl": "1", "resample": "none"},
)
GONE_ONCE = {"rules": [{"kind": "gone", "endpoint": "dataProductDelivery.download", "times": 1}]}


def listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def endpoints(emu: Emulator) -> list[tuple[str, int | None]]:
    return [(r.endpoint, r.status) for r in emu.requests]


async def test_order_through_202_410_and_restart(tmp_path: Path) -> None:
    async with running_emulator(faults=GONE_ONCE, product_processing_s=0.4) as emu:
        async with client(emu) as onc:
            result = await onc.products.order(ORDER, tmp_path)
        seen = endpoints(emu)
    assert ("dataProductDelivery.run", 202) in seen  # polled while running
    assert ("dataProductDelivery.download", 410) in seen
    assert ("dataProductDelivery.restart", 200) in seen
    assert seen.index(("dataProductDelivery.download", 410)) < seen.index(
        ("dataProductDelivery.restart", 200)
    )
    assert [f.index for f in result.files] == ["1", "meta"]
    data, meta = (f.file.path for f in result.files)
    assert data.name.endswith("-clean.csv")
    assert data.read_bytes().startswith(b'#"Ocean Networks Canada Data Archive"')
    assert meta.read_bytes().startswith(b"<?xml")
    assert listing(tmp_path) == sorted([data.name, meta.name])


async def test_gone_for_good_is_a_typed_error(tmp_path: Path) -> None:
    async with (
        running_emulator(faults="expired-downloads", product_processing_s=0.2) as emu,
        client(emu) as onc,
    ):
        with pytest.raises(OncProductGoneError) as info:
            await onc.products.order(ORDER, tmp_path)
    assert info.value.index == "1"
    assert listing(tmp_path) == []


async def test_resume_an_existing_run_from_persisted_ids(tmp_path: Path) -> None:
    async with running_emulator(product_processing_s=0.4) as emu:
        # First "process": orders and persists the ids, then dies before the run completes.
        async with client(emu) as onc:
            request = await onc.products.request(ORDER)
            [first] = await onc.products.run(request.dp_request_id)
        assert not first.is_complete
        # Second "process": resumes polling with the ids only; no new order is placed.
        async with client(emu) as onc:
            [run] = await onc.products.wait_for_runs(request.dp_request_id)
            files = await onc.products.download_run(run.dp_run_id, tmp_path)
        assert run.dp_run_id == first.dp_run_id
        assert [f.index for f in files] == ["1", "meta"]
        assert sum(1 for r in emu.requests if r.endpoint == "dataProductDelivery.request") == 1


async def test_cancelled_run_ends_with_a_typed_error() -> None:
    async with running_emulator(product_processing_s=30.0) as emu, client(emu) as onc:
        request = await onc.products.request(ORDER)
        await onc.products.run(request.dp_request_id)
        [cancelled] = await onc.products.cancel(request.dp_request_id)
        assert cancelled.is_failed
        with pytest.raises(OncProductFailedError) as info:
            await onc.products.wait_for_runs(request.dp_request_id)
    assert info.value.run_status == "cancelled"
    assert info.value.dp_request_id == request.dp_request_id


async def test_every_file_of_every_run_is_downloaded(tmp_path: Path) -> None:
    # Three days split one file per run: `run` lists three dpRunIds, each with its own files.
    three_days = replace(
        ORDER,
        data_product_code="TSSP",
        extension="png",
        date_from="2020-01-01T00:00:00.000Z",
        date_to="2020-01-04T00:00:00.000Z",
    )
    async with (
        running_emulator(product_processing_s=0.2, product_files_per_run=1) as emu,
        client(emu) as onc,
    ):
        result = await onc.products.order(three_days, tmp_path)
        [request] = emu.context.products.requests.values()
        runs = request.run_ids
    assert len(runs) == 3
    got = [(f.file.path.name, f.index) for f in result.files]
    days = ["20200101", "20200102", "20200103"]
    assert [index for _, index in got] == ["1", "meta"] * 3
    assert [name.split("_")[3][:8] for name, _ in got] == [d for d in days for _ in (1, 2)]
    assert listing(tmp_path) == sorted(name for name, _ in got)
    downloads = Counter(
        dict(r.query)["dpRunId"]
        for r in emu.requests.of("dataProductDelivery.download")
        if r.status == 200
    )
    assert downloads == {str(run): 2 for run in runs}


async def test_error_status_on_a_202_download_ends_the_wait(tmp_path: Path) -> None:
    # ONC's wiki: a 202 download body's status is "queued", "running" or "error"; "error" is
    # final, so the driver must not poll it again until the (6 h) deadline.
    failing = {"rules": [{"kind": "product-error", "endpoint": "dataProductDelivery.download"}]}
    async with (
        running_emulator(faults=failing, product_processing_s=0.2) as emu,
        client(emu, product_deadline=30.0) as onc,
    ):
        with pytest.raises(OncProductFailedError) as info:
            await onc.products.order(ORDER, tmp_path)
        downloads = [r for r in emu.requests if r.endpoint == "dataProductDelivery.download"]
    assert info.value.run_status == "error"
    assert info.value.dp_run_id is not None
    assert "Data product generation failed" in str(info.value)
    assert len(downloads) == 1
    assert listing(tmp_path) == []

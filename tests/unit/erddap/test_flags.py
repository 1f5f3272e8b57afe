"""ERDDAP flag signalling: once per burst, a trailing flag for the rest, never hardFlag,
the remote flag URL called with a key that never reaches the logs."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from pipeline.erddap.flags import ErddapFlagger, open_flagger, parse_flag_keys, touch_flag
from pipeline.ops import PipelineMetrics
from pipeline.outputs.datasets_xml import ErddapDataset, erddap_datasets
from pipeline.records import NewDataEvent
from pipeline.settings import Settings, load_settings

INTERVAL = 10.0
SECRET = "flag-key-7d1e9c0b4a"


class FakeTime:
    """A monotonic clock and a sleep that only ends when the test advances the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self._sleepers: list[tuple[float, asyncio.Future[None], asyncio.Task[object]]] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        task = asyncio.current_task()
        assert task is not None
        self._sleepers.append((self.now + delay, future, task))
        await future

    async def advance(self, seconds: float) -> None:
        for _ in range(3):  # let newly created timer tasks start and register their sleep
            await asyncio.sleep(0)
        self.now += seconds
        woken = []
        for entry in list(self._sleepers):
            due, future, task = entry
            if due <= self.now:
                self._sleepers.remove(entry)
                if not future.done():
                    future.set_result(None)
                    woken.append(task)
        # Let every woken sleeper finish what it does after waking (signal, log).
        await asyncio.gather(*woken, return_exceptions=True)


def event(
    dataset: str = "onc_bacax_ctd", *, replaced: bool = False, files: tuple[str, ...] = ()
) -> NewDataEvent:
    at = datetime(2026, 11, 20, tzinfo=UTC)
    return NewDataEvent(
        stream="s",
        dataset_id=dataset,
        time_start=at,
        time_end=at,
        files=tuple(Path(f) for f in files),
        records=1,
        replaced=replaced,
    )


@pytest.fixture
def fake() -> FakeTime:
    return FakeTime()


def flagger(tmp_path: Path, fake: FakeTime, **kwargs: object) -> ErddapFlagger:
    return ErddapFlagger(
        flag_dir=tmp_path / "erddap",
        interval=INTERVAL,
        clock=fake.clock,
        sleep=fake.sleep,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_a_burst_touches_the_flag_once_then_once_more_at_the_end(
    tmp_path: Path, fake: FakeTime
) -> None:
    signaller = flagger(tmp_path, fake)
    flag = tmp_path / "erddap" / "flag" / "onc_bacax_ctd"
    await signaller.publish(event())
    assert flag.exists()
    flag.unlink()  # ERDDAP consumes the flag
    for _ in range(5):
        await fake.advance(1)
        await signaller.publish(event())
    assert not flag.exists(), "events inside the interval wait for the trailing flag"
    await fake.advance(INTERVAL)
    assert flag.exists(), "the last batch is never left unsignalled"
    assert signaller.signals == ["onc_bacax_ctd", "onc_bacax_ctd"]
    await fake.advance(5 * INTERVAL)
    assert len(signaller.signals) == 2  # nothing more without new events
    await signaller.aclose()


async def test_a_lone_event_signals_once(tmp_path: Path, fake: FakeTime) -> None:
    signaller = flagger(tmp_path, fake)
    await signaller.publish(event())
    await fake.advance(3 * INTERVAL)
    await signaller.publish(event())  # quiet for long enough: immediate again
    assert signaller.signals == ["onc_bacax_ctd", "onc_bacax_ctd"]
    await signaller.aclose()
    assert len(signaller.signals) == 2


async def test_replaced_files_touch_flag_never_hard_flag(tmp_path: Path, fake: FakeTime) -> None:
    # A rewritten partition (lookback, a growing day) is a changed file: ERDDAP's plain flag
    # re-reads it; hardFlag would take the dataset offline and re-read every file.
    signaller = flagger(tmp_path, fake)
    await signaller.publish(event(replaced=True))
    assert (tmp_path / "erddap" / "flag" / "onc_bacax_ctd").exists()
    await signaller.publish(event())
    await signaller.publish(event(replaced=True))
    await fake.advance(INTERVAL)
    assert signaller.signals == ["onc_bacax_ctd", "onc_bacax_ctd"]
    await signaller.aclose()
    assert not (tmp_path / "erddap" / "hardFlag").exists()


async def test_datasets_are_debounced_independently(tmp_path: Path, fake: FakeTime) -> None:
    signaller = flagger(tmp_path, fake)
    await signaller.publish(event("a"))
    await signaller.publish(event("b"))
    await signaller.publish(event("a"))
    assert signaller.signals == ["a", "b"]
    await fake.advance(INTERVAL)
    assert signaller.signals == ["a", "b", "a"]
    await signaller.aclose()


async def test_close_flushes_the_pending_trailing_flag(tmp_path: Path, fake: FakeTime) -> None:
    signaller = flagger(tmp_path, fake)
    await signaller.publish(event())
    await signaller.publish(event(replaced=True))
    await signaller.aclose()  # shutdown before the interval is over
    assert signaller.signals == ["onc_bacax_ctd", "onc_bacax_ctd"]
    assert (tmp_path / "erddap" / "flag" / "onc_bacax_ctd").exists()


def test_touch_flag_accepts_the_flag_folder_itself(tmp_path: Path) -> None:
    assert touch_flag(tmp_path / "flag", "x", hard=True) == tmp_path / "hardFlag" / "x"
    assert touch_flag(tmp_path, "x", hard=False) == tmp_path / "flag" / "x"


def test_flag_keys_one_for_all_or_per_dataset() -> None:
    assert parse_flag_keys(None) == (None, {})
    assert parse_flag_keys(" k1 ") == ("k1", {})
    assert parse_flag_keys("a=k1, b=k2\nc=k3") == (None, {"a": "k1", "b": "k2", "c": "k3"})


def settings_with(tmp_path: Path, streams: list[dict[str, object]], **output: object) -> Settings:
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "onc": {"token": "t"},
                "output": {"root": str(tmp_path / "out"), **output},
                "streams": streams,
            }
        )
    )
    return load_settings(path, environ={}, secrets_dirs=[])


async def test_only_erddap_datasets_whose_files_changed_are_flagged(
    tmp_path: Path, fake: FakeTime
) -> None:
    settings = settings_with(
        tmp_path,
        [
            {
                "name": "ctd",
                "kind": "scalardata",
                "location_code": "BACAX",
                "device_category_code": "CTD",
                "formats": ["netcdf", "csv", "jsonl"],
            }
        ],
        erddap_flag_dir=str(tmp_path / "erddap"),
    )
    signaller = ErddapFlagger.from_settings(settings, clock=fake.clock, sleep=fake.sleep)
    assert signaller is not None
    await signaller.publish(event(files=("x/onc_bacax_ctd_20261120.csv", "x/a.jsonl")))
    assert signaller.signals == ["onc_bacax_ctd_csv"]
    await signaller.aclose()
    assert [d.erddap_id for d in erddap_datasets(settings)] == [
        "onc_bacax_ctd",
        "onc_bacax_ctd_csv",
    ]


def test_no_flagger_without_flag_dir_or_url(tmp_path: Path) -> None:
    assert ErddapFlagger.from_settings(settings_with(tmp_path, [])) is None


@pytest.fixture
async def erddap_server() -> AsyncIterator[tuple[str, list[dict[str, str]], list[int]]]:
    """A stand-in ERDDAP on loopback recording setDatasetFlag.txt calls; status is settable."""
    calls: list[dict[str, str]] = []
    status = [200]

    async def set_flag(request: web.Request) -> web.Response:
        calls.append(dict(request.query))
        return web.Response(status=status[0], text="Flag set.")

    app = web.Application()
    app.router.add_get("/erddap/setDatasetFlag.txt", set_flag)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}/erddap", calls, status
    finally:
        await runner.cleanup()


async def test_remote_flag_url_carries_the_key_and_logs_never_do(
    erddap_server: tuple[str, list[dict[str, str]], list[int]], fake: FakeTime
) -> None:
    url, calls, status = erddap_server
    signaller = ErddapFlagger(
        erddap_url=url, flag_key=SECRET, interval=INTERVAL, clock=fake.clock, sleep=fake.sleep
    )
    with capture_logs() as logs:
        await signaller.publish(event())
        status[0] = 500
        await fake.advance(INTERVAL)
        await signaller.publish(event())  # fails on the server side: logged, not raised
        await signaller.aclose()
    assert calls == [
        {"datasetID": "onc_bacax_ctd", "flagKey": SECRET},
        {"datasetID": "onc_bacax_ctd", "flagKey": SECRET},
    ]
    assert [entry["event"] for entry in logs] == ["erddap_flag_requested", "erddap_flag_failed"]
    assert SECRET not in repr(logs)


async def test_unreachable_erddap_is_logged_without_the_key(fake: FakeTime) -> None:
    # Port 9 on loopback: nothing listens, the connection is refused at once.
    signaller = ErddapFlagger(
        erddap_url="http://127.0.0.1:9/erddap",
        flag_key=f"onc_bacax_ctd={SECRET}",
        clock=fake.clock,
        sleep=fake.sleep,
    )
    with capture_logs() as logs:
        await signaller.publish(event())
        await signaller.publish(event("unknown_dataset"))  # no key for it
        await signaller.aclose()
    assert [(e["event"], e["dataset_id"]) for e in logs] == [
        ("erddap_flag_failed", "onc_bacax_ctd"),
        ("erddap_flag_failed", "unknown_dataset"),
    ]
    assert SECRET not in repr(logs)


def test_datasets_without_a_flag_key_and_keys_for_no_dataset_are_named_at_start(
    tmp_path: Path,
) -> None:
    datasets = [
        ErddapDataset("onc_bacax_ctd", "onc_bacax_ctd", "ctd", "netcdf", ".nc", r".*\.nc"),
        ErddapDataset("onc_bacax_ctd_csv", "onc_bacax_ctd", "ctd", "csv", ".csv", r".*\.csv"),
    ]
    with capture_logs() as logs:
        ErddapFlagger(
            erddap_url="https://erddap.example.org/erddap",
            flag_key=f"onc_bacax_ctd={SECRET}\nonc_bacax_cdt_csv={SECRET}",
            datasets=datasets,
        )
    assert [(e["event"], e["dataset_ids"]) for e in logs] == [
        ("erddap_flag_keys_missing", ["onc_bacax_ctd_csv"]),
        ("erddap_flag_keys_unknown", ["onc_bacax_cdt_csv"]),
    ]
    assert SECRET not in repr(logs)


def flag_counts(metrics: PipelineMetrics) -> dict[tuple[str, str], float]:
    """onc_pipeline_erddap_flags_total by (dataset, result), as Prometheus scrapes it: the
    series the OncPipelineErddapFlagFailing alert in deploy/prometheus watches."""
    counts = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for s in family.samples:
            if s.name == "onc_pipeline_erddap_flags_total":
                counts[(s.labels["dataset"], s.labels["result"])] = s.value
    return counts


async def test_flags_sent_and_failed_are_counted_for_the_alert(
    tmp_path: Path,
    erddap_server: tuple[str, list[dict[str, str]], list[int]],
    fake: FakeTime,
) -> None:
    url, _calls, status = erddap_server
    metrics = PipelineMetrics()
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where ERDDAP's bigParentDirectory should be")
    signaller = ErddapFlagger(
        flag_dir=blocked,
        erddap_url=url,
        flag_key=SECRET,
        interval=INTERVAL,
        clock=fake.clock,
        sleep=fake.sleep,
        metrics=metrics.erddap,
    )
    await signaller.publish(event())  # the file fails, the URL is accepted
    status[0] = 500
    await fake.advance(INTERVAL)
    await signaller.publish(event())  # both fail
    await signaller.aclose()
    assert flag_counts(metrics) == {
        ("onc_bacax_ctd", "sent"): 1.0,
        ("onc_bacax_ctd", "failed"): 3.0,
    }


async def test_the_daemon_counts_flags_into_its_metrics(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, [], erddap_flag_dir=str(tmp_path / "erddap"))
    metrics = PipelineMetrics()
    async with open_flagger(settings, metrics.erddap) as signaller:
        assert signaller is not None
        await signaller.publish(event())
    assert flag_counts(metrics) == {("onc_bacax_ctd", "sent"): 1.0}

"""ERDDAP signalling: tell ERDDAP a dataset changed, once per burst of new files.

ERDDAP reloads a dataset when a file named after it appears in `<bigParentDirectory>/flag/`,
or when `setDatasetFlag.txt?datasetID=..&flagKey=..` is called on a remote server. A flag is
all a harvest ever needs: "the reloading dataset will look for new or changed files, read
those, and incorporate them" (erddap.github.io docs/server-admin/additional-information.md,
"Flag"), and our rewritten partitions are changed files. `hardFlag/` removes the dataset and
re-reads every file; ERDDAP's docs keep it for "a change in how ERDDAP reads and interprets the
source data" (same page, "Hard Flag": a new ERDDAP version, a changed datasets.xml entry).
That is the administrator's act after pasting a new `erddap-config` entry, never a harvest's,
so the pipeline never touches `hardFlag/` (`touch_flag(hard=True)` is there for tools).

Flags are debounced per ERDDAP dataset: the first event of a quiet dataset signals at once,
events within `interval` seconds of the last signal are folded into one trailing signal at the
end of the interval, so the last batch is never left unsignalled. ERDDAP gives every datasetID
its own flagKey (same page, "Set Dataset Flag"; the admin finds the flag URLs at the bottom of
the Daily Report), so keys are configured per datasetID. The flagKey is a secret: it appears
only in the request, never in logs or errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import aiohttp
import structlog
from pydantic import SecretStr

from pipeline.debounce import DebounceRule
from pipeline.outputs.datasets_xml import ErddapDataset, erddap_datasets
from pipeline.records import NewDataEvent
from pipeline.settings import ERDDAP_FLAG_EVERY, Settings

log = structlog.get_logger(__name__)

DEFAULT_INTERVAL_S = ERDDAP_FLAG_EVERY.total_seconds()
_TIMEOUT = aiohttp.ClientTimeout(total=30)
# The first event of a quiet dataset is due at once; only the interval since the last signal
# (its `not_before`) holds a flag back.
_AT_ONCE = DebounceRule(quiet=0.0)


def parse_flag_keys(secret: SecretStr | str | None) -> tuple[str | None, dict[str, str]]:
    """The flag key setting: one key for every dataset, or `datasetID=key` pairs separated by
    commas or newlines (ERDDAP gives every dataset its own flagKey)."""
    if secret is None:
        return None, {}
    text = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    text = text.strip()
    if "=" not in text:
        return (text or None), {}
    keys: dict[str, str] = {}
    for item in text.replace("\n", ",").split(","):
        dataset, sep, key = item.strip().partition("=")
        if sep and dataset.strip() and key.strip():
            keys[dataset.strip()] = key.strip()
    return None, keys


# How many recent signals a flagger remembers (`ErddapFlagger.signals`).
SIGNALS_KEPT = 100


class FlagMetrics(Protocol):
    """Where the flagger counts its signals (pipeline.ops.metrics.ErddapFlagMetrics), so the
    ERDDAP-flag alert in deploy/prometheus can fire."""

    def flag_sent(self, dataset_id: str) -> None:
        """ERDDAP was told that `dataset_id` changed."""
        ...

    def flag_failed(self, dataset_id: str) -> None:
        """Telling ERDDAP failed."""
        ...


@dataclass(slots=True)
class _Debounce:
    """Per ERDDAP dataset: when it was last signalled and what is waiting to be."""

    last_sent: float | None = None
    pending: bool = False
    timer: asyncio.Task[None] | None = field(default=None, repr=False)


class ErddapFlagger:
    """An EventSink that touches ERDDAP flag files and/or calls setDatasetFlag.txt, debounced."""

    def __init__(
        self,
        *,
        flag_dir: Path | None = None,
        erddap_url: str | None = None,
        flag_key: SecretStr | str | None = None,
        datasets: Sequence[ErddapDataset] = (),
        interval: float = DEFAULT_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        session: aiohttp.ClientSession | None = None,
        metrics: FlagMetrics | None = None,
    ) -> None:
        self._flag_dir = flag_dir
        self._url = erddap_url.rstrip("/") if erddap_url else None
        self._default_key, self._keys = parse_flag_keys(flag_key)
        self._datasets: dict[str, list[ErddapDataset]] = {}
        for dataset in datasets:
            self._datasets.setdefault(dataset.dataset_id, []).append(dataset)
        self._interval = interval
        self._clock = clock
        self._sleep = sleep
        self._session = session
        self._own_session = session is None
        self._metrics = metrics
        self._state: dict[str, _Debounce] = {}
        # The last SIGNALS_KEPT ERDDAP datasetIDs flagged, in order (for tests and debugging;
        # bounded, as the daemon runs for years).
        self.signals: list[str] = []
        if self._url is not None and self._datasets:
            self._check_keys()

    def _check_keys(self) -> None:
        """Say at start which ERDDAP datasets have no flagKey, and which keys name no dataset
        (a typo): datasetIDs only, never a key."""
        ids = {d.erddap_id for found in self._datasets.values() for d in found}
        missing = [] if self._default_key else sorted(ids - set(self._keys))
        if missing:
            log.warning("erddap_flag_keys_missing", dataset_ids=missing)
        if unknown := sorted(set(self._keys) - ids):
            log.warning("erddap_flag_keys_unknown", dataset_ids=unknown)

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: object) -> ErddapFlagger | None:
        """A flagger for `output.erddap_flag_dir`/`erddap_url`; None when neither is set."""
        out = settings.output
        if out.erddap_flag_dir is None and not out.erddap_url:
            return None
        return cls(
            flag_dir=out.erddap_flag_dir,
            erddap_url=out.erddap_url,
            flag_key=out.erddap_flag_key,
            datasets=erddap_datasets(settings),
            **kwargs,  # type: ignore[arg-type]
        )

    def targets(self, event: NewDataEvent) -> list[str]:
        """The ERDDAP datasetIDs an event concerns, by the files it wrote (whether new or
        rewritten: a plain flag re-reads both)."""
        known = self._datasets.get(event.dataset_id)
        if known is None:
            return [event.dataset_id]
        names = [path.name for path in event.files]
        return [
            d.erddap_id
            for d in known
            if d.suffix is None or not names or any(n.endswith(d.suffix) for n in names)
        ]

    async def publish(self, event: NewDataEvent) -> None:
        """Signal (or schedule a trailing signal for) every ERDDAP dataset the event touches."""
        for erddap_id in self.targets(event):
            state = self._state.setdefault(erddap_id, _Debounce())
            now = self._clock()
            # At most one signal per interval: the first of a quiet dataset goes at once.
            not_before = -math.inf if state.last_sent is None else state.last_sent + self._interval
            due = _AT_ONCE.due_at(first_event=now, last_event=now, not_before=not_before)
            if due <= now and state.timer is None:
                state.last_sent = now
                await self._signal(erddap_id)
                continue
            state.pending = True
            if state.timer is None:
                delay = max(0.0, due - now)
                state.timer = asyncio.create_task(
                    self._trailing(erddap_id, delay), name=f"erddap-flag:{erddap_id}"
                )

    async def _trailing(self, erddap_id: str, delay: float) -> None:
        await self._sleep(delay)
        state = self._state[erddap_id]
        state.timer = None
        await self._fire_pending(erddap_id, state)

    async def _fire_pending(self, erddap_id: str, state: _Debounce) -> None:
        if not state.pending:
            return
        state.pending = False
        state.last_sent = self._clock()
        await self._signal(erddap_id)

    async def flush(self) -> None:
        """Send every pending trailing signal now (shutdown: the last batch is never lost)."""
        for erddap_id, state in list(self._state.items()):
            if state.timer is not None:
                state.timer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await state.timer
                state.timer = None
            await self._fire_pending(erddap_id, state)

    async def aclose(self) -> None:
        """Flush pending signals and close the HTTP session this flagger opened."""
        await self.flush()
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    # ------------------------------------------------------------------ signalling

    async def _signal(self, erddap_id: str) -> None:
        """Never raises: a failed signal is logged and counted, and the harvest goes on.

        Each way of signalling (flag file, URL) counts once, sent or failed."""
        self.signals.append(erddap_id)
        del self.signals[:-SIGNALS_KEPT]
        if self._flag_dir is not None:
            try:
                path = await asyncio.to_thread(touch_flag, self._flag_dir, erddap_id)
            except OSError as exc:
                log.warning("erddap_flag_failed", dataset_id=erddap_id, via="file", error=str(exc))
                self._count(erddap_id, sent=False)
            else:
                log.info("erddap_flag_touched", dataset_id=erddap_id, path=str(path))
                self._count(erddap_id, sent=True)
        if self._url is not None:
            self._count(erddap_id, sent=await self._call_url(erddap_id))

    def _count(self, erddap_id: str, *, sent: bool) -> None:
        if self._metrics is None:
            return
        if sent:
            self._metrics.flag_sent(erddap_id)
        else:
            self._metrics.flag_failed(erddap_id)

    async def _call_url(self, erddap_id: str) -> bool:
        """Call setDatasetFlag.txt; True when ERDDAP accepted it."""
        key = self._keys.get(erddap_id, self._default_key)
        if key is None:
            log.warning("erddap_flag_failed", dataset_id=erddap_id, via="url", error="no flagKey")
            return False
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=_TIMEOUT)
        try:
            async with self._session.get(
                f"{self._url}/setDatasetFlag.txt",
                params={"datasetID": erddap_id, "flagKey": key},
            ) as response:
                await response.read()
                ok = response.status == 200
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The exception text can carry the URL (and so the key): log its type only.
            log.warning(
                "erddap_flag_failed", dataset_id=erddap_id, via="url", error=type(exc).__name__
            )
            return False
        if ok:
            log.info("erddap_flag_requested", dataset_id=erddap_id, server=self._url)
        else:
            log.warning(
                "erddap_flag_failed", dataset_id=erddap_id, via="url", status=response.status
            )
        return ok


@asynccontextmanager
async def open_flagger(
    settings: Settings, metrics: FlagMetrics | None = None
) -> AsyncIterator[ErddapFlagger | None]:
    """ERDDAP reload signalling when configured (else None); its last pending flag is sent,
    and its session closed, on exit."""
    flagger = ErddapFlagger.from_settings(settings, metrics=metrics)
    if flagger is None:
        yield None
        return
    try:
        yield flagger
    finally:
        await flagger.aclose()


def touch_flag(flag_dir: Path, erddap_id: str, hard: bool = False) -> Path:
    """Create or touch `<flag_dir>/flag/<id>` (or `hardFlag/<id>`); ERDDAP deletes it when read.

    `flag_dir` is ERDDAP's bigParentDirectory, or directly its `flag/` folder (then `hardFlag/`
    is its sibling).
    """
    base = flag_dir.parent if flag_dir.name in ("flag", "hardFlag") else flag_dir
    folder = base / ("hardFlag" if hard else "flag")
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / erddap_id
    with open(path, "a", encoding="utf-8"):
        pass
    os.utime(path)
    return path

"""A window's writers, one per format and output file: pages in, published files out.

`WindowAssembly` is the part of building a window that runs wherever the pool puts it (in the
daemon's process or in a worker): it opens every format's window writers, feeds each batch to
them, then publishes them in turn, reporting the files already on disk when a later format
fails.

A build may gather several consecutive windows (a backfill's hours of one day), whose rows
the engine hands it from the pages of one request series (pipeline/engine/batches.py cuts a
page at the builds' bounds). A format whose windows all land in one file (a partitioned
NetCDF, CSV or raw-text file) then gets one writer, opened on the covering window and
published once; a format with a file per window (JSON Lines, or any format whose partitions
are shorter than the build) gets a writer per window, each fed its own part of every batch,
cut by time (`_scalar_parts`, `_raw_parts`); a page whose times are out of order goes whole
to every window, each writer keeping its own rows.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from operator import le
from pathlib import Path
from typing import Any

from pipeline.durable import FolderFlushError, folder_flushes_gathered
from pipeline.exceptions import OutputError, PipelineError
from pipeline.outputs.base import WindowWriter, Writer, iso_bounds
from pipeline.records import PageBatch, PublishedFile, RawBatch, ScalarBatch, Window
from pipeline.timeaxis import FixedRows, fixed_width, rows_text


@dataclass(frozen=True, slots=True)
class BuiltFile:
    """One published file of a build, with what the manifest records of it."""

    file: PublishedFile
    records: int
    # The range the file covers: its partition (NetCDF, CSV, raw text) or its own window.
    time_start: datetime
    time_end: datetime


@dataclass(frozen=True, slots=True)
class BuiltWindow:
    """What publishing a build produced: every file published (a format with nothing new
    publishes none; a format with a file per window, one per gathered window)."""

    files: list[BuiltFile]
    records: int  # records the first format's files hold now
    # Set when a format failed to publish after others had: their files are on disk and must
    # be recorded, then this is raised (the cursor stays where it was).
    error: PipelineError | None = None


@dataclass(slots=True)
class _Format:
    """One format's writers in a build: one per output file the build's windows map to."""

    source: Writer
    writers: list[WindowWriter[Any]]
    windows: list[Window]  # the window each writer was opened on


def _sorted(times: Sequence[str]) -> bool:
    return all(map(le, times, times[1:]))


def _raw_parts(batch: RawBatch, bounds: Sequence[tuple[str, str]]) -> list[RawBatch | None]:
    """`batch` cut into one part per [low, high) bound (ONC's fixed-width times sort as
    text), None where a part is empty; the whole batch to each when times are not in order."""
    times = batch.times
    if not _sorted(times):
        return [batch] * len(bounds)
    parts: list[RawBatch | None] = []
    for low, high in bounds:
        lo, hi = bisect_left(times, low), bisect_left(times, high)
        parts.append(
            RawBatch(times[lo:hi], batch.readings[lo:hi], batch.line_types[lo:hi])
            if lo < hi
            else None
        )
    return parts


class _OutOfOrderError(Exception):
    """Bisecting put a row of a page in a part whose range does not hold it: the page's
    times are not in order, and the parts given out so far may miss rows of theirs."""


def _points(times: Sequence[str] | FixedRows, bounds: Sequence[tuple[str, str]]) -> list[int]:
    """0, where each bound's rows start and end (bisected), and the row count: ascending for
    ascending bounds, in order or not (bisection's answer never falls as its key rises)."""
    points = [0]
    for low, high in bounds:
        points += (bisect_left(times, low), bisect_left(times, high))
    points.append(len(times))
    return points


def _scalar_parts(
    batch: ScalarBatch, bounds: Sequence[tuple[str, str]]
) -> Iterator[ScalarBatch | None]:
    """One part of `batch` per [low, high) bound (None where it is empty), each made when it
    is asked for; _OutOfOrderError as soon as a part, or the rows before, between or after the
    bounds, holds a time outside its range.

    A page's axes are bisected where they lie (`timeaxis.FixedRows` for ONC's fixed-width
    times), and each part's times are split once: checked against the part's range and
    handed over with it (`ScalarBatch.split_axes`), so its writer does not split them again.
    The check is what lets bisection stand in for sorting: every row found in the range it
    was cut into is in its own part, in order or not. A part's split times live only as
    long as the part: a page of ONC's fixed-width times is never held as one string per
    time. `bounds` ascend and do not overlap (a build's windows).
    """
    axes = batch.axes
    rows = [
        FixedRows(axis) if fixed_width(axis) else axis.split("\n") if axis else [] for axis in axes
    ]
    points = [_points(times, bounds) for times in rows]
    # Region k of an axis, rows points[k] to points[k + 1], must lie in [edges[k], edges[k + 1]).
    edges: list[str | None] = [None, *(time for bound in bounds for time in bound), None]

    def region(axis: int, k: int) -> list[str]:
        low, high = points[axis][k], points[axis][k + 1]
        times = rows[axis]
        if isinstance(times, list):
            times = times[low:high]
        else:
            times = rows_text(axes[axis], low, high).split("\n") if low < high else []
        first, last = edges[k], edges[k + 1]
        if times and (
            (first is not None and min(times) < first) or (last is not None and max(times) >= last)
        ):
            raise _OutOfOrderError
        return times

    for index in range(len(bounds)):
        for axis in range(len(axes)):
            region(axis, 2 * index)  # the rows before this bound's: checked, dropped
        split = [region(axis, 2 * index + 1) for axis in range(len(axes))]
        spans = [(at[2 * index + 1], at[2 * index + 2]) for at in points]
        if not any(split):
            yield None
            continue
        texts = [
            rows_text(axis, *span) if isinstance(times, FixedRows) else "\n".join(part)
            for axis, times, span, part in zip(axes, rows, spans, split, strict=True)
        ]
        packed = [column.rows(*spans[column.axis]) for column in batch.packed]
        yield ScalarBatch(texts, packed, batch.qaqc_flag_info, split_axes=split)
        del split, texts, packed
    for axis in range(len(axes)):
        region(axis, 2 * len(bounds))  # the rows after the last bound


class WindowAssembly:
    """A build's writers, by format: the part that runs wherever the builder puts it."""

    def __init__(
        self, writers: Mapping[str, Writer], formats: Sequence[str], root: Path, dataset: str
    ) -> None:
        self._root = root
        self._dataset = dataset
        self._sources = [writers[fmt] for fmt in formats]
        self._formats: list[_Format] = []
        self._window: Window | None = None

    def open(self, window: Window, members: Sequence[Window] = ()) -> int:
        """Open every format's writers for `members` (default: `window` alone), gathered in
        the covering `window`; returns the first format's existing record count.

        Members that one format writes to the same file share one writer, opened on `window`
        (which must lie in that file); a member alone in its file gets a writer of its own.
        """
        self._window = window
        members = members or (window,)
        for source in self._sources:
            by_path: dict[Path, list[Window]] = {}
            for member in members:
                by_path.setdefault(source.relative_path(self._dataset, member), []).append(member)
            entry = _Format(source, [], [])
            self._formats.append(entry)
            for path, shared in by_path.items():
                target = shared[0] if len(shared) == 1 else window
                if len(shared) > 1 and source.relative_path(self._dataset, window) != path:
                    raise ValueError(
                        f"window {window.label()} does not lie in the {source.name} file "
                        f"{path} of the windows it gathers"
                    )
                entry.writers.append(source.open_window(self._root, self._dataset, target))
                entry.windows.append(target)
        return self._records

    def add(self, batch: PageBatch) -> None:
        """Merge one page into every format; a format that does not hold the page's kind
        refuses it loudly (its records would otherwise be dropped), unless it is empty."""
        for entry in self._formats:
            if batch.kind not in entry.source.kinds:
                if batch.rows:
                    raise self._refusal(entry.source, batch.kind)
                continue
            if len(entry.writers) == 1:
                entry.writers[0].add(batch)
                continue
            bounds = [iso_bounds(window) for window in entry.windows]
            if isinstance(batch, RawBatch):
                for writer, raw in zip(entry.writers, _raw_parts(batch, bounds), strict=True):
                    if raw is not None:
                        writer.add(raw)
                continue
            try:
                for writer, part in zip(entry.writers, _scalar_parts(batch, bounds), strict=True):
                    if part is not None:
                        writer.add(part)
            except _OutOfOrderError:
                # Every window is given the whole page and keeps its own rows (a writer given
                # a part already merges the page over it).
                for writer in entry.writers:
                    writer.add(batch)

    def _refusal(self, source: Writer, kind: str) -> OutputError:
        # Imported on this error path only: window workers never load the settings models.
        from pipeline.settings import FORMATS_BY_KIND

        assert self._window is not None, "window not opened"
        held = " and ".join(sorted(source.kinds))
        others = ", ".join(FORMATS_BY_KIND[kind])
        return OutputError(
            f"the {source.name} format holds {held}; use {others} for {kind}",
            path=str(self._root / source.relative_path(self._dataset, self._window)),
        )

    @property
    def _records(self) -> int:
        return sum(writer.record_count for writer in self._formats[0].writers)

    def publish(self) -> BuiltWindow:
        """Publish every file in turn. When one fails (a full disk), the temporaries of the
        rest are dropped and the files already published are reported with the error: they
        are on disk and must be recorded even though the build is not done. The folders the
        files were renamed in are flushed once, after the last (`folder_flushes_gathered`); a
        failed flush is raised with no file reported."""
        files: list[BuiltFile] = []
        try:
            with folder_flushes_gathered():
                for entry in self._formats:
                    for writer, window in zip(entry.writers, entry.windows, strict=True):
                        published = writer.publish()
                        if published is not None:
                            start, end = writer.covers or (window.start, window.end)
                            files.append(BuiltFile(published, writer.record_count, start, end))
        except FolderFlushError as exc:
            # No rename of the build is known to be durable: none is recorded, and the retry
            # builds the windows again over the files on disk.
            self.discard()
            earlier = f" (after: {exc.__context__})" if exc.__context__ is not None else ""
            raise OutputError(
                f"cannot flush {exc.folder} after publishing into it: {exc.strerror}{earlier}",
                path=str(exc.folder),
            ) from exc
        except PipelineError as exc:
            self.discard()
            if not files:
                raise
            return BuiltWindow(files, self._records, error=exc)
        except BaseException:
            self.discard()
            raise
        return BuiltWindow(files, self._records)

    def discard(self) -> None:
        """Drop the temporaries of every writer."""
        for entry in self._formats:
            for writer in entry.writers:
                writer.discard()

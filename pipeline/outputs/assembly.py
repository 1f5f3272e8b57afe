"""A window's writers, one per format: pages in, published files out.

`WindowAssembly` is the part of building a window that runs wherever the pool puts it (in the
daemon's process or in a worker): it opens every format's window writer, feeds each batch to
them, then publishes them in turn, reporting the files already on disk when a later format
fails.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.exceptions import OutputError, PipelineError
from pipeline.outputs.base import WindowWriter, Writer
from pipeline.records import PageBatch, PublishedFile, Window


@dataclass(frozen=True, slots=True)
class BuiltFile:
    """One published file of a window, with what the manifest records of it."""

    file: PublishedFile
    records: int
    # The partition a NetCDF/CSV/raw-text file covers; None: the window itself.
    time_start: datetime | None
    time_end: datetime | None


@dataclass(frozen=True, slots=True)
class BuiltWindow:
    """What publishing a window produced: one entry per format, None where nothing was new
    (or, after a failure, where nothing was published)."""

    files: list[BuiltFile | None]
    records: int  # records the first format's file holds now
    # Set when a format failed to publish after others had: their files are on disk and must
    # be recorded, then this is raised (the cursor stays where it was).
    error: PipelineError | None = None


class WindowAssembly:
    """A window's writers, one per format: the part that runs wherever the builder puts it."""

    def __init__(
        self, writers: Mapping[str, Writer], formats: Sequence[str], root: Path, dataset: str
    ) -> None:
        self._root = root
        self._writers: list[WindowWriter[Any]] = []
        self._dataset = dataset
        self._sources = [writers[fmt] for fmt in formats]
        self._window: Window | None = None

    def open(self, window: Window) -> int:
        """Open every format's window writer; returns the first one's existing record count."""
        self._window = window
        for source in self._sources:
            self._writers.append(source.open_window(self._root, self._dataset, window))
        return self._writers[0].record_count

    def add(self, batch: PageBatch) -> None:
        """Merge one page into every format; a format that does not hold the page's kind
        refuses it loudly (its records would otherwise be dropped), unless it is empty."""
        for source, writer in zip(self._sources, self._writers, strict=True):
            if batch.kind in source.kinds:
                writer.add(batch)
            elif batch.rows:
                raise self._refusal(source, batch.kind)

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

    def publish(self) -> BuiltWindow:
        """Publish every format in turn. When one fails (a full disk), the temporaries of the
        rest are dropped and the files already published are reported with the error: they
        are on disk and must be recorded even though the window is not done."""
        files: list[BuiltFile | None] = []
        try:
            for writer in self._writers:
                published = writer.publish()
                if published is None:
                    files.append(None)
                    continue
                start, end = writer.covers or (None, None)
                files.append(BuiltFile(published, writer.record_count, start, end))
        except PipelineError as exc:
            self.discard()
            if not any(files):
                raise
            files += [None] * (len(self._writers) - len(files))
            return BuiltWindow(files, self._writers[0].record_count, error=exc)
        except BaseException:
            self.discard()
            raise
        return BuiltWindow(files, self._writers[0].record_count)

    def discard(self) -> None:
        """Drop the temporaries of every format."""
        for writer in self._writers:
            writer.discard()

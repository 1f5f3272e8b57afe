"""What one pass over a stream reports, whatever its kind."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.outputs.manifest import write_manifest

if TYPE_CHECKING:
    from pipeline.engine.context import HarvestContext


@dataclass
class PassOutcome:
    """Counts of one pass over a stream; `caught_up` is false while a backlog remains."""

    stream: str
    units: int = 0  # windows, files or product periods completed
    records: int = 0
    files: int = 0
    bytes: int = 0
    quarantined: int = 0
    caught_up: bool = True
    held_elsewhere: bool = False  # another instance holds the stream's lease: nothing done
    errors: list[str] = field(default_factory=list)
    # Not errors, but what an operator should hear about (e.g. a filter nothing matches).
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the pass finished without an unhandled error."""
        return not self.errors


async def refresh_manifest(ctx: HarvestContext, stream: str, dataset_id: str) -> None:
    """Rewrite `<root>/<dataset>/manifest.tsv` (size, sha256, source, time range of every
    file) from the state store, for ERDDAP's EDDTableFromFileNames and for people."""
    entries = [e for e in await ctx.store.list_manifest(stream) if e.dataset_id == dataset_id]
    await asyncio.to_thread(write_manifest, ctx.output_root, dataset_id, entries)

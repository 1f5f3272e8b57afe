"""What one pass over a stream reports, whatever its kind."""

from __future__ import annotations

from dataclasses import dataclass, field

from pipeline.onc import DataSource
from pipeline.settings import StreamSettings


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
    # A commit of this pass carried a cursor time, which recorded a successful run already.
    success_recorded: bool = False
    errors: list[str] = field(default_factory=list)
    # Not errors, but what an operator should hear about (e.g. a filter nothing matches).
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the pass finished without an unhandled error."""
        return not self.errors


def source_of(stream: StreamSettings) -> DataSource:
    """The Oceans API addressing of a stream."""
    return DataSource(
        location_code=stream.location_code,
        device_category_code=stream.device_category_code,
        device_code=stream.device_code,
    )

"""What one pass over a stream reports, whatever its kind."""

from __future__ import annotations

from dataclasses import dataclass, field


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
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the pass finished without an unhandled error."""
        return not self.errors

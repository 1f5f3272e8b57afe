"""A metrics recorder for tests: keeps every hook call so tests can inspect labels."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RecordingMetrics:
    """Implements pipeline.onc.metrics.OncMetrics by appending to lists."""

    requests: list[tuple[str, int | None, float, int]] = field(default_factory=list)
    retries: list[tuple[str, str]] = field(default_factory=list)

    def request_finished(
        self, endpoint: str, status: int | None, seconds: float, nbytes: int
    ) -> None:
        self.requests.append((endpoint, status, seconds, nbytes))

    def retry(self, endpoint: str, reason: str) -> None:
        self.retries.append((endpoint, reason))

    def text(self) -> str:
        """Every label and value as one string (for secret scans)."""
        return repr(self.requests) + repr(self.retries)

"""Every knob of the emulator, with defaults that suit the CLI; tests override what they need."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any


@dataclass(slots=True)
class EmulatorConfig:
    """Configuration of one emulator instance (both servers).

    Field names match the `onc-pipeline emulator` flags (`--host --onc-port --registry-port
    --token --faults --seed`); the rest are knobs for tests and benchmarks.
    """

    token: str = "emulator-token"
    seed: int = 0
    host: str = "127.0.0.1"
    onc_port: int = 8080
    registry_port: int = 8081
    # A profile name (see faults.PROFILES), a path to a YAML/JSON fault file, a mapping with
    # the file's content, or None for a well-behaved service.
    faults: str | Mapping[str, Any] | None = None
    # Injected data gaps (see gaps.py): a path to a YAML/JSON file, a mapping with its content,
    # inline JSON text, or None. Replaceable at run time with PUT /_emulator/gaps.
    gaps: str | Mapping[str, Any] | None = None
    # Data exists up to clock.now() minus this many seconds (near-real-time latency).
    latency_s: float = 2.0
    # When set, the clock starts pinned at this instant instead of following real time.
    clock_start: datetime | None = None
    # Delay of the registry's 401 answers (the real one sleeps 0.5-1 s).
    auth_delay: tuple[float, float] = (0.5, 1.0)
    # dataProductDelivery: time from `run` to `complete`, and how long files stay downloadable.
    product_processing_s: float = 3.0
    product_expiry_s: float = 7 * 24 * 3600.0
    # A product's files are split into runs: one run per device, and at most this many files
    # per run when set (no public source says when ONC splits a product: a guess, see
    # docs/dev/emulator.md). Run k completes after (k + 1) x product_processing_s.
    product_files_per_run: int | None = None
    # archivefile/download honours `Range:`; False answers 200 with the whole body instead.
    archive_range: bool = True
    # Exact size in bytes of the archive files of a device, overriding the catalogue defaults;
    # keys are a deviceCode or "deviceCode.ext", e.g. {"ICLISTENHF1560.wav": 5_000_000}.
    archive_file_sizes: dict[str, int] = field(default_factory=dict)
    # Files of these extensions are stored compressed: listings show a smaller stored size
    # (`fileSize`, `compressedFileSize`) than the bytes a download delivers
    # (`uncompressedFileSize`), as ONC's archive does ("Many files in the archive are
    # compressed for storage", api-python-client src/onc/onc.py downloadArchivefile).
    archive_compressed: tuple[str, ...] = ("txt", "csv", "wav", "mat", "nc")
    # Longest delay, in seconds after a file ends, before it is archived (listed and
    # downloadable); each file's delay is a seeded draw in [0, this]. The real delay is
    # undocumented; tests use hours.
    archive_delay_s: float = 0.0
    # When set (a base URL such as "http://127.0.0.1:PORT"), archivefile/download answers
    # 302 to the same path and query on that host, token included: the harmful kind of
    # redirect, which a client must not follow with its token.
    archive_redirect_to: str | None = None
    # Size of each write while streaming a file download.
    download_chunk_bytes: int = 256 * 1024
    # Rendered data pages kept in memory, keyed by the normalized query.
    page_cache_entries: int = 16
    # Request records kept for introspection (oldest dropped first).
    request_log_limit: int = 200_000
    # Redeployments: deviceCode -> instant. The device's deployment covering the instant ends
    # there and a new one of the same device at the same location begins at once, at a moved
    # position (see catalogue.Catalogue.redeployed).
    redeployments: dict[str, datetime] = field(default_factory=dict)

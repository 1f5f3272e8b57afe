"""Configuration of the Oceans API client: one frozen dataclass, built once by the daemon."""

from __future__ import annotations

from dataclasses import dataclass, field

#: Production host; tests and the demo point `base_url` at the emulator instead.
DEFAULT_BASE_URL = "https://data.oceannetworks.ca"


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Everything the client needs; the defaults are polite to ONC and safe for years of running.

    These defaults are the only ones: the `onc` settings section takes its defaults from this
    class (pipeline/settings.py), so the daemon and a library user get the same client.
    The token never shows in `repr()` (it is excluded from the generated repr), so options can be
    logged or shown in a traceback without leaking it.
    """

    token: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    # Per-request timeouts in seconds. `total_timeout` bounds one JSON request end to end;
    # streamed downloads (GB files) use only connect/read timeouts, never the total one.
    # The official client gives each request 60 s without a reply; a 100,000-row page of
    # many sensors can take ONC longer to build than to send, and a request cut short is
    # built twice, so the whole request gets 10 minutes.
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    total_timeout: float = 600.0
    # Politeness. ONC blocked a user whose tool downloaded archive files "multiple times per
    # second for several days" and asked for about 3 parallel workers (ONC's client team in
    # lucascesarfd/onc_dataset#4): at most 3 requests in flight and one started per second,
    # for every kind of request together. No public source gives other figures for JSON pages
    # than for downloads (the official client sends both one at a time, unthrottled), so one
    # cap covers all kinds; a slow download holds its slot, never the rate.
    max_concurrency: int = 3
    max_rate_per_s: float = 1.0
    rate_burst: int = 1
    # Retries of transient failures (5xx, resets, timeouts, truncated bodies). The official
    # client never retries; we do, a few times and slowly, so an outage is not hammered.
    max_attempts: int = 6
    backoff_base: float = 1.0
    backoff_max: float = 120.0
    retry_deadline: float = 1800.0
    # A maintenance window (repeated 503/429) is waited out up to this long, then it is fatal.
    maintenance_max_wait: float = 6 * 3600.0
    # Scalar/raw pages: rows per sensor and page; 100,000 is the API's maximum and default.
    row_limit: int = 100_000
    # dataProductDelivery polling: clamp(0.02 x estimate, min, max) and an overall deadline.
    product_poll_min: float = 1.0
    product_poll_max: float = 10.0
    product_deadline: float = 6 * 3600.0
    # Streaming: bytes per read when downloading files.
    chunk_size: int = 1 << 20
    user_agent: str = "onc-pipeline (+https://github.com/; polite harvester)"

    def __post_init__(self) -> None:
        problems = []
        if not self.token:
            problems.append("token is empty")
        if self.max_concurrency < 1:
            problems.append("max_concurrency must be >= 1")
        if self.max_rate_per_s <= 0:
            problems.append("max_rate_per_s must be > 0")
        if self.rate_burst < 1:
            problems.append("rate_burst must be >= 1")
        if self.max_attempts < 1:
            problems.append("max_attempts must be >= 1")
        if not 1 <= self.row_limit <= 100_000:
            problems.append("row_limit must be within 1..100000")
        if self.product_poll_min <= 0 or self.product_poll_max < self.product_poll_min:
            problems.append("product poll bounds must satisfy 0 < min <= max")
        if self.chunk_size < 1024:
            problems.append("chunk_size must be >= 1024")
        if problems:
            # ValueError, not ConfigError: these are programming errors of the caller; settings
            # validation (with YAML paths) happens earlier, in pipeline/settings.py.
            raise ValueError("invalid ClientOptions: " + "; ".join(problems))

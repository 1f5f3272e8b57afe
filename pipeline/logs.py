"""The one structlog configuration: JSON lines off a TTY, console on one, secrets redacted.

Redaction is the last line of defence: callers already avoid logging secrets, but anything that
slips through (a URL with `token=`, an exception message, an aiohttp log record) is scrubbed
both field by field and once more on the final rendered line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable
from typing import Any, Literal, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from pipeline.redaction import REDACTOR


class _RedactingRenderer:
    """Wraps the final renderer and scrubs its output string once more."""

    def __init__(self, inner: Processor) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> Any:
        rendered = self._inner(logger, method, event_dict)
        return REDACTOR.text(rendered) if isinstance(rendered, str) else rendered


LogFormat = Literal["auto", "json", "console"]


def configure_logging(
    *,
    level: str = "info",
    fmt: LogFormat = "auto",
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> None:
    """Configure structlog and the stdlib root logger once, for the whole process."""
    out = stream if stream is not None else sys.stdout
    for secret in secrets:
        REDACTOR.add_secret(secret)
    use_console = fmt == "console" or (fmt == "auto" and out.isatty())

    shared: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
    ]
    final: list[Processor]
    if use_console:
        final = [
            structlog.processors.format_exc_info,
            REDACTOR,
            _RedactingRenderer(structlog.dev.ConsoleRenderer(colors=False)),
        ]
    else:
        final = [
            # Locals of frames may hold tokens: never render them.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            ),
            REDACTOR,
            _RedactingRenderer(structlog.processors.JSONRenderer()),
        ]

    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *final],
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiohttp's access log repeats every request; the client logs its own canonical lines.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def bind(**values: Any) -> None:
    """Bind context (stream=, run_id=) for every log line of the current task."""
    structlog.contextvars.bind_contextvars(**values)


def unbind(*keys: str) -> None:
    """Remove context bound with `bind`."""
    structlog.contextvars.unbind_contextvars(*keys)

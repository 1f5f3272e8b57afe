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


def _hide_rich_from_structlog() -> None:
    """Import structlog as it imports itself where rich is not installed.

    structlog imports rich, when present, at its own import (for the tracebacks of its
    ConsoleRenderer and the repr of locals): a few tens of milliseconds at every start. We
    render console lines ourselves and never render locals, and rich is no dependency of ours
    (in production it is absent; development tools install it), so it is hidden while
    structlog loads: `import rich` raises ImportError for that moment, which structlog
    handles. This module must be the first to import structlog for it to count (a test
    checks that the command line loads no rich).
    """
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` fail
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_hide_rich_from_structlog()

import structlog  # noqa: E402
from structlog.typing import EventDict, Processor, WrappedLogger  # noqa: E402

from pipeline.redaction import REDACTOR  # noqa: E402


class _RedactingRenderer:
    """Wraps the final renderer and scrubs its output string once more."""

    def __init__(self, inner: Processor) -> None:
        self._inner = inner

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> Any:
        rendered = self._inner(logger, method, event_dict)
        return REDACTOR.text(rendered) if isinstance(rendered, str) else rendered


# Fields a person at a terminal does not need on every line (JSON keeps them all).
_CONSOLE_OMITS = ("logger", "run_id", "fetch_from", "fetch_to", "pages", "sha256", "transfer_ms")
_CONSOLE_VALUE_MAX = 60
# Shortened nowhere: what went wrong is the point of the line.
_CONSOLE_WHOLE = frozenset({"error", "reason", "problems", "hint"})


def render_console(logger: WrappedLogger, method: str, event_dict: EventDict) -> str:
    """`HH:MM:SS level event stream key=value ...`: what a person needs first, short values.

    The full record, with logger, run id, dates and digests, is what JSON lines are for.
    """
    fields = dict(event_dict)
    timestamp = str(fields.pop("timestamp", ""))
    level = str(fields.pop("level", method))
    event = str(fields.pop("event", ""))
    stream = fields.pop("stream", None)
    exception = fields.pop("exception", None)
    for key in _CONSOLE_OMITS:
        fields.pop(key, None)
    head = f"{timestamp[11:19]} {level:<5} {event}" + (f" {stream}" if stream else "")
    # A true flag reads as its bare name ("complete"); every other field as key=value.
    line = " ".join(
        [head, *(k if v is True else f"{k}={_console_value(k, v)}" for k, v in fields.items())]
    )
    return f"{line}\n{exception}" if exception else line


def _console_value(key: str, value: Any) -> str:
    text = str(value)
    if len(text) > _CONSOLE_VALUE_MAX and key not in _CONSOLE_WHOLE:
        return text[: _CONSOLE_VALUE_MAX - 1] + "…"
    return repr(text) if " " in text else text


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
            _RedactingRenderer(render_console),
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

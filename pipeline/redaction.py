"""Secrets out of text: one placeholder, one list of secret names, one scrubber.

Everything that may leave the process (log lines, error messages, URLs stored on errors, state,
metrics labels) goes through here. Secrets are known two ways: by value (`REDACTOR.add_secret`,
called once at start-up with the ONC token and the registry password) and by shape (a `token=`
query parameter, an `"authToken": "..."` JSON member, an `X-Auth-Token:` header). The
placeholder is a bare word, so a redacted URL is still a valid URL.
"""

from __future__ import annotations

import hashlib
import re
import threading
from typing import TYPE_CHECKING, Any

from yarl import URL

if TYPE_CHECKING:  # annotations only: importing structlog is pipeline.logs' to do first
    from structlog.typing import EventDict, WrappedLogger

REDACTED = "REDACTED"

# Keys whose values are secrets whatever they hold.
_SECRET_KEYS = frozenset(
    {
        "token",
        "onc_token",
        "password",
        "passwd",
        "secret",
        "auth_token",
        "authtoken",
        "x-auth-token",
        "x_auth_token",
        "authorization",
        "flag_key",
        "flagkey",
        "erddap_flag_key",
    }
)
# (pattern, replacement): `token=...` in query strings, `"authToken": "..."` in JSON text,
# auth headers in reprs. The replacement keeps the name so a reader sees what was removed.
_SECRET_PATTERNS = (
    (re.compile(r"(?i)(token|password|flagKey|authToken)=[^&\s'\"<>]+"), rf"\1={REDACTED}"),
    (
        re.compile(r"(?i)(\"(?:token|password|authToken|X-Auth-Token)\"\s*:\s*\")[^\"]*\""),
        rf'\1{REDACTED}"',
    ),
    (
        re.compile(r"(?i)('(?:token|password|authToken|X-Auth-Token)'\s*:\s*')[^']*'"),
        rf"\1{REDACTED}'",
    ),
    (re.compile(r"(?i)\b(X-Auth-Token|Authorization)(:\s*)\S+"), rf"\1\2{REDACTED}"),
)


class Redactor:
    """Removes registered secret values and secret-looking fields from log events."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: tuple[str, ...] = ()

    def add_secret(self, value: str | None) -> None:
        """Register a secret value (and its SHA-256 hex, which the registry login uses)."""
        if not value or len(value) < 4:
            return
        digest = hashlib.sha256(value.encode("utf-8")).hexdigest()
        with self._lock:
            known = set(self._values)
            known.update({value, digest})
            # Longest first, so a secret containing another is removed whole.
            self._values = tuple(sorted(known, key=len, reverse=True))

    def clear(self) -> None:
        """Forget every registered secret (tests)."""
        with self._lock:
            self._values = ()

    def text(self, text: str) -> str:
        """Scrub one string."""
        for value in self._values:
            if value in text:
                text = text.replace(value, REDACTED)
        for pattern, replacement in _SECRET_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def value(self, value: Any) -> Any:
        """Scrub any JSON-like value recursively."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {k: self._field(str(k), v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        if isinstance(value, int | float | bool) or value is None:
            return value
        return self.text(str(value))

    def _field(self, key: str, value: Any) -> Any:
        if key.lower() in _SECRET_KEYS and value not in (None, ""):
            return REDACTED
        return self.value(value)

    def __call__(self, logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
        """structlog processor form."""
        return {k: self._field(k, v) for k, v in event_dict.items()}


REDACTOR = Redactor()


def redact_text(text: str, secret: str | None = None) -> str:
    """`text` with registered secrets, secret-shaped fields and the literal `secret` replaced."""
    cleaned = REDACTOR.text(text)
    if secret:
        cleaned = cleaned.replace(secret, REDACTED)
    return cleaned


def redact_url(url: str | URL) -> str:
    """`url` as text with the value of every secret query parameter replaced by REDACTED.

    The query is rewritten parameter by parameter, so an encoded name (`%74oken=`) is caught
    too; the rest of the URL is then scrubbed as text.
    """
    parsed = url if isinstance(url, URL) else URL(str(url))
    if any(key.lower() in _SECRET_KEYS for key in parsed.query):
        query = [(k, REDACTED if k.lower() in _SECRET_KEYS else v) for k, v in parsed.query.items()]
        parsed = parsed.with_query(query)
    return redact_text(str(parsed))

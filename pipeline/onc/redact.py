"""Token redaction: every URL or text that leaves the HTTP layer goes through here first."""

from __future__ import annotations

import re

from yarl import URL

REDACTED = "REDACTED"

# Matches `token=<value>` in a query string or free text (an ONC error message can quote a URL).
_TOKEN_IN_TEXT = re.compile(r"(?i)(token=)[^&\s\"'<>]+")


def redact_url(url: str | URL) -> str:
    """Return `url` as text with every `token` query value replaced by REDACTED."""
    parsed = url if isinstance(url, URL) else URL(str(url))
    if "token" not in parsed.query:
        return redact_text(str(parsed))
    query = [(k, REDACTED if k.lower() == "token" else v) for k, v in parsed.query.items()]
    return str(parsed.with_query(query))


def redact_text(text: str, secret: str | None = None) -> str:
    """Return `text` with `token=...` values, and the literal `secret` if given, redacted."""
    cleaned = _TOKEN_IN_TEXT.sub(rf"\g<1>{REDACTED}", text)
    if secret:
        cleaned = cleaned.replace(secret, REDACTED)
    return cleaned

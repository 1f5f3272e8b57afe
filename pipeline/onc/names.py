"""Safe file names: server-given names are checked, never trusted, before touching the disk."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from pipeline.onc.errors import UnsafeFileNameError

# One path component, at most 255 bytes (ext4/xfs limit), no control characters, no separators.
_MAX_NAME_BYTES = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DISPOSITION_PARAM = re.compile(
    r"""(?ix) (?:^|;) \s* (filename\*?) \s* = \s* ("(?:[^"\\]|\\.)*"|[^;]*)"""
)


def check_file_name(name: str) -> str:
    """Return `name` unchanged if it is one safe path component, else raise UnsafeFileNameError
    (an OutputError).

    Unsafe: empty, `.`/`..`, a leading dot (our temporary files are `.NAME.part`, and hidden
    files are ignored by ERDDAP), any `/` or `\\`, NUL or control characters, a drive or
    absolute path, more than 255 bytes.
    """
    problem = _problem(name)
    if problem:
        raise UnsafeFileNameError(f"unsafe file name {name!r}: {problem}", name=name)
    return name


def _problem(name: str) -> str | None:
    if not name or not name.strip():
        return "empty"
    if name in (".", ".."):
        return "a relative directory reference"
    if "/" in name or "\\" in name:
        return "contains a path separator"
    if _CONTROL.search(name):
        return "contains NUL or control characters"
    if name.startswith("."):
        return "starts with a dot"
    if re.match(r"^[A-Za-z]:", name):
        return "looks like a drive path"
    if name != name.strip():
        return "leading or trailing whitespace"
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_NAME_BYTES:
        return f"longer than {_MAX_NAME_BYTES} bytes"
    return None


def safe_path(dest_dir: Path, name: str) -> Path:
    """`dest_dir / name` after checking `name`, guaranteed to stay directly inside `dest_dir`."""
    check_file_name(name)
    root = dest_dir.resolve()
    path = root / name
    # Belt and braces: even a name that passed the checks must not resolve elsewhere (a
    # pre-existing symlink named like the file would be replaced, not followed, by rename).
    if path.parent != root:
        raise UnsafeFileNameError(f"file name {name!r} escapes {root}", name=name)
    return path


def temp_path(final: Path) -> Path:
    """The temporary name `<dir>/.<name>.part`: hidden, so ERDDAP's file regexes never match."""
    return final.with_name(f".{final.name}.part")


def disposition_file_name(header: str | None) -> str | None:
    """The file name of a `Content-Disposition` header (quoted, unquoted or RFC 5987), unchecked."""
    if not header:
        return None
    plain: str | None = None
    extended: str | None = None
    for match in _DISPOSITION_PARAM.finditer(header):
        key, raw = match.group(1).lower(), match.group(2).strip()
        if raw.startswith('"') and raw.endswith('"') and len(raw) >= 2:
            raw = re.sub(r"\\(.)", r"\1", raw[1:-1])
        if key == "filename*":
            extended = _decode_rfc5987(raw)
        else:
            plain = raw
    return extended or plain


def _decode_rfc5987(value: str) -> str | None:
    charset, sep, rest = value.partition("'")
    if not sep:
        return None
    _lang, sep, encoded = rest.partition("'")
    if not sep:
        return None
    try:
        return unquote(encoded, encoding=charset or "utf-8", errors="strict")
    except (LookupError, UnicodeDecodeError):
        return None

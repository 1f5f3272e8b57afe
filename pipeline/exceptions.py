"""The whole error tree: every error the pipeline raises on purpose derives from PipelineError.

Details are attributes, not text baked into a message, so callers (and tests) can act on them.
URLs stored on errors are always redacted before they get here.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from dataclasses import dataclass


class PipelineError(Exception):
    """Base of every error the pipeline raises on purpose."""

    def __reduce__(self) -> tuple[object, ...]:
        # Errors cross process boundaries (window workers). The default pickling calls
        # `cls(*args)`, which fails for keyword-only details (`where=`, `path=`); rebuild
        # from the message and the attributes instead.
        return (_rebuild_error, (type(self), self.args, self.__dict__))


def _rebuild_error(
    cls: type[PipelineError], args: tuple[object, ...], attributes: dict[str, object]
) -> PipelineError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(attributes)
    return error


class ConfigError(PipelineError, ValueError):
    """The configuration is invalid; `problems` lists every (yaml path, message) found."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems: list[tuple[str, str]] = list(problems)
        super().__init__(self.render())

    def render(self) -> str:
        """One line per problem, `path: message`."""
        return "\n".join(
            f"{path}: {message}" if path else message for path, message in self.problems
        )


class OncError(PipelineError):
    """A call to the Oceans API failed. `url` never carries the token."""

    def __init__(self, message: str, *, url: str | None = None, status: int | None = None) -> None:
        self.url = url
        self.status = status
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.args[0] if self.args else type(self).__name__]
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.url:
            parts.append(f"url={self.url}")
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class OncErrorDetail:
    """One entry of the Oceans API `errors` list."""

    code: int | None
    message: str
    parameter: str | None


class OncRequestError(OncError):
    """HTTP 400: the request itself is wrong. Never retried."""

    def __init__(
        self,
        message: str,
        *,
        errors: Sequence[OncErrorDetail] = (),
        url: str | None = None,
        status: int | None = 400,
    ) -> None:
        self.errors: list[OncErrorDetail] = list(errors)
        super().__init__(message, url=url, status=status)


class OncAuthError(OncError):
    """HTTP 401/403: the token is wrong or lacks rights. Never retried."""


class OncUnavailable(OncError):  # noqa: N818 - the name docs/operations.md and the logs use
    """5xx, 429, connection resets, timeouts, truncated bodies: transient, retried with backoff."""

    def __init__(
        self,
        message: str,
        *,
        url: str | None = None,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.retry_after = retry_after
        super().__init__(message, url=url, status=status)


class StateError(PipelineError):
    """The state store failed (locked, corrupt, unreachable, migration mismatch)."""


class LeaseLostError(StateError):
    """A lease expired or was taken over; the holder must stop and must not commit.

    `resource` and `token` name the lease the caller believed it held.
    """

    def __init__(self, message: str, *, resource: str, token: int) -> None:
        self.resource = resource
        self.token = token
        super().__init__(message)


class OutputError(PipelineError):
    """Writing or publishing an output file failed (disk full, read-only, unsafe name)."""

    def __init__(self, message: str, *, path: str | None = None) -> None:
        self.path = path
        super().__init__(message)


class RegistryError(PipelineError):
    """A call to the IOOS Catalog Registry failed."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class RegistryAuthError(RegistryError):
    """Login to the registry was refused (wrong email or password)."""


class PortInUseError(PipelineError):
    """A server could not listen: another program holds `host:port`.

    `role` names the server ("onc", "registry", "ops"); `option` says how to choose another
    port, filled in by whoever knows how the port was given (a flag, a setting).
    """

    def __init__(self, host: str, port: int, *, role: str, what: str, option: str = "") -> None:
        self.host = host
        self.port = port
        self.role = role
        self.what = what
        self.option = option
        super().__init__(host, port)

    def __str__(self) -> str:
        text = f"port {self.port} on {self.host} ({self.what}) is already in use by another program"
        return f"{text}; choose another with {self.option}" if self.option else text


def port_in_use(exc: OSError) -> bool:
    """True for the OSError a bind raises when the address is taken."""
    return exc.errno == errno.EADDRINUSE

"""Oceans API errors specific to this client, all inside the tree of pipeline/exceptions.py."""

from __future__ import annotations

from pipeline.exceptions import OncError, OncUnavailable, OutputError


class OncSchemaError(OncError):
    """The reply parsed as JSON but does not have the shape we rely on (schema drift). Not retried.

    `where` names the offending member (e.g. `sensorData[2].data.values`).
    """

    def __init__(
        self, message: str, *, where: str = "", url: str | None = None, status: int | None = None
    ) -> None:
        self.where = where
        self.detail = message
        super().__init__(f"{message} at {where}" if where else message, url=url, status=status)

    def at(self, *, url: str | None, status: int | None) -> OncSchemaError:
        """The same error with the (redacted) URL and status of the reply that caused it."""
        return OncSchemaError(self.detail, where=self.where, url=url, status=status)


class OncMalformedReply(OncUnavailable):
    """The reply body is not usable JSON (truncated, empty, an HTML page): looks transient."""


class OncNetworkError(OncUnavailable):
    """The connection failed, timed out or was cut mid-body (reset, truncated transfer)."""


class OncIntegrityError(OncUnavailable):
    """A downloaded file failed its size or checksum check; the next attempt starts over."""


class OncProductFailedError(OncError):
    """A data product run ended with status `error` or `cancelled`; `run_status` says which.

    `dp_request_id` is None when the failure came from a download (which knows the run only).
    """

    def __init__(
        self,
        message: str,
        *,
        dp_request_id: int | None,
        dp_run_id: int | None,
        run_status: str,
        url: str | None = None,
    ) -> None:
        self.dp_request_id = dp_request_id
        self.dp_run_id = dp_run_id
        self.run_status = run_status
        super().__init__(message, url=url)


class OncProductGoneError(OncError):
    """HTTP 410 on a product download: the file left the FTP area; `restart` or request again."""

    def __init__(self, message: str, *, dp_run_id: int, index: str, url: str | None = None) -> None:
        self.dp_run_id = dp_run_id
        self.index = index
        super().__init__(message, url=url, status=410)


class OncProductTimeout(OncUnavailable):
    """A data product was not ready before the configured deadline; poll the same ids later."""

    def __init__(self, message: str, *, dp_request_id: int | None, dp_run_id: int | None) -> None:
        self.dp_request_id = dp_request_id
        self.dp_run_id = dp_run_id
        super().__init__(message)


class UnsafeFileNameError(OutputError):
    """A server-given file name (archive listing, `Content-Disposition`) that is not one safe
    path component. Retrying cannot fix it: the item is quarantined. `.name` is the name."""

    def __init__(self, message: str, *, name: str) -> None:
        super().__init__(message, path=repr(name))
        self.name = name

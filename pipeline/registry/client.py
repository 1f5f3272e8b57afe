"""Async client of the IOOS Catalog Registry API: hashed login, cached token, trigger, read back.

Only the SHA-256 digest of the password is kept in memory and sent (`hashed: true`); the
plaintext is dropped in the constructor. Replies are judged by status code, never by body
shape, because the registry answers 401 with two different bodies. Transient failures (5xx,
429, connection errors, timeouts) are retried with bounded exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from typing import Any

import aiohttp
import structlog

from pipeline import backoff
from pipeline.exceptions import RegistryAuthError, RegistryError
from pipeline.lifecycle import AsyncResource
from pipeline.registry.models import HarvestDocument

log = structlog.get_logger(__name__)

_TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})


def password_digest(password: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 password: what Meteor's `hashed: true` login expects."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random, retry_after: float | None = None
) -> float:
    """Seconds to wait before retry number `attempt` (0-based): capped exponential, equal jitter.

    Equal jitter keeps a floor (so retries never hammer) while still spreading clients apart
    (see pipeline.backoff). A server's `Retry-After` wins when it asks for longer, still
    bounded by `cap`.
    """
    delay = backoff.backoff_delay(
        attempt + 1, base=base, cap=cap, jitter=backoff.EQUAL_JITTER, draw=rng.random()
    )
    if retry_after is not None:
        delay = max(delay, min(retry_after, cap))
    return delay


class _TransientError(Exception):
    """Internal: one attempt failed in a way worth retrying."""

    def __init__(self, reason: str, status: int | None, retry_after: float | None = None) -> None:
        self.reason = reason
        self.status = status
        self.retry_after = retry_after
        super().__init__(reason)


class RegistryClient(AsyncResource):
    """One registry account: logs in lazily, reuses its token, re-logs in once on a 401."""

    def __init__(
        self,
        base_url: str,
        email: str,
        password: str,
        session: aiohttp.ClientSession | None = None,
        *,
        timeout: float = 30.0,
        attempts: int = 4,
        backoff_base: float = 0.5,
        backoff_cap: float = 30.0,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.email = email
        self._digest = password_digest(password)  # the plaintext is not kept
        self._session = session
        self._owns_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._attempts = max(1, attempts)
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._rng = rng or random.Random()
        self._user_id: str | None = None
        self._token: str | None = None
        # One login at a time: concurrent 401s must not each log in (tokens pile up server-side).
        self._login_lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"RegistryClient(base_url={self.base_url!r}, email={self.email!r})"

    @property
    def logged_in(self) -> bool:
        """True while a token is cached."""
        return self._token is not None

    async def login(self) -> None:
        """Log in now (replacing any cached token); RegistryAuthError when refused."""
        async with self._login_lock:
            await self._login_locked()

    async def trigger(self, harvest_id: str, *, before: HarvestDocument | None = None) -> None:
        """Ask the registry to harvest `harvest_id` now; returns once the registry accepted it.

        `before` is the harvest document as read just before (read here when not given): a
        trigger whose answer is lost is sent again only if the document shows it never
        arrived, because every trigger that arrives queues one more harvest job.
        """
        if before is None:
            before = await self.harvest(harvest_id)
        token = await self._ensure_token()
        status = await self._send_trigger(harvest_id, before)
        if status == 401:
            # The cached token died (logged out elsewhere, sessions reset): one re-login, one retry.
            log.info("registry_token_rejected", harvest_id=harvest_id)
            await self._relogin(token)
            status = await self._send_trigger(harvest_id, before)
            if status == 401:
                raise RegistryAuthError(
                    f"registry account {self.email} may not trigger harvest {harvest_id} "
                    "(not an admin nor a member of its organization)",
                    status=status,
                )
        if status == 404:
            raise RegistryError(f"registry has no harvest {harvest_id}", status=status)
        if status != 200:
            raise RegistryError(f"registry refused to trigger harvest {harvest_id}", status=status)
        log.info("registry_harvest_triggered", harvest_id=harvest_id)

    async def _send_trigger(self, harvest_id: str, before: HarvestDocument) -> int:
        """Send the trigger; after a lost answer, look at the harvest before sending it again.

        The registry's trigger route calls the harvester, which sets `last_harvest_dt` to
        "pending" and queues a job with no guard (ioos/catalog-harvest-registry
        harvests/api.js, ioos/catalog-harvesting api.py). So a trigger that arrived shows as a
        harvest in progress, or as a `last_harvest_dt` other than `before`'s once it is done.
        """
        for attempt in range(self._attempts):
            try:
                status, _ = await self._send_once(
                    "GET", self._trigger_path(harvest_id), auth=True, json_body=None
                )
                return status
            except _TransientError as exc:
                failure = exc
            now = await self.harvest(harvest_id)
            if now.in_progress or now.last_harvest_dt != before.last_harvest_dt:
                log.info(
                    "registry_trigger_answer_lost",
                    harvest_id=harvest_id,
                    reason=failure.reason,
                    phase=now.phase.value,
                )
                return 200
            if attempt + 1 < self._attempts:
                await self._pause(attempt, failure, "/api/v2/harvests/{id}/harvest")
        raise RegistryError(
            f"registry unavailable after {self._attempts} attempts: {failure.reason}",
            status=failure.status,
        )

    async def harvest(self, harvest_id: str) -> HarvestDocument:
        """The harvest document of `harvest_id` (public route, no login needed)."""
        status, body = await self._send("GET", f"/api/v1/Harvests/{harvest_id}")
        if status == 404:
            raise RegistryError(f"registry has no harvest {harvest_id}", status=status)
        if status != 200 or not isinstance(body, dict) or not isinstance(body.get("data"), dict):
            raise RegistryError(f"unexpected reply reading harvest {harvest_id}", status=status)
        try:
            return HarvestDocument.model_validate(body["data"])
        except ValueError as exc:
            raise RegistryError(f"malformed harvest document {harvest_id}: {exc}") from exc

    async def logout(self) -> None:
        """Revoke the cached token server-side (tokens never expire otherwise); never raises."""
        async with self._login_lock:
            if self._token is None:
                return
            try:
                status, _ = await self._send("POST", "/api/v2/logout", auth=True, attempts=2)
            except RegistryError as exc:
                log.warning("registry_logout_failed", status=exc.status, error=str(exc))
            else:
                # 401 means the token was already dead: the goal is reached either way.
                log.info("registry_logged_out", status=status)
            finally:
                self._token = None
                self._user_id = None

    async def close(self) -> None:
        """Log out, then close the HTTP session when this client created it."""
        await self.logout()
        if self._owns_session and self._session is not None:
            await self._session.close()
            self._session = None

    # -- internals ---------------------------------------------------------------------------

    @staticmethod
    def _trigger_path(harvest_id: str) -> str:
        return f"/api/v2/harvests/{harvest_id}/harvest"

    async def _ensure_token(self) -> str:
        async with self._login_lock:
            if self._token is None:
                await self._login_locked()
            assert self._token is not None
            return self._token

    async def _relogin(self, stale_token: str) -> None:
        async with self._login_lock:
            # Another task may already have replaced the stale token while we waited.
            if self._token is None or self._token == stale_token:
                await self._login_locked()

    async def _login_locked(self) -> None:
        self._token = self._user_id = None
        body = {"email": self.email, "password": self._digest, "hashed": True}
        status, reply = await self._send("POST", "/api/v2/login", json_body=body)
        if status in (401, 403):
            # Not logged here: the caller decides how loud a refused login is.
            raise RegistryAuthError(
                f"registry refused login for {self.email}: wrong email or password",
                status=status,
            )
        data = reply.get("data") if isinstance(reply, dict) else None
        token = data.get("authToken") if isinstance(data, dict) else None
        user_id = data.get("userId") if isinstance(data, dict) else None
        if status != 200 or not isinstance(token, str) or not isinstance(user_id, str):
            raise RegistryError("unexpected reply to registry login", status=status)
        self._token, self._user_id = token, user_id
        log.info("registry_logged_in", user_id=user_id)

    def _session_get(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
            self._owns_session = True
        return self._session

    async def _send(
        self,
        method: str,
        path: str,
        *,
        auth: bool = False,
        json_body: dict[str, Any] | None = None,
        attempts: int | None = None,
    ) -> tuple[int, Any]:
        """One logical request: (status, parsed body) of the first non-transient answer."""
        budget = attempts or self._attempts
        for attempt in range(budget):
            try:
                return await self._send_once(method, path, auth=auth, json_body=json_body)
            except _TransientError as exc:
                if attempt + 1 >= budget:
                    raise RegistryError(
                        f"registry unavailable after {budget} attempts: {exc.reason}",
                        status=exc.status,
                    ) from None
                await self._pause(attempt, exc, path)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _pause(self, attempt: int, exc: _TransientError, path: str) -> None:
        """Back off before retry `attempt + 1` of a request that failed transiently."""
        delay = backoff_delay(
            attempt,
            base=self._backoff_base,
            cap=self._backoff_cap,
            rng=self._rng,
            retry_after=exc.retry_after,
        )
        log.warning(
            "registry_request_retry",
            path=path,
            status=exc.status,
            reason=exc.reason,
            attempt=attempt + 1,
            delay_s=round(delay, 3),
        )
        await asyncio.sleep(delay)

    async def _send_once(
        self, method: str, path: str, *, auth: bool, json_body: dict[str, Any] | None
    ) -> tuple[int, Any]:
        headers = {"Accept": "application/json"}
        if auth and self._token is not None and self._user_id is not None:
            headers["X-User-Id"] = self._user_id
            headers["X-Auth-Token"] = self._token
        try:
            async with self._session_get().request(
                method, self.base_url + path, headers=headers, json=json_body, timeout=self._timeout
            ) as resp:
                raw = await resp.read()
                if resp.status in _TRANSIENT_STATUSES:
                    raise _TransientError(
                        f"HTTP {resp.status}",
                        resp.status,
                        backoff.parse_retry_after(resp.headers.get("Retry-After")),
                    )
                return resp.status, _parse(raw)
        except (aiohttp.ClientError, TimeoutError) as exc:
            # The exception text can name the URL, never a token (tokens travel in headers).
            raise _TransientError(type(exc).__name__, None) from exc


def _parse(raw: bytes) -> Any:
    """The JSON body, or None when it is not JSON (Meteor's HTML error pages)."""
    try:
        return json.loads(raw)
    except ValueError:
        return None

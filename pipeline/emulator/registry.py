"""The IOOS Catalog Registry side of the emulator: Restivus login, trigger, harvest documents.

Faithful to the real Meteor app (see shared/reference/ioos-registry-api.md): Restivus answers
401/403 after a random delay, 405 with an `Allow` header for a wrong method on a known path,
two different 401 bodies on the trigger route, and no guard at all against repeated triggers.
A harvest's progress (`pending` -> `harvesting` -> ISO date) is computed from the state's clock,
so tests that pin or move the clock see the document move without any background task.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from aiohttp import web
from aiohttp.typedefs import Middleware

from pipeline.times import format_onc_time

log = structlog.get_logger(__name__)

# Meteor's Random.id() alphabet: ids are 17 characters drawn from it.
_METEOR_ID_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTWXYZabcdefghijkmnopqrstuvwxyz"
METEOR_ID_LENGTH = 17

DEFAULT_EMAIL = "harvester@example.org"
DEFAULT_PASSWORD = "emulator-password"
DEFAULT_ORGANIZATION = "Ocean Networks Canada"
OTHER_ORGANIZATION = "Other Regional Association"
# Stable ids of the default state, so tests and demo configs can name them.
DEFAULT_USER_ID = "hArVeSTeRuSeR2345"
DEFAULT_HARVEST_IDS = ("oNcWaFhArVeSt2345", "oNcErDdApHaRvEsT7")
OTHER_HARVEST_ID = "oThErOrGhArVeSt89"

_LOGIN_FAILED = {"status": "error", "message": "Unauthorized"}
_NOT_LOGGED_IN = {"status": "error", "message": "You must be logged in to do this."}
_NOT_MEMBER = {"status": "Unauthorized"}
_NO_ENDPOINT = {"status": "error", "message": "API endpoint does not exist"}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def meteor_id(rng: random.Random | None = None) -> str:
    """A fresh 17-character Meteor-style id."""
    pick = rng.choice if rng is not None else secrets.choice
    return "".join(pick(_METEOR_ID_ALPHABET) for _ in range(METEOR_ID_LENGTH))


def sha256_hex(password: str) -> str:
    """Lowercase hex SHA-256 of the UTF-8 password, as Meteor's client digests it."""
    return hashlib.sha256(password.encode("utf-8")).hexdigest()


def iso_date(moment: datetime) -> str:
    """A JavaScript `Date.toJSON()` rendering: UTC, milliseconds, trailing `Z`."""
    return format_onc_time(moment)


@dataclass(slots=True)
class RegistryUser:
    """A registry account; the password is kept in plaintext because this is an emulator."""

    user_id: str
    email: str
    password: str
    admin: bool = False
    organizations: set[str] = field(default_factory=set)
    username: str | None = None


@dataclass(slots=True)
class _HarvestJob:
    """A queued harvest: its phase boundaries are fixed when it is queued."""

    harvest_id: str
    starts: datetime
    ends: datetime
    fail: bool
    record_count: int
    start_applied: bool = False


class RegistryState:
    """Everything the registry emulator knows: users, organizations, harvests, tokens, triggers."""

    def __init__(
        self,
        *,
        clock: Callable[[], datetime] | None = None,
        pending_duration: float = 0.2,
        harvesting_duration: float = 0.3,
        record_count: int = 12,
    ) -> None:
        self.clock: Callable[[], datetime] = clock or (lambda: datetime.now(UTC))
        self.pending_duration = pending_duration
        self.harvesting_duration = harvesting_duration
        self.record_count = record_count
        self.users: dict[str, RegistryUser] = {}
        self.organizations: dict[str, dict[str, Any]] = {}
        self.harvests: dict[str, dict[str, Any]] = {}
        # token -> user id. Restivus stores hashed tokens; plaintext is fine in an emulator.
        self.tokens: dict[str, str] = {}
        # Every token ever issued, revoked or not: tests check none of them leaked anywhere.
        self.issued_tokens: list[str] = []
        self.triggers: list[tuple[str, datetime]] = []
        self.logins = 0
        self.logouts = 0
        self._jobs: list[_HarvestJob] = []
        self._fail_next: list[str | None] = []
        self._trigger_errors = 0

    # -- setup -------------------------------------------------------------------------------

    def add_organization(self, name: str, **extra: Any) -> dict[str, Any]:
        """Register an organization (harvests name it in their `organization` field)."""
        org = {"_id": extra.pop("_id", meteor_id()), "name": name, **extra}
        self.organizations[name] = org
        return org

    def add_user(
        self,
        email: str,
        password: str,
        *,
        user_id: str | None = None,
        admin: bool = False,
        organizations: Sequence[str] = (),
        username: str | None = None,
    ) -> RegistryUser:
        """Register an account; `organizations` are organization names it belongs to."""
        user = RegistryUser(
            user_id=user_id or meteor_id(),
            email=email,
            password=password,
            admin=admin,
            organizations=set(organizations),
            username=username,
        )
        self.users[user.user_id] = user
        return user

    def add_harvest(
        self,
        name: str,
        url: str,
        organization: str,
        *,
        harvest_id: str | None = None,
        harvest_type: str = "WAF",
        harvest_interval: int = 1,
        publish: bool = True,
        harvest_contact: str = "",
        **extra: Any,
    ) -> dict[str, Any]:
        """Register a harvest document; `extra` keeps fields the emulator does not model."""
        doc: dict[str, Any] = {
            "_id": harvest_id or meteor_id(),
            "name": name,
            "url": url,
            "organization": organization,
            "harvest_type": harvest_type,
            "harvest_interval": harvest_interval,
            "publish": publish,
            "harvest_contact": harvest_contact,
            "last_harvest_dt": None,
            "last_harvest_status": None,
            "last_record_count": 0,
            "last_good_count": 0,
            "last_bad_count": 0,
            **extra,
        }
        self.harvests[doc["_id"]] = doc
        return doc

    # -- auth --------------------------------------------------------------------------------

    def find_user(self, identity: str) -> RegistryUser | None:
        """Find by email or by username, both matched exactly.

        Restivus (kahmali/meteor-restivus lib/auth, pinned 0.8.12) looks the user up with the
        Mongo selector `{'emails.address': email}`: no case folding, no trimming.
        """
        for user in self.users.values():
            if user.email == identity or (user.username and user.username == identity):
                return user
        return None

    def login(self, identity: str, password: str, *, hashed: bool) -> tuple[str, str] | None:
        """Check the credentials; on success issue a new token and return (token, user id)."""
        user = self.find_user(identity)
        if user is None:
            return None
        # Meteor compares bcrypt(sha256 hex); a digest must be exactly the lowercase hex.
        expected = sha256_hex(user.password)
        offered = password if hashed else sha256_hex(password)
        if not secrets.compare_digest(offered, expected):
            return None
        token = secrets.token_urlsafe(32)
        self.tokens[token] = user.user_id
        self.issued_tokens.append(token)
        self.logins += 1
        return token, user.user_id

    def authenticate(self, user_id: str | None, token: str | None) -> RegistryUser | None:
        """The user owning this (X-User-Id, X-Auth-Token) pair, or None."""
        if not user_id or not token or self.tokens.get(token) != user_id:
            return None
        return self.users.get(user_id)

    def logout(self, token: str) -> None:
        """Revoke one token."""
        if self.tokens.pop(token, None) is not None:
            self.logouts += 1

    def invalidate_tokens(self) -> int:
        """Revoke every issued token (as an admin resetting sessions would); returns how many."""
        count = len(self.tokens)
        self.tokens.clear()
        return count

    def tokens_of(self, user_id: str) -> list[str]:
        """Tokens currently valid for a user (tests check that logout revoked them)."""
        return [t for t, owner in self.tokens.items() if owner == user_id]

    # -- harvests ----------------------------------------------------------------------------

    def fail_next_harvest(self, harvest_id: str | None = None) -> None:
        """Make the next queued harvest (of `harvest_id`, or of any harvest) end with `fail`."""
        self._fail_next.append(harvest_id)

    def fail_next_triggers(self, count: int) -> None:
        """Make the next `count` trigger calls answer 500 "Server error." (harvester down)."""
        self._trigger_errors = count

    def take_trigger_error(self) -> bool:
        """Consume one scripted trigger error; True when this call must fail."""
        if self._trigger_errors > 0:
            self._trigger_errors -= 1
            return True
        return False

    def may_trigger(self, user: RegistryUser, harvest: Mapping[str, Any]) -> bool:
        """Admins may trigger anything; others only harvests of their organizations."""
        return user.admin or harvest.get("organization") in user.organizations

    def queue_harvest(self, harvest_id: str) -> None:
        """Record a trigger and queue a job; no guard, exactly like the real registry."""
        now = self.clock()
        # Wall time, not the emulated clock: debounce tests measure real elapsed time.
        self.triggers.append((harvest_id, datetime.now(UTC)))
        fail = False
        for index, target in enumerate(self._fail_next):
            if target is None or target == harvest_id:
                del self._fail_next[index]
                fail = True
                break
        # The worker runs one job of a harvest at a time: a new job starts after the last ends.
        previous_end = max(
            (job.ends for job in self._jobs if job.harvest_id == harvest_id), default=now
        )
        starts = max(now + timedelta(seconds=self.pending_duration), previous_end)
        self._jobs.append(
            _HarvestJob(
                harvest_id=harvest_id,
                starts=starts,
                ends=starts + timedelta(seconds=self.harvesting_duration),
                fail=fail,
                record_count=self.record_count,
            )
        )
        # ioos/catalog-harvesting api.py (get_harvest), called synchronously by the trigger:
        # "pending" and every count back to 0; last_harvest_status is left as it was.
        self.harvests[harvest_id].update(
            last_harvest_dt="pending", last_record_count=0, last_good_count=0, last_bad_count=0
        )
        log.info("emulator_registry_harvest_queued", harvest_id=harvest_id, fail=fail)

    def settle(self) -> None:
        """Apply every job phase whose time has come to the harvest documents, in time order."""
        now = self.clock()
        events: list[tuple[datetime, int, _HarvestJob]] = []
        for job in self._jobs:
            if not job.start_applied and job.starts <= now:
                events.append((job.starts, 0, job))
            if job.ends <= now:
                events.append((job.ends, 1, job))
        # At equal times a job's end comes before the next job's start (phase 1 sorts first).
        for _, phase, job in sorted(events, key=lambda e: (e[0], -e[1])):
            doc = self.harvests.get(job.harvest_id)
            if doc is None:
                continue
            # ioos/catalog-harvesting harvest.py (download_harvest): "harvesting" with the status
            # cleared, then the date with "ok" and the counts, or "fail" with the counts left
            # at the 0 the trigger set.
            if phase == 0:
                job.start_applied = True
                doc.update(last_harvest_dt="harvesting", last_harvest_status=None)
            elif job.fail:
                doc.update(last_harvest_dt=iso_date(job.ends), last_harvest_status="fail")
            else:
                doc.update(
                    last_harvest_dt=iso_date(job.ends),
                    last_harvest_status="ok",
                    last_record_count=job.record_count,
                    last_good_count=job.record_count,
                    last_bad_count=0,
                )
        self._jobs = [job for job in self._jobs if job.ends > now]

    def harvest_document(self, harvest_id: str) -> dict[str, Any] | None:
        """The current document of one harvest (a copy), or None."""
        self.settle()
        doc = self.harvests.get(harvest_id)
        return dict(doc) if doc is not None else None

    def harvest_documents(self) -> list[dict[str, Any]]:
        """Every harvest document, current as of the clock."""
        self.settle()
        return [dict(doc) for doc in self.harvests.values()]

    def trigger_history(self) -> list[dict[str, str]]:
        """The trigger history as JSON-ready rows."""
        return [{"harvest_id": h, "at": at.isoformat()} for h, at in self.triggers]


def default_registry_state(*, clock: Callable[[], datetime] | None = None) -> RegistryState:
    """One member user, two harvests of its organization, one of another; all ids stable."""
    state = RegistryState(clock=clock)
    state.add_organization(DEFAULT_ORGANIZATION, _id="oNcOrGaNiZaTiOn23")
    state.add_organization(OTHER_ORGANIZATION, _id="oThErOrGaNiZaTi45")
    state.add_user(
        DEFAULT_EMAIL,
        DEFAULT_PASSWORD,
        user_id=DEFAULT_USER_ID,
        organizations=[DEFAULT_ORGANIZATION],
    )
    state.add_harvest(
        "ONC ERDDAP WAF",
        "https://erddap.example.org/erddap/metadata/iso19115/xml/",
        DEFAULT_ORGANIZATION,
        harvest_id=DEFAULT_HARVEST_IDS[0],
        harvest_type="WAF",
        harvest_contact="harvester@example.org",
    )
    state.add_harvest(
        "ONC ERDDAP",
        "https://erddap.example.org/erddap/",
        DEFAULT_ORGANIZATION,
        harvest_id=DEFAULT_HARVEST_IDS[1],
        harvest_type="ERDDAP-WAF",
        harvest_contact="harvester@example.org",
    )
    # An older document: it still carries ckan_harvest_url, which clients must keep.
    state.add_harvest(
        "Other RA WAF",
        "https://other.example.org/waf/",
        OTHER_ORGANIZATION,
        harvest_id=OTHER_HARVEST_ID,
        harvest_type="CSW",
        harvest_contact="someone@other.example.org",
        ckan_harvest_url="https://data.ioos.us/harvest/other-ra-waf",
        last_harvest_dt="2016-09-22T18:28:08.893Z",
        last_harvest_status="ok",
        last_record_count=40,
        last_good_count=40,
    )
    return state


def _truthy(value: Any) -> bool:
    """JavaScript truthiness: Restivus tests `if bodyParams.hashed`, so the form text "false" is
    truthy there too; mirrored on purpose."""
    return value not in (None, False, 0, "", [])


async def _optional_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body of an introspection call, `{}` when absent or not an object."""
    if not request.can_read_body:
        return {}
    try:
        body = await request.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


class _RegistryRoutes:
    """Request handlers bound to one state; kept in a class so each app has its own."""

    def __init__(self, state: RegistryState, auth_delay: tuple[float, float]) -> None:
        self.state = state
        self.auth_delay = auth_delay

    async def denied(self, body: Mapping[str, Any], status: int = 401) -> web.Response:
        """A 401/403 answer after Restivus's random delay (it hides which check failed)."""
        low, high = self.auth_delay
        if high > 0:
            await asyncio.sleep(random.uniform(low, high))
        return _json(body, status)

    def user_of(self, request: web.Request) -> RegistryUser | None:
        return self.state.authenticate(
            request.headers.get("X-User-Id"), request.headers.get("X-Auth-Token")
        )

    async def login(self, request: web.Request) -> web.Response:
        params: Mapping[str, Any]
        if request.content_type == "application/json":
            try:
                loaded = await request.json()
            except ValueError:
                loaded = {}
            params = loaded if isinstance(loaded, dict) else {}
        else:
            params = await request.post()
        identity = params.get("email") or params.get("username") or params.get("user")
        password = params.get("password")
        if not isinstance(identity, str) or not isinstance(password, str):
            return await self.denied(_LOGIN_FAILED)
        issued = self.state.login(identity, password, hashed=_truthy(params.get("hashed")))
        if issued is None:
            log.info("emulator_registry_login_refused")
            return await self.denied(_LOGIN_FAILED)
        token, user_id = issued
        return _json({"status": "success", "data": {"authToken": token, "userId": user_id}})

    async def logout(self, request: web.Request) -> web.Response:
        if self.user_of(request) is None:
            return await self.denied(_NOT_LOGGED_IN)
        self.state.logout(request.headers["X-Auth-Token"])
        return _json({"status": "success", "data": {"message": "You've been logged out!"}})

    async def trigger(self, request: web.Request) -> web.Response:
        user = self.user_of(request)
        if user is None:
            return await self.denied(_NOT_LOGGED_IN)
        harvest_id = request.match_info["id"]
        harvest = self.state.harvests.get(harvest_id)
        if harvest is None:
            return _json({"status": "Not Found"}, 404)
        if not self.state.may_trigger(user, harvest):
            return await self.denied(_NOT_MEMBER)
        if self.state.take_trigger_error():
            # Meteor's answer when the harvester service call throws.
            return web.Response(status=500, text="Server error.", content_type="text/html")
        self.state.queue_harvest(harvest_id)
        return _json({"status": "harvesting"})

    async def harvests(self, request: web.Request) -> web.Response:
        return _json({"status": "success", "data": self.state.harvest_documents()})

    async def harvest(self, request: web.Request) -> web.Response:
        doc = self.state.harvest_document(request.match_info["id"])
        if doc is None:
            return _json({"status": "fail", "message": "Item not found"}, 404)
        return _json({"status": "success", "data": doc})

    async def invalidate_tokens(self, request: web.Request) -> web.Response:
        return _json({"invalidated": self.state.invalidate_tokens()})

    async def fail_next(self, request: web.Request) -> web.Response:
        harvest_id = (await _optional_json(request)).get("harvest_id")
        if harvest_id is not None and harvest_id not in self.state.harvests:
            return _json({"error": f"unknown harvest {harvest_id}"}, 404)
        self.state.fail_next_harvest(harvest_id)
        return _json({"fail_next": harvest_id})

    async def trigger_errors(self, request: web.Request) -> web.Response:
        count = (await _optional_json(request)).get("count", 1)
        if not isinstance(count, int) or count < 0:
            return _json({"error": "count must be a non-negative integer"}, 400)
        self.state.fail_next_triggers(count)
        return _json({"trigger_errors": count})

    async def triggers(self, request: web.Request) -> web.Response:
        # A bare list: the same shape the Oceans API app serves at this path.
        return _json(self.state.trigger_history())


def _dispatch(methods: Mapping[str, Handler]) -> Handler:
    """One handler per path that answers Restivus's 405 (with `Allow`) for other methods."""
    allow = ", ".join(methods)

    async def handle(request: web.Request) -> web.StreamResponse:
        handler = methods.get(request.method)
        if handler is None:
            return _json(_NO_ENDPOINT, 405, {"Allow": allow})
        return await handler(request)

    return handle


def build_registry_app(
    state: RegistryState,
    *,
    auth_delay: tuple[float, float] = (0.5, 1.0),
    middlewares: Sequence[Middleware] = (),
) -> web.Application:
    """The registry web app over `state`; `auth_delay` is the (min, max) seconds before 401/403."""
    routes = _RegistryRoutes(state, auth_delay)
    app = web.Application(middlewares=list(middlewares))
    table: dict[str, dict[str, Handler]] = {
        "/api/v2/login": {"POST": routes.login},
        "/api/v1/login": {"POST": routes.login},
        # Restivus 0.8 still serves the deprecated GET logout next to POST.
        "/api/v2/logout": {"GET": routes.logout, "POST": routes.logout},
        "/api/v1/logout": {"GET": routes.logout, "POST": routes.logout},
        "/api/v2/harvests/{id}/harvest": {"GET": routes.trigger},
        "/api/v1/Harvests": {"GET": routes.harvests},
        "/api/v1/Harvests/{id}": {"GET": routes.harvest},
        "/_emulator/registry/invalidate-tokens": {"POST": routes.invalidate_tokens},
        "/_emulator/registry/fail-next": {"POST": routes.fail_next},
        "/_emulator/registry/trigger-errors": {"POST": routes.trigger_errors},
        "/_emulator/registry/triggers": {"GET": routes.triggers},
    }
    for path, methods in table.items():
        app.router.add_route("*", path, _dispatch(methods))
    return app

"""Scripted faults: named profiles and a YAML/JSON file format, deterministic under a seed.

A fault plan is a list of rules. Each rule matches endpoint names (fnmatch patterns such as
`scalardata.*`, `archivefile.download`, `registry:*`) and fires at a `rate`, optionally only for
the first `times` matching requests ("N failures then success"), counted per rule or per
distinct query. Kinds:

- `latency`: sleep `seconds` plus uniform `jitter` before answering;
- `status`: answer `status` (or one of `statuses`), with `Retry-After` when `retry_after` is set
  (429, 500, 502, 503, 504);
- `maintenance`: 503 with Retry-After during a window, either `start_after`/`duration` seconds
  after the plan is installed, or `start`/`end` instants of the emulator clock;
- `gone`: 410 (expired product download);
- `product-error`: 202 with `{"status": "error", "message": ...}` on a product download, the
  failure ONC's dataProductDelivery wiki page documents for that answer;
- `reset` / `truncate`: cut the body after `after_bytes` (or `fraction` of it) with a TCP reset
  or a clean close short of Content-Length; streamed downloads included;
- `drip`: send the body `chunk_bytes` at a time every `interval_s` seconds;
- `malformed`: answer 200 with a complete body that is not what the API promises: `body` is
  `html` (an error page), `empty`, `truncated-json` (cut JSON with a matching Content-Length),
  `wrong-types` (`sensorData` and `data` as strings) or `missing-keys` (`{}`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import Any

import structlog
import yaml
from aiohttp import web

from pipeline.emulator.clock import EmulatorClock
from pipeline.emulator.responses import BODY_FAULT_KEY, BodyFault, send_bytes
from pipeline.exceptions import ConfigError

log = structlog.get_logger(__name__)

ENDPOINT_KEY = web.RequestKey("emulator_endpoint", str)
QUERY_KEY = web.RequestKey("emulator_query_key", str)
KINDS = (
    "latency",
    "status",
    "maintenance",
    "gone",
    "product-error",
    "reset",
    "truncate",
    "drip",
    "malformed",
)
MALFORMED_BODIES: dict[str, tuple[str, bytes]] = {
    "html": (
        "text/html",
        b"<html><head><title>Oceans 3.0</title></head><body>Something went wrong</body></html>",
    ),
    "empty": ("application/json", b""),
    "truncated-json": ("application/json", b'{"sensorData": [{"sensorCode": "cond", "data": {'),
    "wrong-types": (
        "application/json",
        b'{"sensorData": "unavailable", "data": "unavailable", "files": 7, "next": null}',
    ),
    "missing-keys": ("application/json", b"{}"),
}
_BODY_KINDS = ("reset", "truncate", "drip")


@dataclass(slots=True)
class FaultRule:
    """One scripted fault; see the module docstring for the fields of each kind."""

    kind: str
    endpoint: str = "*"
    rate: float = 1.0
    times: int | None = None
    per_query: bool = False
    status: int = 503
    statuses: list[int] = field(default_factory=list)
    retry_after: float | None = None
    seconds: float = 0.0
    jitter: float = 0.0
    after_bytes: int = 0
    fraction: float | None = None
    chunk_bytes: int = 1024
    interval_s: float = 0.05
    start_after: float = 0.0
    duration: float = 0.0
    start: datetime | None = None
    end: datetime | None = None
    body: str = "html"

    def matches(self, endpoint: str) -> bool:
        """True when this rule applies to `endpoint`."""
        return fnmatch.fnmatchcase(endpoint, self.endpoint)


@dataclass(slots=True)
class FaultPlan:
    """A named list of rules with an optional seed of its own."""

    rules: list[FaultRule] = field(default_factory=list)
    seed: int | None = None
    name: str = "custom"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, name: str = "custom") -> FaultPlan:
        """Build a plan from the file format: `{seed?, profile?, rules: [...]}`."""
        problems: list[tuple[str, str]] = []
        rules: list[FaultRule] = []
        base = PROFILES[str(data["profile"])].rules if data.get("profile") else []
        rules.extend(FaultRule(**_rule_kwargs(r)) for r in (_dump(x) for x in base))
        known = {f.name for f in fields(FaultRule)}
        for i, raw in enumerate(data.get("rules") or []):
            where = f"rules[{i}]"
            if not isinstance(raw, Mapping):
                problems.append((where, "must be a mapping"))
                continue
            extra = sorted(set(raw) - known)
            if extra:
                problems.append((where, f"unknown keys: {', '.join(extra)}"))
            if raw.get("kind") not in KINDS:
                problems.append((f"{where}.kind", f"must be one of {', '.join(KINDS)}"))
            if raw.get("kind") == "malformed" and raw.get("body", "html") not in MALFORMED_BODIES:
                problems.append((f"{where}.body", f"must be one of {', '.join(MALFORMED_BODIES)}"))
            if problems:
                continue
            rules.append(FaultRule(**_rule_kwargs(raw)))
        unknown_top = sorted(set(data) - {"seed", "rules", "profile", "name"})
        if unknown_top:
            problems.append(("", f"unknown keys: {', '.join(unknown_top)}"))
        if problems:
            raise ConfigError(problems)
        seed = data.get("seed")
        return cls(rules, int(seed) if seed is not None else None, str(data.get("name", name)))

    @classmethod
    def load(cls, spec: str | Mapping[str, Any] | FaultPlan | None) -> FaultPlan:
        """A profile name, a path to a YAML/JSON file, a mapping, a plan, or None (no faults)."""
        if spec is None:
            return cls(name="none")
        if isinstance(spec, FaultPlan):
            return spec
        if isinstance(spec, Mapping):
            return cls.from_mapping(spec)
        if spec in PROFILES:
            plan = PROFILES[spec]
            return cls(
                [FaultRule(**_rule_kwargs(_dump(r))) for r in plan.rules], plan.seed, plan.name
            )
        path = Path(spec)
        if not path.is_file():
            raise ConfigError(
                [("faults", f"not a profile ({', '.join(PROFILES)}) nor a file: {spec}")]
            )
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
        if not isinstance(data, Mapping):
            raise ConfigError([("faults", f"{spec}: top level must be a mapping")])
        return cls.from_mapping(data, name=path.stem)


def _dump(rule: FaultRule) -> dict[str, Any]:
    return {f.name: getattr(rule, f.name) for f in fields(FaultRule)}


def _rule_kwargs(raw: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(raw)
    for key in ("start", "end"):
        if isinstance(out.get(key), str):
            out[key] = datetime.fromisoformat(out[key].replace("Z", "+00:00"))
    return out


_FIVE_XX = [500, 502, 503, 504]

PROFILES: dict[str, FaultPlan] = {
    "none": FaultPlan(name="none"),
    "flaky": FaultPlan(
        name="flaky",
        rules=[
            FaultRule("latency", "*", seconds=0.01, jitter=0.02),
            FaultRule("status", "*", rate=0.05, statuses=_FIVE_XX),
        ],
    ),
    "slow": FaultPlan(
        name="slow",
        rules=[
            FaultRule("latency", "*", seconds=0.2, jitter=0.2),
            FaultRule("drip", "*download*", chunk_bytes=64 * 1024, interval_s=0.01),
        ],
    ),
    "throttled": FaultPlan(
        name="throttled",
        rules=[
            FaultRule("status", "*", rate=0.2, status=429, retry_after=1),
        ],
    ),
    "maintenance": FaultPlan(
        name="maintenance",
        rules=[
            FaultRule("maintenance", "*", start_after=5, duration=30, retry_after=10),
        ],
    ),
    "expired-downloads": FaultPlan(
        name="expired-downloads",
        rules=[
            FaultRule("gone", "dataProductDelivery.download"),
        ],
    ),
    "hostile": FaultPlan(
        name="hostile",
        rules=[
            FaultRule("latency", "*", seconds=0.02, jitter=0.05),
            FaultRule("status", "*", rate=0.05, statuses=_FIVE_XX),
            FaultRule("status", "*", rate=0.03, status=429, retry_after=1),
            FaultRule("status", "*", rate=0.02, status=503, retry_after=2),
            FaultRule("reset", "*", rate=0.03, fraction=0.5),
            FaultRule("truncate", "*", rate=0.03, fraction=0.7),
        ],
    ),
}


@dataclass(slots=True)
class Decision:
    """What the injector decided for one request."""

    delay: float = 0.0
    response: web.Response | None = None
    body_fault: BodyFault | None = None
    fired: list[str] = field(default_factory=list)


class FaultInjector:
    """Applies a plan to requests; replace the plan at any time with `set()`."""

    def __init__(self, seed: int, clock: EmulatorClock, spec: Any = None) -> None:
        self._seed = seed
        self._clock = clock
        self.set(spec)

    @property
    def plan(self) -> FaultPlan:
        """The plan in force."""
        return self._plan

    def set(self, spec: str | Mapping[str, Any] | FaultPlan | None) -> None:
        """Install a new plan; counters and random streams start afresh (deterministic)."""
        self._plan = FaultPlan.load(spec)
        seed = self._plan.seed if self._plan.seed is not None else self._seed
        self._rngs = [random.Random(seed * 1_000_003 + i) for i in range(len(self._plan.rules))]
        self._counts: dict[tuple[int, str], int] = {}
        self._installed = time.monotonic()
        # No faults is the usual case, and emulator_started says faults=none already.
        (log.info if self._plan.rules else log.debug)(
            "emulator_faults_set", plan=self._plan.name, rules=len(self._plan.rules)
        )

    def decide(self, endpoint: str, query_key: str) -> Decision:
        """Roll every matching rule once, in order, for one request."""
        decision = Decision()
        for i, rule in enumerate(self._plan.rules):
            if not rule.matches(endpoint):
                continue
            if rule.kind != "latency" and decision.response is not None:
                # Already answered by an earlier rule: this one must not use up its `times`
                # ("410 once" would otherwise be spent on a request that got a 503).
                continue
            if not self._fires(i, rule, query_key):
                continue
            if rule.kind == "latency":
                jitter = self._rngs[i].random() * rule.jitter if rule.jitter else 0.0
                decision.delay += rule.seconds + jitter
            elif rule.kind == "maintenance":
                decision.response = _error_response(503, rule.retry_after, "maintenance")
            elif rule.kind == "status":
                status = (
                    rule.statuses[self._rngs[i].randrange(len(rule.statuses))]
                    if rule.statuses
                    else rule.status
                )
                decision.response = _error_response(status, rule.retry_after, "status")
            elif rule.kind == "gone":
                decision.response = _error_response(410, None, "gone")
            elif rule.kind == "product-error":
                decision.response = web.Response(
                    status=202,
                    body=_PRODUCT_ERROR_BODY,
                    content_type="application/json",
                    headers={"X-Emulator-Fault": "product-error"},
                )
            elif rule.kind == "malformed":
                content_type, body = MALFORMED_BODIES[rule.body]
                decision.response = web.Response(
                    status=200,
                    body=body,
                    content_type=content_type,
                    headers={"X-Emulator-Fault": f"malformed:{rule.body}"},
                )
            elif rule.kind in _BODY_KINDS and decision.body_fault is None:
                decision.body_fault = BodyFault(
                    rule.kind, rule.after_bytes, rule.fraction, rule.chunk_bytes, rule.interval_s
                )
            decision.fired.append(rule.kind)
        return decision

    def _fires(self, index: int, rule: FaultRule, query_key: str) -> bool:
        if rule.kind == "maintenance" and not self._in_window(rule):
            return False
        if rule.times is not None:
            key = (index, query_key if rule.per_query else "")
            seen = self._counts.get(key, 0)
            self._counts[key] = seen + 1
            if seen >= rule.times:
                return False
        # Always draw, so one rule's outcome never shifts another rule's random stream.
        draw = self._rngs[index].random()
        return rule.rate >= 1.0 or draw < rule.rate

    def _in_window(self, rule: FaultRule) -> bool:
        if rule.start is not None or rule.end is not None:
            now = self._clock.now()
            return (rule.start is None or now >= rule.start) and (
                rule.end is None or now < rule.end
            )
        elapsed = time.monotonic() - self._installed
        return rule.start_after <= elapsed < rule.start_after + rule.duration


# ONC's dataProductDelivery wiki page: the 202 download body's `status` is one of "queued",
# "error" and "running"; the message wording of a failed run is not published (a guess).
_PRODUCT_ERROR_BODY = (
    b'{"message":"Data product generation failed. Please contact ONC support.","status":"error"}'
)

_BODIES = {
    410: b'{"message":"The file is no longer available on the FTP server. '
    b'Run the data product request again."}',
    429: b'{"message":"Too Many Requests"}',
}


def _error_response(status: int, retry_after: float | None, why: str) -> web.Response:
    headers = {"X-Emulator-Fault": why}
    if retry_after is not None:
        headers["Retry-After"] = str(
            int(retry_after) if retry_after == int(retry_after) else retry_after
        )
    if status in _BODIES:
        return web.Response(
            status=status, body=_BODIES[status], headers=headers, content_type="application/json"
        )
    # Gateways and the maintenance page answer HTML, not the API's JSON.
    text = f"<html><body><h1>{status}</h1><p>Service temporarily unavailable</p></body></html>"
    return web.Response(status=status, text=text, headers=headers, content_type="text/html")


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def fault_middleware(injector: FaultInjector) -> Any:
    """aiohttp middleware applying `injector` to requests whose endpoint name is known."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        endpoint = request.get(ENDPOINT_KEY)
        if endpoint is None:
            return await handler(request)
        decision = injector.decide(endpoint, request.get(QUERY_KEY, ""))
        if decision.fired:
            log.debug("emulator_fault", endpoint=endpoint, kinds=decision.fired)
        if decision.delay:
            await asyncio.sleep(decision.delay)
        if decision.response is not None:
            return decision.response
        if decision.body_fault is None:
            return await handler(request)
        request[BODY_FAULT_KEY] = decision.body_fault
        response = await handler(request)
        if isinstance(response, web.Response) and not response.prepared:
            # Handlers that build a plain Response (the registry's) bypass send_stream:
            # re-send their body through it so body faults reach them too.
            body = response.body if isinstance(response.body, bytes) else b""
            headers = {
                k: v
                for k, v in response.headers.items()
                if k.lower() not in ("content-length", "content-type")
            }
            return await send_bytes(
                request,
                body,
                status=response.status,
                headers=headers,
                content_type=response.content_type,
            )
        return response

    return middleware

"""Server-given file names that try to escape the output root: nothing is written outside it,
the item is quarantined with its reason, and every safe file still lands intact.

The emulator only serves well-behaved names, so a small rewriting proxy on 127.0.0.1 stands in
front of it: it renames files in archive listings (and maps the odd-but-safe names back when
they are downloaded) and replaces product downloads' `Content-Disposition`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from pipeline.daemon import run_once
from pipeline.emulator import Emulator
from pipeline.engine.ledger import POISON_ATTEMPTS
from pipeline.engine.streams.base import PassOutcome
from pipeline.settings import load_settings
from pipeline.state.sqlite import SqliteStateStore
from tests.reliability.conftest import measure, small_workload

# Names a hostile or broken server could list, each of which must never touch the disk.
UNSAFE = [
    "../escape-{n}.wav",
    "../../../../tmp/onc-escape-{n}.wav",
    "/tmp/onc-absolute-{n}.wav",
    "sub/dir-{n}.wav",
    "..\\windows-{n}.wav",
    ".hidden-{n}.wav",
    "nul\x00byte-{n}.wav",
    "C:evil-{n}.wav",
    "..",
]
# Odd but safe: kept byte for byte as the file's name.
ODD = "ICLISTEN 5 min (copy) é #{n}.wav"
DISPOSITIONS = [
    'attachment; filename="../../escape.csv"',
    "attachment; filename=/etc/onc-escape.csv",
    "attachment; filename*=UTF-8''..%2F..%2Fencoded-escape.csv",
]


class RewritingProxy:
    """Forwards everything to the emulator; rewrites names on the way back."""

    def __init__(self, upstream: str, disposition: str) -> None:
        self.upstream = upstream
        self.disposition = disposition
        self.renamed: dict[str, str] = {}  # name served -> real name
        self.unsafe_served: list[str] = []
        self.session: aiohttp.ClientSession | None = None

    def rename(self, files: list[Any]) -> list[Any]:
        out = []
        for i, item in enumerate(files):
            real = item["filename"] if isinstance(item, dict) else item
            if i == 0:
                name = ODD.format(n=len(self.renamed))
            elif i <= len(UNSAFE):
                name = UNSAFE[i - 1].format(n=len(self.renamed))
                self.unsafe_served.append(name)
            else:
                name = real
            self.renamed[name] = real
            out.append({**item, "filename": name} if isinstance(item, dict) else name)
        return out

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        query = list(request.query.items())
        if request.path.startswith("/api/archivefile/download"):
            query = [(k, self.renamed.get(v, v) if k == "filename" else v) for k, v in query]
        async with self.session.request(
            request.method,
            self.upstream + request.path,
            params=query,
            headers={k: v for k, v in request.headers.items() if k.lower() in ("range",)},
            data=await request.read() or None,
        ) as upstream:
            body = await upstream.read()
            headers = {
                k: v
                for k, v in upstream.headers.items()
                if k.lower()
                in ("content-type", "content-disposition", "content-range", "retry-after")
            }
        if request.path.startswith("/api/archivefile/") and "download" not in request.path:
            data = json.loads(body)
            if isinstance(data, dict) and isinstance(data.get("files"), list):
                data["files"] = self.rename(data["files"])
                body = json.dumps(data).encode()
        if "Content-Disposition" in headers and request.path.startswith(
            "/api/dataProductDelivery/download"
        ):
            headers["Content-Disposition"] = self.disposition
        return web.Response(status=upstream.status, body=body, headers=headers)


@asynccontextmanager
async def proxy_for(emu: Emulator, disposition: str) -> AsyncIterator[tuple[str, RewritingProxy]]:
    """A running proxy on a free loopback port."""
    proxy = RewritingProxy(emu.onc_url, disposition)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with aiohttp.ClientSession(auto_decompress=False) as session:
        proxy.session = session
        try:
            yield f"http://127.0.0.1:{port}", proxy
        finally:
            await runner.cleanup()


def files_outside(tmp_path: Path, out: Path) -> list[Path]:
    """Files under tmp_path but outside the output root, other than the test's own."""
    own = {"config.yaml", "state.db", "state.db-wal", "state.db-shm", "state.db.lock"}
    return [
        p for p in tmp_path.rglob("*") if p.is_file() and out not in p.parents and p.name not in own
    ]


@pytest.mark.parametrize("disposition", DISPOSITIONS)
async def test_unsafe_names_are_quarantined_and_nothing_escapes(
    live_emulator: Emulator, tmp_path: Path, disposition: str
) -> None:
    emu = live_emulator
    root = tmp_path / "run"
    root.mkdir()
    harness = small_workload(root, emu)
    config = yaml.safe_load(harness.config.read_text())
    config["streams"] = [s for s in config["streams"] if s["name"] in ("wav", "tssd")]
    # 80 - 10 (safety lag) minutes of 5-minute files: one of each unsafe name and safe ones.
    harness.starts["wav"] = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=80)
    config["streams"][0]["start"] = harness.starts["wav"].strftime("%Y-%m-%dT%H:%M:%SZ")
    async with proxy_for(emu, disposition) as (url, proxy):
        config["onc"]["base_url"] = url
        harness.config.write_text(yaml.safe_dump(config))
        settings = load_settings(harness.config, environ={}, secrets_dirs=[])
        outcomes: list[dict[str, Any]] = []
        for _ in range(POISON_ATTEMPTS + 1):
            outcomes.append(await run_once(settings, asyncio.Event()))

    out = harness.out
    assert files_outside(tmp_path, out) == []
    escapes = await asyncio.to_thread(
        lambda: [*Path("/tmp").glob("onc-escape-*"), *Path("/tmp").glob("onc-absolute-*")]
    )
    assert escapes == [], "an absolute or parent path was followed"
    assert not await asyncio.to_thread(Path("/etc/onc-escape.csv").exists)

    # Archive: every unsafe name quarantined at once with its reason; the rest intact.
    last = outcomes[-1]
    wav = last["wav"]
    assert isinstance(wav, PassOutcome), wav
    assert wav.ok, wav.errors
    async with SqliteStateStore(root / "state.db", read_only=True) as store:
        wav_q = await store.list_quarantine("wav")
        tssd_q = await store.list_quarantine("tssd")
        manifest = await store.list_manifest()
    served = set(proxy.unsafe_served)
    assert len(served) >= len(UNSAFE)
    assert len(wav_q) == len(served)
    assert {q.reason for q in wav_q} == {"unsafe_filename"}
    assert all(q.detail and "unsafe file name" in q.detail for q in wav_q)
    wavs = {p.name: p for p in (out / "onc_sevip_hydrophone").rglob("*.wav")}
    odd = [n for n in proxy.renamed if n.startswith("ICLISTEN 5 min")]
    assert odd
    assert odd[0] in wavs, "an odd but safe name is kept as it is"
    truth = {
        t.filename: t.sha256
        for t in emu.truth.archive_files(
            location_code="SEVIP",
            device_category_code="HYDROPHONE",
            date_from=harness.starts["wav"],
            date_to=datetime.now(UTC),
            extension="wav",
        )
    }
    for name, path in wavs.items():
        assert hashlib.sha256(path.read_bytes()).hexdigest() == truth[proxy.renamed[name]]
    assert all(not e.path.startswith("..") and "/../" not in e.path for e in manifest)

    # Products: the period whose download names an escape is quarantined with the reason.
    tssd = last["tssd"]
    assert isinstance(tssd, PassOutcome), tssd
    assert tssd.ok, tssd.errors
    assert tssd_q, "the product period with an unsafe file name is quarantined"
    assert {q.reason for q in tssd_q} == {"unsafe_filename"}
    assert all(q.detail and "unsafe file name" in q.detail for q in tssd_q)
    products = out / "onc_bacax_ctd_tssd" / "products"
    assert not [p for p in products.rglob("*") if p.is_file()] if products.exists() else True
    measure("unsafe_names.archive_names_quarantined", len(wav_q))
    measure("unsafe_names.product_periods_quarantined", len(tssd_q))

"""archivefile: file lists with paging, and downloads of deterministic bytes streamed in chunks.

A file's bytes are built from 1 MiB blocks: one pseudo-random block per file (seeded by the
file name) stamped with the block index, so content is deterministic, different at every
offset, and any byte range can be produced without ever holding the file in memory.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import re
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from aiohttp import web

from pipeline.emulator.catalogue import ArchiveSpec, Deployment, Device, iso_ms
from pipeline.emulator.params import (
    ApiError,
    Query,
    next_object,
    parse_instant,
    resolve_window,
    row_limit,
)
from pipeline.emulator.responses import send_json, send_stream
from pipeline.emulator.synthetic import stream_key
from pipeline.emulator.timeseries import no_deployment_error

if TYPE_CHECKING:
    from pipeline.emulator.app import Call, OncContext

BLOCK = 1 << 20
#: ONC's own tests list archive files with rowLimit=80000 (api-python-client
#: tests/archive_file/conftest.py); no source gives the service's maximum. The emulator refuses more
#: (error 127), the harmful guess: a client asking for more than ONC ever shows fails loudly.
LIST_ROW_LIMIT_MAX = 80_000
LIST_PARAMS = (
    "dateFrom",
    "dateTo",
    "dateArchivedFrom",
    "dateArchivedTo",
    "fileExtension",
    "dataProductCode",
    "returnOptions",
    "rowLimit",
    "page",
    "getLatest",
)
_NAME = re.compile(
    r"^(?P<device>.+)_(?P<stamp>\d{8}T\d{6}\.\d{3})Z(?P<suffix>-[A-Za-z0-9]+)?\.(?P<ext>\w+)$"
)
_MAGIC = {
    "wav": b"RIFF",
    "mp4": b"\x00\x00\x00\x18ftypmp42",
    "jpg": b"\xff\xd8\xff\xe0",
    "mat": b"MATLAB 5.0 MAT-file",
    "png": b"\x89PNG\r\n\x1a\n",
    "nc": b"CDF\x01",
}
_TEXT = np.frombuffer(b"0123456789abcdefghijklmnopqrstuvwxyz ,.:-\n", dtype=np.uint8)
_CONTENT_TYPES = {
    "mp4": "video/mp4",
    "jpg": "image/jpeg",
    "wav": "audio/wav",
    "png": "image/png",
    "txt": "text/plain",
    "csv": "text/csv",
}


@dataclass(frozen=True, slots=True)
class ArchiveFile:
    """One archived file: its name, time span [begin, end), sizes and archive date (epoch ms).

    `size` is what a download delivers (always uncompressed); `stored_size` what the archive
    keeps, smaller when the file is stored compressed.
    """

    filename: str
    device: str
    spec: ArchiveSpec
    begin: int
    end: int
    size: int
    archived: int
    stored_size: int

    @property
    def compressed(self) -> bool:
        """True when the archive stores this file compressed."""
        return self.stored_size != self.size

    def as_object(self) -> dict[str, Any]:
        """The row of a `returnOptions=all` listing.

        `uncompressedFileSize` is the size ONC's tools show and the size a download has
        (ONC's dataAvailability answer carries `totalFileSize` 8,707,618 against
        `totalUncompressedFileSize` 33,868,912 for LF txt files). `fileSize` and
        `compressedFileSize` give the stored size: which of them the real listing carries,
        and with which meaning, no public source settles, so both show the harmful value.
        """
        row: dict[str, Any] = {
            "archivedDate": iso_ms(self.archived),
            "compression": "gz" if self.compressed else None,
            "dataProductCode": self.spec.data_product_code,
            "dateFrom": iso_ms(self.begin),
            "dateTo": iso_ms(self.end),
            "deviceCode": self.device,
            "fileSize": self.stored_size,
            "filename": self.filename,
            "modifyDate": iso_ms(self.archived),
            "uncompressedFileSize": self.size,
        }
        if self.compressed:
            row["compressedFileSize"] = self.stored_size
        return row


class ArchiveStore:
    """Names, sizes and bytes of every archived file; pure functions of the seed and config."""

    def __init__(self, ctx: OncContext) -> None:
        self._ctx = ctx
        self._seed = ctx.config.seed
        self._sizes = ctx.config.archive_file_sizes
        self._compressed = frozenset(ctx.config.archive_compressed)
        self._delay_ms = int(ctx.config.archive_delay_s * 1000)
        self._blocks: OrderedDict[str, bytes] = OrderedDict()
        self._digests: dict[tuple[str, int], str] = {}

    def make(self, device: Device, spec: ArchiveSpec, begin: int) -> ArchiveFile:
        """The file of `spec` starting at `begin`."""
        stamp = iso_ms(begin).replace("-", "").replace(":", "")
        name = f"{device.code}_{stamp}{spec.suffix}.{spec.extension}"
        key = stream_key(self._seed, name)
        override = self._sizes.get(f"{device.code}.{spec.extension}", self._sizes.get(device.code))
        if override is not None:
            size = override
        else:
            # +-10 % around the catalogue size, so sizes differ like real files do.
            size = int(spec.base_size * (0.9 + 0.2 * ((key >> 11) / (1 << 53))))
        end = begin + spec.period_s * 1000
        # Seeded draws from bits the size does not use: delay in [0, max], ratio in [0.2, 0.6]
        # (ONC's LF sample stores 26 % of the uncompressed bytes).
        archived = end + (key & 0xFFFFF) * self._delay_ms // 0xFFFFF
        late = self._ctx.gaps.late_delay_ms(device.code, spec.extension, begin, end)
        if late is not None:
            archived = end + late
        stored = size
        if spec.extension in self._compressed:
            stored = max(1, int(size * (0.2 + 0.4 * (((key >> 20) & 0x3FF) / 0x3FF))))
        return ArchiveFile(name, device.code, spec, begin, end, size, archived, stored)

    def files_of(
        self, dep: Deployment, spec: ArchiveSpec, start: int, end: int, limit: int | None = None
    ) -> Iterator[ArchiveFile]:
        """Files of one deployment and spec beginning in [start, end), closed by the horizon."""
        device = self._ctx.catalogue.devices[dep.device]
        period, offset = spec.period_s * 1000, spec.offset_s * 1000
        lo = max(start, dep.begin_ms)
        hi = min(end, dep.end_ms if dep.end_ms is not None else end)
        horizon = self._ctx.horizon_ms()
        begin = -(-(lo - offset) // period) * period + offset
        count = 0
        gaps = self._ctx.gaps
        while begin < hi and begin + period <= horizon and (limit is None or count < limit):
            # A file wholly inside an injected outage was never written (no data, no file).
            if gaps.outage_ms(device.code, begin, begin + period) < period:
                yield self.make(device, spec, begin)
                count += 1
            begin += period

    def listing(
        self, deps: list[Deployment], start: int, end: int, query: Query
    ) -> Iterator[ArchiveFile]:
        """All matching files archived by now, in time order, lazily (lists can be long)."""
        ext, product = query.get("fileExtension"), query.get("dataProductCode")
        arch_from = query.get("dateArchivedFrom")
        arch_to = query.get("dateArchivedTo")
        a_lo = parse_instant(arch_from, "dateArchivedFrom") if arch_from else None
        a_hi = parse_instant(arch_to, "dateArchivedTo") if arch_to else None
        now = self._ctx.clock.now_ms()
        streams = [
            # A file archived at or after a_lo began at most one period plus the longest
            # delay earlier: an old dateFrom with a recent dateArchivedFrom stays cheap.
            self.files_of(dep, spec, self._earliest(spec, start, a_lo), end)
            for dep in deps
            for spec in self._ctx.catalogue.devices[dep.device].archive
            if (not ext or spec.extension == ext)
            and (not product or spec.data_product_code == product)
        ]
        for f in heapq.merge(*streams, key=lambda f: (f.begin, f.filename)):
            if f.archived > now:
                continue  # still on its way into the archive: neither listed nor served
            if (a_lo is None or f.archived >= a_lo) and (a_hi is None or f.archived < a_hi):
                yield f

    def _earliest(self, spec: ArchiveSpec, start: int, archived_from: int | None) -> int:
        if archived_from is None:
            return start
        longest = max([self._delay_ms, *(int(f.delay_s * 1000) for f in self._ctx.gaps.late_files)])
        return max(start, archived_from - spec.period_s * 1000 - longest)

    def latest(
        self, deps: list[Deployment], start: int, end: int, query: Query
    ) -> ArchiveFile | None:
        """The newest matching file, found by arithmetic instead of walking the whole list."""
        newest: ArchiveFile | None = None
        horizon = self._ctx.horizon_ms()
        for dep in deps:
            for spec in self._ctx.catalogue.devices[dep.device].archive:
                period, offset = spec.period_s * 1000, spec.offset_s * 1000
                hi = min(end, dep.end_ms if dep.end_ms is not None else end, horizon - period + 1)
                # Walk back a few periods at most: filters may reject the very last file.
                last = (hi - 1 - offset) // period * period + offset
                lo = max(start, dep.begin_ms, last - 50 * period)
                found = list(self.listing([dep], lo, last + 1, query))
                if found and (newest is None or found[-1].begin > newest.begin):
                    newest = found[-1]
        return newest

    def lookup(self, filename: str) -> ArchiveFile | None:
        """The file called `filename`, if the archive has it (right device, grid and time)."""
        match = _NAME.match(filename)
        if not match:
            return None
        device = self._ctx.catalogue.devices.get(match["device"])
        if device is None:
            return None
        try:
            begin = parse_instant(_stamp_iso(match["stamp"]), "filename")
        except ApiError:
            return None
        for spec in device.archive:
            if spec.extension != match["ext"] or spec.suffix != (match["suffix"] or ""):
                continue
            if (begin - spec.offset_s * 1000) % (spec.period_s * 1000):
                continue
            for dep in self._ctx.catalogue.deployments_of(device=device.code):
                found = next(self.files_of(dep, spec, begin, begin + 1), None)
                if found is not None and found.filename == filename:
                    # Not archived yet: unknown to the download service too.
                    return found if found.archived <= self._ctx.clock.now_ms() else None
        return None

    def block(self, f: ArchiveFile, index: int) -> bytes:
        """Block `index` (1 MiB, the last one shorter) of file `f`."""
        base = self._blocks.get(f.filename)
        if base is None:
            raw = np.random.default_rng(stream_key(self._seed, f.filename)).bytes(BLOCK)
            if f.spec.extension in ("txt", "csv"):
                raw = _TEXT[np.frombuffer(raw, dtype=np.uint8) % len(_TEXT)].tobytes()
            base = raw
            self._blocks[f.filename] = base
            while len(self._blocks) > 8:
                self._blocks.popitem(last=False)
        head = (_MAGIC.get(f.spec.extension, b"") if index == 0 else b"") + b"%08x" % index
        length = min(BLOCK, f.size - index * BLOCK)
        return (head + base[len(head) :])[:length]

    def chunks(self, f: ArchiveFile, start: int, end: int, chunk: int) -> Iterator[bytes]:
        """Bytes [start, end) of `f`, `chunk` bytes at a time."""
        pos = start
        while pos < end:
            index = pos // BLOCK
            data = memoryview(self.block(f, index))
            off = pos - index * BLOCK
            stop = min(len(data), end - index * BLOCK)
            while off < stop:
                piece = data[off : min(stop, off + chunk)]
                yield bytes(piece)
                off += len(piece)
            pos = index * BLOCK + stop

    def sha256(self, f: ArchiveFile) -> str:
        """Hex SHA-256 of the whole file (computed once, by streaming)."""
        key = (f.filename, f.size)
        if key not in self._digests:
            digest = hashlib.sha256()
            for piece in self.chunks(f, 0, f.size, BLOCK):
                digest.update(piece)
            self._digests[key] = digest.hexdigest()
        return self._digests[key]


def _stamp_iso(stamp: str) -> str:
    # 20181005T000403.000 -> 2018-10-05T00:04:03.000Z
    return f"{stamp[0:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:]}Z"


async def listing(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    """GET archivefile by location or device: names, or objects with returnOptions=all."""
    by_location = call.name.endswith(".location")
    if by_location:
        query.check_known((*LIST_PARAMS, "locationCode", "deviceCategoryCode"))
        location, category = query.require("locationCode"), query.require("deviceCategoryCode")
        if location not in ctx.catalogue.locations:
            raise ApiError.code(127, "locationCode")
        deps = ctx.catalogue.deployments_of(location=location, category=category)
    else:
        query.check_known((*LIST_PARAMS, "deviceCode"))
        device = query.require("deviceCode")
        if device not in ctx.catalogue.devices:
            raise ApiError.code(127, "deviceCode")
        deps = ctx.catalogue.deployments_of(device=device)
    start, end = resolve_window(query, ctx.clock.now_ms(), default_span_ms=end_of_time())
    if by_location and not ctx.catalogue.segments(deps, start, end):
        raise no_deployment_error(call, query, start, end)
    limit = row_limit(query, clamp_bad=True) if query.get("rowLimit") else LIST_ROW_LIMIT_MAX
    if limit > LIST_ROW_LIMIT_MAX:
        raise ApiError.code(127, "rowLimit", f"rowLimit must not exceed {LIST_ROW_LIMIT_MAX}")
    raw_page = query.get("page")
    try:
        page = int(raw_page) if raw_page else 1
    except ValueError:
        raise ApiError.code(127, "page") from None
    if page < 1:
        raise ApiError.code(127, "page")
    files_iter = ctx.archive.listing(deps, start, end, query)
    if query.flag("getLatest"):
        last = ctx.archive.latest(deps, start, end, query)
        files, more = ([last] if last is not None else []), None
    else:
        window = list(itertools.islice(files_iter, (page - 1) * limit, page * limit + 1))
        files, more = window[:limit], (window[limit] if len(window) > limit else None)
    options = query.get("returnOptions") or ""
    if options == "all":
        rows: list[Any] = [f.as_object() for f in files]
    elif options == "archiveLocation":
        rows = [
            {
                "archiveLocation": f"/archive/{f.device}/{iso_ms(f.begin)[:7]}",
                "filename": f.filename,
            }
            for f in files
        ]
    else:
        rows = [f.filename for f in files]
    next_obj = None
    if more is not None:
        replace = {"page": str(page + 1)} if raw_page else {"dateFrom": iso_ms(more.begin)}
        next_obj = next_object(call.base_url, call.path, query, replace=replace)
    return await send_json(request, {"files": rows, "next": next_obj})


def end_of_time() -> int:
    """Default span of an archive listing without dateFrom: everything since 1970."""
    return 1 << 62


async def download(
    ctx: OncContext, request: web.Request, query: Query, call: Call
) -> web.StreamResponse:
    """GET archivefile/download: stream the bytes, honouring a single Range when enabled."""
    query.check_known(("filename",))
    name = query.require("filename")
    f = ctx.archive.lookup(name)
    if f is None:
        raise ApiError.code(96, "filename", f"Invalid filename: {name}")
    target = ctx.config.archive_redirect_to
    if target is not None and request.host != _host_of(target):
        # The whole query goes along, token included: what a careless redirect would do.
        location = target.rstrip("/") + request.path_qs
        return web.Response(status=302, headers={"Location": location})
    headers = {"Content-Disposition": f"attachment; filename={f.filename}"}
    start, end, status = 0, f.size, 200
    if ctx.config.archive_range:
        headers["Accept-Ranges"] = "bytes"
        wanted = request.headers.get("Range")
        if wanted:
            parsed = parse_range(wanted, f.size)
            if isinstance(parsed, str):  # "unsatisfiable"
                return web.Response(status=416, headers={"Content-Range": f"bytes */{f.size}"})
            if parsed is not None:
                start, end = parsed
                status = 206
                headers["Content-Range"] = f"bytes {start}-{end - 1}/{f.size}"
    chunk = ctx.config.download_chunk_bytes
    return await send_stream(
        request,
        end - start,
        ctx.archive.chunks(f, start, end, chunk),
        status=status,
        content_type=_CONTENT_TYPES.get(f.spec.extension, "application/octet-stream"),
        headers=headers,
    )


def _host_of(base_url: str) -> str:
    return base_url.split("://", 1)[-1].split("/", 1)[0]


def parse_range(header: str, size: int) -> tuple[int, int] | str | None:
    """A single `bytes=` range -> [start, end); None to ignore it (multi-range, malformed)."""
    if not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes=") :].strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                return "unsatisfiable"
            return max(0, size - length), size
        lo = int(first)
        hi = int(last) + 1 if last else size
    except ValueError:
        return None
    if lo >= size or hi <= lo:
        return "unsatisfiable"
    return lo, min(hi, size)

"""The physical ceiling of a backfill: plain aiohttp GETs of known page URLs, bodies discarded.

`python -m benchmarks.ceiling --base URL --pages pages.json --concurrency 3`: `pages.json` is a
list of streams, each a list of page paths (with query) found beforehand by following `next`.
Pages of one stream are fetched in order (paging is sequential by nature); `concurrency`
streams at a time. Prints one JSON summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

import aiohttp


async def _stream(session: aiohttp.ClientSession, base: str, pages: list[str]) -> tuple[int, int]:
    got = 0
    for path in pages:
        async with session.get(base + path) as resp:
            resp.raise_for_status()
            async for chunk in resp.content.iter_chunked(1 << 20):
                got += len(chunk)
    return got, len(pages)


async def fetch_all(base: str, streams: list[list[str]], concurrency: int) -> dict[str, int]:
    """GET every page, `concurrency` streams at a time; return bytes and request counts."""
    gate = asyncio.Semaphore(concurrency)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    async with aiohttp.ClientSession(timeout=timeout) as session:

        async def one(pages: list[str]) -> tuple[int, int]:
            async with gate:
                return await _stream(session, base, pages)

        done = await asyncio.gather(*(one(p) for p in streams))
    return {"bytes": sum(b for b, _ in done), "requests": sum(n for _, n in done)}


def main() -> None:
    """Parse the command line, fetch, print the summary."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--base", required=True)
    parser.add_argument("--pages", type=Path, required=True)
    parser.add_argument("--concurrency", type=int, default=3)
    args = parser.parse_args()
    streams = json.loads(args.pages.read_text())
    print(json.dumps(asyncio.run(fetch_all(args.base.rstrip("/"), streams, args.concurrency))))


if __name__ == "__main__":
    main()

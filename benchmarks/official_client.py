"""The official `onc` client as a user script would use it: one request series after another.

Run as a subprocess by the suite (so its CPU and peak RSS are its own):
`python -m benchmarks.official_client scalar --base URL --token T --spec spec.json --out DIR`
(each stream: `getScalardataByDevice(..., allPages=True)`, then the result dumped to a JSON
file) or `... archive --files files.json --out DIR` (`downloadArchivefile` per file). Prints one
JSON summary line on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path
from typing import Any

from onc import ONC


def _client(base: str, token: str, out: Path) -> ONC:
    client = ONC(token, showInfo=False, showWarning=False, outPath=str(out), timeout=600)
    # The documented way to aim the client elsewhere: its base URL (with the trailing slash).
    client.baseUrl = base.rstrip("/") + "/"
    return client


def _values(result: dict[str, Any]) -> int:
    return sum(len(s["data"]["values"]) for s in result.get("sensorData") or [])


def scalar(client: ONC, spec: list[dict[str, str]], out: Path) -> dict[str, int]:
    """Every stream with allPages=True, written to `<out>/<name>.json` like a user script."""
    values = 0
    for stream in spec:
        filters = {
            "deviceCode": stream["deviceCode"],
            "dateFrom": stream["dateFrom"],
            "dateTo": stream["dateTo"],
            "rowLimit": 100_000,
        }
        # The client prints progress; a script's stdout is not ours to fill.
        with contextlib.redirect_stdout(io.StringIO()):
            result = client.getScalardataByDevice(filters, allPages=True)
        values += _values(result)
        with (out / f"{stream['name']}.json").open("w") as fh:
            json.dump(result, fh)
    return {"values": values, "streams": len(spec)}


def archive(client: ONC, files: list[str]) -> dict[str, int]:
    """`downloadArchivefile` for each name, one after another."""
    total = 0
    for name in files:
        with contextlib.redirect_stdout(io.StringIO()):
            info = client.downloadArchivefile(name, overwrite=True)
        total += int(info["size"])
    return {"bytes": total, "files": len(files)}


def main() -> None:
    """Parse the command line and run one mode."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=["scalar", "archive"])
    parser.add_argument("--base", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--spec", type=Path, help="scalar: JSON list of streams")
    parser.add_argument("--files", type=Path, help="archive: JSON list of file names")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    client = _client(args.base, args.token, args.out)
    if args.mode == "scalar":
        summary = scalar(client, json.loads(args.spec.read_text()), args.out)
    else:
        summary = archive(client, json.loads(args.files.read_text()))
    print(json.dumps(summary))


if __name__ == "__main__":
    main()

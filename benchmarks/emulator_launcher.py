"""Runs the emulator with knobs the `onc-pipeline emulator` CLI has no flag for (archive sizes,
a clock running ahead of or behind real time).

`python -m benchmarks.emulator_launcher --onc-port P --registry-port Q --token T --faults F
--sizes '{"ICLISTENHF1560.wav": 5000000}' [--clock-offset-s S]`; stops on SIGTERM/SIGINT like
the CLI.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal

from pipeline.emulator import EmulatorConfig
from pipeline.emulator.server import Emulator
from pipeline.logs import configure_logging


async def _main(config: EmulatorConfig, clock_offset_s: float) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    emulator = Emulator(config)
    # Real time plus a fixed offset: data exists up to the shifted "now", which moves on.
    emulator.clock.advance(clock_offset_s)
    async with emulator:
        await stop.wait()


def main() -> None:
    """Parse the flags, build an EmulatorConfig and serve until a signal."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--onc-port", type=int, required=True)
    parser.add_argument("--registry-port", type=int, required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--faults", default=None)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sizes", default="{}", help="archive_file_sizes as JSON")
    parser.add_argument("--chunk-bytes", type=int, default=1 << 20)
    parser.add_argument("--clock-offset-s", type=float, default=0.0, help="added to real time")
    args = parser.parse_args()
    configure_logging(level="warning", fmt="json")
    config = EmulatorConfig(
        token=args.token,
        seed=args.seed,
        onc_port=args.onc_port,
        registry_port=args.registry_port,
        faults=args.faults,
        archive_file_sizes={k: int(v) for k, v in json.loads(args.sizes).items()},
        download_chunk_bytes=args.chunk_bytes,
    )
    asyncio.run(_main(config, args.clock_offset_s))


if __name__ == "__main__":
    main()

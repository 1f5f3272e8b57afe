"""Command line: arguments -> settings -> logging -> asyncio.run(...). The only place that reads
the process environment."""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TextIO, TypeVar

from pipeline import __version__
from pipeline.exceptions import ConfigError, PipelineError, PortInUseError
from pipeline.redaction import redact_text

# Logging, settings (pydantic, and the ONC client's options: aiohttp) and each command's
# machinery are imported by the commands that use them: `--help` answers at once, and a
# window worker's fork server, which imports the `onc-pipeline` entry script (and so this
# module) to start workers without running it again, does not load them for nothing.
if TYPE_CHECKING:
    from pipeline.engine.streams.base import PassOutcome
    from pipeline.settings import Settings


T = TypeVar("T")


class ExitCode(IntEnum):
    """Process exit codes; documented in the README."""

    OK = 0
    FAILURE = 1  # the command ran and some work failed (details in the summary and logs)
    CONFIG = 2  # bad configuration or command line
    OUTPUT = 120  # the output could not be written (Python's own code for it at exit)
    INTERRUPTED = 130  # stopped by SIGINT before finishing (once/backfill)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, with one subcommand per operation."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-c",
        "--config",
        type=Path,
        default=None,
        help="YAML configuration file (default: $ONC_PIPELINE_CONFIG, else built-in defaults)",
    )
    common.add_argument(
        "--log-level", choices=["debug", "info", "warning", "error"], help="override logging.level"
    )
    common.add_argument(
        "--log-format", choices=["auto", "json", "console"], help="override logging.format"
    )

    parser = argparse.ArgumentParser(
        prog="onc-pipeline",
        description="Harvest Ocean Networks Canada data for ERDDAP and the IOOS Catalog.",
    )
    parser.add_argument("--version", action="version", version=f"onc-pipeline {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run", parents=[common], help="run the harvesting daemon until SIGTERM/SIGINT"
    ).set_defaults(handler=_cmd_run)
    sub.add_parser(
        "once",
        parents=[common],
        help="harvest every stream up to now once, then exit (0 = all streams succeeded)",
    ).set_defaults(handler=_cmd_once)
    backfill = sub.add_parser(
        "backfill", parents=[common], help="harvest one stream over a past time range"
    )
    backfill.add_argument("--stream", required=True, help="stream name from the configuration")
    backfill.add_argument("--from", dest="date_from", required=True, help="start, ISO 8601 UTC")
    backfill.add_argument("--to", dest="date_to", required=True, help="end, ISO 8601 UTC")
    backfill.set_defaults(handler=_cmd_backfill)
    status = sub.add_parser(
        "status",
        parents=[common],
        help="per stream: cursor, lag, last success, last error, quarantined items",
    )
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.set_defaults(handler=_cmd_status)
    _add_coverage_parser(sub, common)
    _add_quarantine_parser(sub, common)
    sub.add_parser(
        "check",
        parents=[common],
        help="validate the configuration and print the resolved settings, secrets masked",
    ).set_defaults(handler=_cmd_check)

    sub.add_parser(
        "erddap-config",
        parents=[common],
        help="print an example ERDDAP datasets.xml snippet for the configured streams",
    ).set_defaults(handler=_cmd_erddap_config)

    emulator = sub.add_parser(
        "emulator",
        help="serve the bundled Oceans API and IOOS registry emulator",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    # The defaults are config/demo.yaml's, so `onc-pipeline once --config config/demo.yaml`
    # harvests from an emulator started with no options.
    emulator.add_argument("--host", default="127.0.0.1", help="address to listen on")
    emulator.add_argument(
        "--onc-port", type=int, default=8080, help="Oceans API port (0: any free port)"
    )
    emulator.add_argument(
        "--registry-port", type=int, default=8081, help="IOOS registry port (0: any free port)"
    )
    emulator.add_argument("--token", default="demo-token", help="the only token it accepts")
    emulator.add_argument(
        "--faults",
        default=None,
        help="fault profile name (flaky, throttled, hostile, ...) or fault file",
    )
    emulator.add_argument("--seed", type=int, default=1, help="seed of every synthetic value")
    emulator.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    emulator.add_argument("--log-format", choices=["auto", "json", "console"])
    emulator.set_defaults(handler=_cmd_emulator, config=None)

    sub.add_parser(
        "demo",
        parents=[common],
        help="start the emulator and the daemon together on config/demo.yaml (Ctrl-C stops)",
    ).set_defaults(handler=_cmd_demo)
    return parser


def console_main() -> NoReturn:
    """The `onc-pipeline` command (and `python -m pipeline`): `main`, then the process exits.

    Every command has closed what it opened (files, state, sockets, worker processes) when
    `main` returns. Python would then take the whole heap apart, every imported module
    included, before exiting, for nothing. So the process begins its exit as the interpreter
    would and stops there: the threads the interpreter waits for are waited for, with the
    hooks of `concurrent.futures` (`_shutdown_threads`), the atexit handlers run (logging's
    flush among them), stdout and stderr are flushed (`_flushed`), and the process ends
    (`os._exit`). With the fork server's own quick end (`pipeline/outputs/forkserver_hook.py`),
    a backfill ends 23 - 43 ms after its last log line instead of 57 - 135 (BENCHMARKS.md,
    "Session 24"). Only here, never in `main`, which tests and scripts call inside their own
    process.
    """
    # The start-up (imports, the settings' models, the settings) allocates some 100,000
    # objects that live as long as the process: collections among them find nothing, and
    # cost 0.05 - 0.07 CPU s of a 0.5 s start (BENCHMARKS.md, session 28). `_run` resumes them.
    gc.disable()
    code = main()
    gc.disable()
    gc.freeze()
    _shutdown_threads()
    atexit._run_exitfuncs()
    os._exit(_flushed(int(code)))


# What the interpreter runs first at its exit (as multiprocessing's own processes do before
# they end): joins the threads it waits for, and runs the exit hooks of `concurrent.futures`
# (a process pool's workers are told to stop, so waiting for them at atexit cannot hang).
_shutdown_threads: Callable[[], None] = threading._shutdown  # type: ignore[attr-defined]


def _flushed(code: int) -> int:
    """`code`, once stdout and stderr are flushed; 120, as Python's own exit gives, when
    output cannot be written (a full disk under a redirection), said on stderr. A reader gone
    (`| head`) or a stream closed or missing (`>&-`) is no failure: nothing is left to tell."""
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (BrokenPipeError, ValueError):
            continue
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.write(2, f"onc-pipeline: cannot write its output: {exc.strerror}\n".encode())
            code = code or ExitCode.OUTPUT
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns its exit code (the `onc-pipeline` command is `console_main`)."""
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except ConfigError as exc:
        _print_config_error(exc, args)
        return ExitCode.CONFIG
    except KeyboardInterrupt:
        return ExitCode.INTERRUPTED


def _settings(
    args: argparse.Namespace,
    *,
    log_to_stdout: bool = False,
    need_secrets: bool = True,
    log_stream: TextIO | None = None,
) -> Settings:
    """Load settings for a command and configure logging from them.

    Only the daemon logs to stdout (its only output); every other command keeps stdout for
    its result and logs to stderr (or `log_stream`, which writes there). Commands that call
    no API pass `need_secrets=False`.
    """
    # pipeline.logs first: it must be the first to import structlog (see there).
    from pipeline.logs import configure_logging
    from pipeline.settings import load_settings

    path: Path | None = args.config
    if path is None and (env_path := os.environ.get("ONC_PIPELINE_CONFIG")):
        path = Path(env_path)
    args.config = path
    settings = load_settings(path, environ=os.environ, need_secrets=need_secrets)
    if path is None and not settings.streams:
        # Built-in defaults alone harvest nothing: almost surely a forgotten --config.
        raise ConfigError(
            [
                (
                    "--config",
                    "no configuration given: pass --config FILE or set ONC_PIPELINE_CONFIG "
                    "(config/example.yaml is an annotated start)",
                )
            ]
        )
    configure_logging(
        level=args.log_level or settings.logging.level,
        fmt=args.log_format or settings.logging.format,
        secrets=_secret_values(settings),
        stream=log_stream or (sys.stdout if log_to_stdout else sys.stderr),
    )
    return settings


def _secret_values(settings: Settings) -> list[str | None]:
    secrets = [settings.onc.token, settings.registry.password, settings.output.erddap_flag_key]
    return [s.get_secret_value() if s is not None else None for s in secrets]


def _print_config_error(exc: ConfigError, args: argparse.Namespace) -> None:
    source = f" in {args.config}" if getattr(args, "config", None) else ""
    what = f"configuration{source}"
    if all(path.startswith("--") for path, _ in exc.problems):
        what = "command line"  # --stream, --from, --config: not the file's fault
    count = len(exc.problems)
    noun = "problem" if count == 1 else "problems"
    print(f"onc-pipeline: invalid {what} ({count} {noun}):", file=sys.stderr)
    for path, message in exc.problems:
        print(f"  {path}: {message}" if path else f"  {message}", file=sys.stderr)


def _cmd_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    import yaml

    from pipeline.settings import masked_dump

    resolved = masked_dump(settings)
    for dumped, stream in zip(resolved["streams"], settings.streams, strict=True):
        dumped["dataset_id"] = stream.resolved_dataset_id  # what ERDDAP will see, not null
    yaml.safe_dump(resolved, sys.stdout, sort_keys=False, default_flow_style=False)
    source = str(args.config) if args.config else "built-in defaults"
    print(f"# configuration OK ({source}): {len(settings.streams)} streams", file=sys.stderr)
    return ExitCode.OK


def _cmd_erddap_config(args: argparse.Namespace) -> int:
    settings = _settings(args, need_secrets=False)
    from pipeline.outputs.datasets_xml import no_entry_reason, render_datasets_xml

    print(render_datasets_xml(settings), end="")
    # The snippet carries the same reasons as XML comments; stderr tells the person at the
    # terminal, who may be piping stdout straight into datasets.xml.
    for stream in settings.streams:
        if stream.enabled and (reason := no_entry_reason(stream)) is not None:
            print(
                f"onc-pipeline: stream {stream.name} gets no ERDDAP dataset: {reason}",
                file=sys.stderr,
            )
    return ExitCode.OK


def _cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args, log_to_stdout=True)
    from pipeline.daemon import run_daemon
    from pipeline.settings import load_settings

    reload_requested = asyncio.Event()
    config_path: Path | None = args.config

    def reload() -> Settings:
        return load_settings(config_path, environ=os.environ)

    code = _run_until_signal(
        lambda stop: run_daemon(
            settings, stop, reload=reload, reload_requested=reload_requested, environ=os.environ
        ),
        on_hup=reload_requested.set,
    )
    return int(code)


def _cmd_once(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from pipeline.daemon import run_once

    stopped = _Stopped()
    results = _run_until_signal(lambda stop: stopped.watch(stop, run_once(settings, stop)))
    if isinstance(results, int):
        return results
    # The summary is the command's result: stdout, one line per stream.
    failed = 0
    for name, result in sorted(results.items()):
        if isinstance(result, Exception):
            failed += 1
            print(failure_line(name, result))
        else:
            failed += not result.ok
            print(_summary(settings.stream(name).kind, result))
    if stopped.by_signal:
        return ExitCode.INTERRUPTED
    return ExitCode.FAILURE if failed else ExitCode.OK


class _Stopped:
    """Whether SIGINT/SIGTERM stopped a command that otherwise ends on its own (once,
    backfill): its summary still prints, and it exits 130 rather than 0 or 1."""

    def __init__(self) -> None:
        self.by_signal = False

    async def watch(self, stop: asyncio.Event, work: Awaitable[T]) -> T:
        try:
            return await work
        finally:
            self.by_signal = stop.is_set()


def failure_line(name: str, exc: Exception) -> str:
    """`FAILED  name: Error: message`, then what to do about the errors an operator fixes."""
    from pipeline.exceptions import OncAuthError, OncUnavailable

    line = f"FAILED  {name}: {type(exc).__name__}: {redact_text(str(exc))}"
    if isinstance(exc, OncAuthError):
        return (
            f"{line}\n        the Oceans API refused the token: check onc.token (ONC_TOKEN, "
            "ONC_PIPELINE_ONC__TOKEN or the secret file onc_token)"
        )
    if isinstance(exc, OncUnavailable):
        return (
            f"{line}\n        the Oceans API did not answer after every retry: check "
            "onc.base_url and the network, or run again later (ONC has maintenance windows)"
        )
    return line


_UNIT_NAMES = {
    "scalardata": "windows",
    "rawdata": "windows",
    "archivefile": "downloads",
    "dataproduct": "periods",
}


def _summary(kind: str, result: PassOutcome, label: str | None = None) -> str:
    """One line: what a pass did, in the units `status` and the disk count (files once)."""
    name = label or result.stream
    if not result.ok:
        return f"FAILED  {name}: {redact_text('; '.join(result.errors))}"
    # Plain integers: scripts (and benchmarks/) read these lines.
    parts = [f"{result.units} {_UNIT_NAMES[kind]}"]
    if kind in ("scalardata", "rawdata"):
        parts.append(f"{result.records} records")
    parts.append(f"{result.files} files, {result.bytes} bytes")
    if result.quarantined:
        parts.append(f"{result.quarantined} quarantined")
    if not result.caught_up:
        parts.append("not caught up (run again)")
    line = f"ok      {name}: " + ", ".join(parts)
    return "\n".join([line, *(f"        warning: {w}" for w in result.warnings)])


def _cmd_backfill(args: argparse.Namespace) -> int:
    from pipeline.progress import ProgressReporter

    progress = ProgressReporter(sys.stderr, tty=sys.stderr.isatty())
    # On a terminal, log lines go above the bar instead of onto its line.
    settings = _settings(args, log_stream=progress.log_stream() if sys.stderr.isatty() else None)
    from pipeline.daemon import run_backfill

    problems: list[tuple[str, str]] = []
    if args.stream not in {s.name for s in settings.streams}:
        names = ", ".join(s.name for s in settings.streams) or "none"
        problems.append(("--stream", f"no stream named {args.stream!r}; known: {names}"))
    date_from = _parse_time("--from", args.date_from, problems)
    date_to = _parse_time("--to", args.date_to, problems)
    if date_from is not None and date_to is not None and date_to <= date_from:
        problems.append(("--to", "must be after --from"))
    if problems or date_from is None or date_to is None:
        raise ConfigError(problems)
    stopped = _Stopped()
    try:
        result = _run_until_signal(
            lambda stop: stopped.watch(
                stop,
                run_backfill(settings, stop, args.stream, date_from, date_to, progress=progress),
            )
        )
    finally:
        progress.close()
    if isinstance(result, int):
        return result
    kind = settings.stream(args.stream).kind
    print(_summary(kind, result, label=f"backfill {args.stream}"))
    if stopped.by_signal:
        return ExitCode.INTERRUPTED
    return ExitCode.OK if result.ok and result.caught_up else ExitCode.FAILURE


def _parse_time(option: str, text: str, problems: list[tuple[str, str]]) -> datetime | None:
    """A UTC time from the command line; None, with a problem noted, when it is not one."""
    try:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        problems.append(
            (option, f"expected an ISO 8601 time like 2026-11-01T00:00:00Z, got {text!r}")
        )
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _cmd_status(args: argparse.Namespace) -> int:
    settings = _settings(args, need_secrets=False)
    from pipeline.status import collect_status, render_status

    try:
        report = _run(collect_status(settings))
    except PipelineError as exc:
        # A locked, corrupt or missing state database: one clear line, like every command.
        print(f"onc-pipeline: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return ExitCode.FAILURE
    print(render_status(report, as_json=args.json))
    return ExitCode.OK


def _add_coverage_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    coverage = sub.add_parser(
        "coverage",
        parents=[common],
        help="per stream: what ONC has that we hold, and each gap with its class",
    )
    coverage.add_argument("--stream", help="one stream (default: every configured stream)")
    coverage.add_argument("--from", dest="date_from", help="start, ISO 8601 UTC")
    coverage.add_argument("--to", dest="date_to", help="end, ISO 8601 UTC (default: now)")
    coverage.add_argument("--json", action="store_true", help="print JSON instead of a table")
    coverage.add_argument(
        "--state-only",
        action="store_true",
        help="do not ask ONC (upstream gaps of archive streams then show as missing)",
    )
    coverage.set_defaults(handler=_cmd_coverage)


def _cmd_coverage(args: argparse.Namespace) -> int:
    settings = _settings(args, need_secrets=False)
    from pipeline.coverage.model import Span
    from pipeline.coverage.report import collect_coverage, render_json, render_table

    problems: list[tuple[str, str]] = []
    if args.stream is not None and args.stream not in {s.name for s in settings.streams}:
        names = ", ".join(s.name for s in settings.streams) or "none"
        problems.append(("--stream", f"no stream named {args.stream!r}; known: {names}"))
    date_from = _parse_time("--from", args.date_from, problems) if args.date_from else None
    date_to = _parse_time("--to", args.date_to, problems) if args.date_to else None
    if (date_to is not None) and date_from is None:
        problems.append(("--from", "--to needs --from"))
    if date_from is not None and date_to is not None and date_to <= date_from:
        problems.append(("--to", "must be after --from"))
    if problems:
        raise ConfigError(problems)
    now = datetime.now(UTC)
    span = Span(date_from, date_to or now) if date_from is not None else None
    try:
        report = _run(
            collect_coverage(
                settings, stream=args.stream, span=span, ask_onc=not args.state_only, now=now
            )
        )
    except PipelineError as exc:
        print(f"onc-pipeline: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return ExitCode.FAILURE
    print(render_json(report) if args.json else render_table(report))
    return ExitCode.OK


def _add_quarantine_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    quarantine = sub.add_parser(
        "quarantine",
        parents=[common],
        help="list the items given up on, or release them for another try",
    )
    quarantine.add_argument("--stream", help="one stream (required to release)")
    release = quarantine.add_mutually_exclusive_group()
    release.add_argument("--release", metavar="ITEM", help="release one item (its key, as listed)")
    release.add_argument(
        "--release-all", action="store_true", help="release every item of --stream"
    )
    quarantine.set_defaults(handler=_cmd_quarantine)


def _cmd_quarantine(args: argparse.Namespace) -> int:
    settings = _settings(args, need_secrets=False)
    releasing = args.release is not None or args.release_all
    if releasing and args.stream is None:
        raise ConfigError([("--stream", "releasing needs the stream the item belongs to")])
    if args.stream is not None and args.stream not in {s.name for s in settings.streams}:
        names = ", ".join(s.name for s in settings.streams) or "none"
        raise ConfigError([("--stream", f"no stream named {args.stream!r}; known: {names}")])
    from pipeline.state import open_state_store

    async def act() -> int:
        async with open_state_store(settings.state.url, read_only=not releasing) as store:
            held = await store.list_quarantine(args.stream)
            if not releasing:
                for r in held:
                    detail = f"  {redact_text(r.detail)}" if r.detail else ""
                    print(
                        f"{r.stream}  {r.item_key}  {r.reason}  attempts={r.attempts}  "
                        f"{r.at:%Y-%m-%dT%H:%M:%SZ}{detail}"
                    )
                if not held:
                    print("nothing is quarantined")
                return ExitCode.OK
            keys = [r.item_key for r in held] if args.release_all else [args.release]
            missing = [k for k in keys if not await store.release_quarantine(args.stream, k)]
            for key in keys:
                if key not in missing:
                    print(f"released {args.stream} {key}")
            if missing:
                known = ", ".join(r.item_key for r in held) or "none"
                print(
                    f"onc-pipeline: not quarantined in {args.stream}: {', '.join(missing)} "
                    f"(quarantined: {known})",
                    file=sys.stderr,
                )
                return ExitCode.FAILURE
            # The cursor is past the item: the daemon's coverage check finds its range
            # missing and re-harvests it; without a daemon, `backfill` the range.
            print(
                "the daemon re-harvests released ranges at its next coverage check (with SQLite "
                "state, release while it is stopped: it holds the database); or run: "
                f"onc-pipeline backfill --stream {args.stream} --from ... --to ..."
            )
            return ExitCode.OK

    try:
        return _run(act())
    except PipelineError as exc:
        print(f"onc-pipeline: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return ExitCode.FAILURE


DEMO_CONFIG = Path("config/demo.yaml")


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.config is None and not os.environ.get("ONC_PIPELINE_CONFIG"):
        args.config = DEMO_CONFIG
    settings = _settings(args, log_to_stdout=True)
    from pipeline.demo import run_demo

    return int(
        _run_until_signal(
            lambda stop: run_demo(settings, stop, environ=os.environ, config=args.config)
        )
    )


def _cmd_emulator(args: argparse.Namespace) -> int:
    from pipeline.logs import configure_logging

    configure_logging(
        level=args.log_level or "info", fmt=args.log_format or "auto", stream=sys.stderr
    )
    from pipeline.emulator import Emulator, EmulatorConfig

    config = EmulatorConfig(
        host=args.host,
        onc_port=args.onc_port,
        registry_port=args.registry_port,
        token=args.token,
        faults=args.faults,
        seed=args.seed,
    )

    async def serve(stop: asyncio.Event) -> int:
        emulator = Emulator(config)
        try:
            await emulator.start()  # closes what it opened when it fails
        except PortInUseError as exc:
            exc.option = "--onc-port" if exc.role == "onc" else "--registry-port"
            raise
        try:
            # The one thing scripts need: where to point the harvester.
            print(f"Oceans API    {emulator.onc_url}", flush=True)
            print(f"IOOS registry {emulator.registry_url}", flush=True)
            await stop.wait()
        finally:
            await emulator.close()
        return ExitCode.OK

    return int(_run_until_signal(serve))


def _run(main: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run(main)`, the start-up over: where `console_main` held the garbage collector
    back, what the start-up allocated is frozen out of its sight (never scanned again: it
    lives as long as the process) and collections resume."""
    if not gc.isenabled():
        gc.freeze()
        gc.enable()
    return asyncio.run(main)


def _run_until_signal(
    body: Callable[[asyncio.Event], Awaitable[Any]], *, on_hup: Callable[[], None] | None = None
) -> Any:
    """asyncio.run `body(stop)`; SIGTERM and SIGINT only set `stop`, SIGHUP calls `on_hup`.

    Returns what `body` returned, or an ExitCode when it raised a PipelineError.
    """

    async def runner() -> Any:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        handled = [signal.SIGTERM, signal.SIGINT]
        for sig in handled:
            loop.add_signal_handler(sig, stop.set)
        if on_hup is not None:
            loop.add_signal_handler(signal.SIGHUP, on_hup)
            handled.append(signal.SIGHUP)
        try:
            return await body(stop)
        finally:
            for sig in handled:
                loop.remove_signal_handler(sig)

    try:
        result = _run(runner())
    except ConfigError:
        raise
    except PipelineError as exc:
        print(f"onc-pipeline: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        return ExitCode.FAILURE
    return result

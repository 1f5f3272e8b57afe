"""What a process loads before its first request, and how the command ends (subprocesses:
each needs a fresh interpreter, whose modules no other test has imported yet)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


def loaded_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=60,
        check=True,
    )
    return set(json.loads(result.stdout.splitlines()[-1]))


def test_the_command_line_module_loads_no_settings_logging_or_http() -> None:
    # The fork server of the window workers imports the `onc-pipeline` entry script, and so
    # this module: it must not drag pydantic, structlog and aiohttp in with it.
    loaded = loaded_after("import pipeline.cli")
    assert {"pydantic", "pydantic_settings", "structlog", "aiohttp", "yaml"} & loaded == set()


def test_the_daemon_module_loads_nothing_only_some_processes_use() -> None:
    loaded = loaded_after("import pipeline.daemon")
    unused_by_once = {
        "asyncpg",  # PostgreSQL state only
        "pipeline.state.postgres",
        "pipeline.coordination.limiter",
        "prometheus_client",  # the ops server: `run` only
        "aiohttp.web",
        "pipeline.ops",
        "pipeline.coverage.mend",  # `run` only
        "pipeline.registry",  # a configured registry only
        "pipeline.emulator",
    }
    assert unused_by_once & loaded == set()


@pytest.mark.skipif(importlib.util.find_spec("rich") is None, reason="rich is not installed")
def test_logging_loads_structlog_without_rich() -> None:
    # Only development tools install rich; structlog would import it at its own import.
    loaded = loaded_after("import pipeline.logs")
    assert "structlog" in loaded
    assert not {m for m in loaded if m == "rich" or m.startswith("rich.")}


def test_postgres_names_still_import_on_first_use() -> None:
    loaded = loaded_after(
        "from pipeline.state import PostgresStateStore, open_state_store\n"
        "from pipeline.coordination import PostgresLimiter\n"
        "store = open_state_store('postgresql://u@127.0.0.1:1/db')\n"
        "assert isinstance(store, PostgresStateStore), store\n"
        "assert PostgresLimiter.__module__ == 'pipeline.coordination.limiter'"
    )
    assert "asyncpg" in loaded


def test_unknown_names_of_the_lazy_packages_are_attribute_errors() -> None:
    import pipeline.coordination
    import pipeline.state

    with pytest.raises(AttributeError, match="Nothing"):
        _ = pipeline.state.Nothing  # type: ignore[attr-defined]
    with pytest.raises(AttributeError, match="Nothing"):
        _ = pipeline.coordination.Nothing  # type: ignore[attr-defined]


def _run(code: str, **options: Any) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter, which reports at exit whether its heap was frozen (an
    atexit handler registered first runs last). Its output is buffered, as a terminal's is
    not: what the command leaves in the buffers must be flushed before it ends."""
    script = (
        "import atexit, gc, sys\n"
        "atexit.register(lambda: print('gc', gc.isenabled(), gc.get_freeze_count() > 0,"
        " file=sys.stderr))\n"
        f"{code}\n"
    )
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("ONC_") and k != "PYTHONUNBUFFERED"
    }
    if "stdout" not in options:
        options["capture_output"] = True
    return subprocess.run(
        [sys.executable, "-c", script],
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
        check=False,
        **options,
    )


def _console(*args: str) -> subprocess.CompletedProcess[str]:
    """`console_main`: what `onc-pipeline` and `python -m pipeline` run."""
    return _run(
        f"sys.argv = ['onc-pipeline', *{list(args)!r}]\n"
        "from pipeline.cli import console_main\n"
        "console_main()"
    )


def test_the_command_exits_with_its_code_its_output_whole_and_the_heap_frozen() -> None:
    result = _console("check", "--config", "config/demo.yaml")
    assert result.returncode == 0, result.stderr
    resolved = yaml.safe_load(result.stdout)  # all of it was flushed: it parses
    assert f"configuration OK (config/demo.yaml): {len(resolved['streams'])} streams" in (
        result.stderr
    )
    assert "gc False True" in result.stderr  # the final collection was skipped


# An object taken apart only when the interpreter tears its modules down.
_TEARDOWN_PROBE = (
    "import os\n"
    "class Probe:\n"
    "    def __del__(self, write=os.write):\n"
    "        write(2, b'torn down\\n')\n"
    "probe = Probe()\n"
)


def test_the_command_ends_without_taking_the_heap_apart() -> None:
    result = _run(
        _TEARDOWN_PROBE + "sys.argv = ['onc-pipeline', 'check', '--config', 'config/demo.yaml']\n"
        "from pipeline.cli import console_main\n"
        "console_main()"
    )
    assert result.returncode == 0, result.stderr
    assert yaml.safe_load(result.stdout)["streams"]  # stdout flushed before the end
    assert "gc False True" in result.stderr  # atexit handlers ran
    assert "torn down" not in result.stderr


# A command that leaves its last line in stdout's buffer.
_UNFLUSHED = (
    "import pipeline.cli\n"
    "pipeline.cli.main = lambda: (sys.stdout.write('the last line\\n'), 0)[1]\n"
    "pipeline.cli.console_main()\n"
)


def test_output_left_in_the_buffers_is_written_before_the_end() -> None:
    result = _run(_UNFLUSHED)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "the last line\n"


def test_output_that_cannot_be_written_fails_the_command() -> None:
    with open("/dev/full", "w") as full:
        result = _run(_UNFLUSHED, stdout=full, stderr=subprocess.PIPE)
    assert result.returncode == 120
    assert "cannot write its output: No space left on device" in result.stderr


def test_a_reader_gone_or_a_closed_output_is_no_failure() -> None:
    read, write = os.pipe()
    os.close(read)  # `| head` that has stopped reading
    try:
        gone = _run(_UNFLUSHED, stdout=write, stderr=subprocess.PIPE)
    finally:
        os.close(write)
    assert gone.returncode == 0, gone.stderr
    closed = _run(
        "import pipeline.cli\n"
        "assert sys.stdout is None\n"
        "pipeline.cli.main = lambda: 0\n"
        "pipeline.cli.console_main()\n",
        stdout=None,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),  # `>&-`
    )
    assert closed.returncode == 0, closed.stderr


def test_a_thread_still_running_is_waited_for() -> None:
    result = _run(
        _TEARDOWN_PROBE + "import threading, time\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('thread done',"
        " file=sys.stderr))).start()\n"
        "sys.argv = ['onc-pipeline', 'check', '--config', 'config/demo.yaml']\n"
        "from pipeline.cli import console_main\n"
        "console_main()"
    )
    assert result.returncode == 0, result.stderr
    assert "thread done" in result.stderr
    assert "torn down" not in result.stderr  # then the process ends at once all the same


def test_the_fork_server_ends_at_once_and_its_children_their_own_way() -> None:
    # A forked child inherits the handler: it exits with its own code, through the usual
    # teardown; the server itself skips it.
    result = _run(
        _TEARDOWN_PROBE + "import pipeline.outputs.forkserver_hook\n"
        "child = os.fork()\n"
        "if child == 0:\n"
        "    sys.exit(3)\n"
        "_, status = os.waitpid(child, 0)\n"
        "print('child', os.waitstatus_to_exitcode(status), file=sys.stderr)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "child 3" in result.stderr
    assert result.stderr.count("torn down") == 1  # the child's, not the server's


def test_a_failing_command_keeps_its_exit_code(tmp_path: Path) -> None:
    result = _console("check", "--config", str(tmp_path / "missing.yaml"))
    assert result.returncode == 2
    assert "does not exist" in result.stderr


def test_main_leaves_the_collector_of_its_caller_alone() -> None:
    # Tests and scripts call `main` inside their own process: their heap is theirs.
    result = _run(
        "from pipeline.cli import main\n"
        "code = main(['check', '--config', 'config/demo.yaml'])\n"
        "assert code == 0, code"
    )
    assert result.returncode == 0, result.stderr
    assert "gc True False" in result.stderr

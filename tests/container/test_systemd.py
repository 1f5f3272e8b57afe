"""deploy/systemd/onc-pipeline.service under a real systemd: a container whose PID 1 is
Debian 12's systemd 252, on the emulator's network.

Here (Debian's dockerd 20.10, cgroup v1) systemd boots as PID 1 with CAP_SYS_ADMIN and no
seccomp profile; `--privileged` fails ("runc create failed: unable to start container
process: unable to apply caps: operation not permitted"). The image's entrypoint makes the
mounts shared first, as systemd expects of a container manager (see its Dockerfile)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator

import pytest

from tests.container.conftest import HERE, ROOT, Engine, wait_until

UNIT = "onc-pipeline.service"


@pytest.fixture(scope="module")
def systemd_image(images: Engine, tmp_path_factory: pytest.TempPathFactory) -> str:
    context = tmp_path_factory.mktemp("systemd-image")
    for name in ("Dockerfile", "test.conf"):
        shutil.copy(HERE / "systemd" / name, context / name)
    shutil.copy(ROOT / "deploy" / "systemd" / UNIT, context / UNIT)
    shutil.copy(ROOT / "config" / "compose-demo.yaml", context / "config.yaml")
    images.docker(
        "build", "--quiet", "--target", "build", "--tag", "onc-ci/pipeline-build", str(ROOT)
    )
    images.docker("build", "--quiet", "--tag", "onc-ci/systemd", str(context))
    return "onc-ci/systemd"


@pytest.fixture
def machine(images: Engine, network: str, systemd_image: str) -> Iterator[str]:
    """A booted systemd container on the emulator's network."""
    name = "systemd-host"
    images.docker(
        "run", "--detach", f"--name={name}", f"--network={network}",
        "--cap-add=SYS_ADMIN", "--security-opt=seccomp=unconfined",
        "--security-opt=apparmor=unconfined", "--tmpfs=/run", "--tmpfs=/run/lock",
        "--volume=/sys/fs/cgroup:/sys/fs/cgroup:rw", systemd_image,
    )  # fmt: skip
    wait_until(
        lambda: (
            images.docker(
                "exec", name, "systemctl", "is-system-running", check=False
            ).stdout.strip()
            in {"running", "degraded"}
        ),
        60,
        "systemd booted",
    )
    yield name
    images.docker("rm", "--force", name, check=False)


def show(engine: Engine, machine: str) -> dict[str, str]:
    out = engine.docker("exec", machine, "systemctl", "show", UNIT).stdout
    return dict(line.partition("=")[::2] for line in out.splitlines())


def journal(engine: Engine, machine: str) -> str:
    return engine.docker("exec", machine, "journalctl", "-u", UNIT, "--no-pager").stdout


@pytest.mark.timeout(300)
def test_load_credential_delivers_the_token(images: Engine, machine: str) -> None:
    """The unit as installed: the config has no token, only the `onc_token` credential."""
    engine = images
    wait_until(lambda: show(engine, machine)["SubState"] == "running", 60, "the unit running")
    # systemd's read-only ramfs for the unit, visible outside the unit's own namespace.
    mounts = engine.docker("exec", machine, "cat", "/proc/self/mountinfo").stdout
    lines = [x for x in mounts.splitlines() if " /run/credentials/onc-pipeline.service " in x]
    assert len(lines) == 1, mounts
    assert " ro," in lines[0], lines[0]
    assert " - ramfs " in lines[0], lines[0]

    # The emulator (token demo-token) answered 200 to the daemon: the token got through.
    fetch = "import urllib.request as u; print(u.urlopen(%r, timeout=5).read().decode())"

    def accepted() -> bool:
        page = engine.docker(
            "exec", machine, "python3", "-c", fetch % "http://127.0.0.1:9108/metrics", check=False
        ).stdout
        return any(
            x.startswith("onc_pipeline_onc_requests_total{")
            and 'status="200"' in x
            and float(x.rpartition(" ")[2]) > 0
            for x in page.splitlines()
        )

    wait_until(accepted, 60, "an Oceans API request answered 200")
    assert show(engine, machine)["NRestarts"] == "0"
    log = journal(engine, machine)
    assert "demo-token" not in log
    assert "emulator-password" not in log
    assert "Traceback" not in log


@pytest.mark.timeout(300)
def test_notify_watchdog_restart_and_stop(images: Engine, machine: str) -> None:
    engine = images
    # Type=notify: `active (running)` only once the daemon sent READY=1.
    wait_until(lambda: show(engine, machine)["SubState"] == "running", 60, "READY=1")
    props = show(engine, machine)
    assert props["StatusText"].startswith("harvesting:"), props["StatusText"]
    first_pid = props["MainPID"]
    ping = int(props["WatchdogTimestampMonotonic"])
    assert ping > 0, "no WATCHDOG=1 received"
    # WatchdogSec=5s (test.conf): a missed ping would kill and restart it within 5 s.
    time.sleep(8)
    props = show(engine, machine)
    assert props["MainPID"] == first_pid, props
    assert props["NRestarts"] == "0", props
    assert int(props["WatchdogTimestampMonotonic"]) > ping, "the watchdog was not fed again"

    # A SIGKILLed daemon is restarted by Restart=on-failure.
    engine.docker("exec", machine, "systemctl", "kill", "--signal=SIGKILL", UNIT)
    wait_until(
        lambda: (p := show(engine, machine))["NRestarts"] == "1" and p["SubState"] == "running",
        60,
        "a restart after SIGKILL",
    )
    assert show(engine, machine)["MainPID"] != first_pid

    # `systemctl stop` drains and the daemon exits 0 well within TimeoutStopSec.
    started = time.monotonic()
    engine.docker("exec", machine, "systemctl", "stop", UNIT, timeout=90)
    took = time.monotonic() - started
    props = show(engine, machine)
    assert props["ActiveState"] == "inactive", props["ActiveState"]
    assert props["Result"] == "success", props["Result"]
    assert props["ExecMainStatus"] == "0", props["ExecMainStatus"]
    assert took < 45
    log = journal(engine, machine)
    assert "sd_notify_stopping" in log or '"daemon_stopping"' in log
    assert log.count('"daemon_stopped"') == 1
    assert "Traceback" not in log

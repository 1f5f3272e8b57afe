"""The container tier: a Docker engine of its own, base images made here, our images built.

Needs root, Debian's docker.io and mmdebstrap, and Compose v2 (tests/container/provision.sh
installs them; `.ci/run` calls it). No image registry is reachable here, so every base image
is made from Debian's packages with mmdebstrap and `docker import`:

- `debian:bookworm-slim`, the Dockerfile's base: Debian 12 minbase, as the official image is
  made (debuerreotype, also minbase from the same archive). The host's CA bundle is added so
  apt and pip inside a build trust what the host trusts (no secret is in it).
- `postgres:16-alpine`, the compose file's database: a stand-in from Debian's postgresql
  (15) with an entrypoint honouring the same POSTGRES_DB/USER/PASSWORD variables and data
  folder; what the pipeline sees is a PostgreSQL server, which is what matters here.

Root filesystems are cached as tarballs under $ONC_PIPELINE_CI_CACHE (default
/var/cache/onc-pipeline-ci), named by a digest of what goes into them.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CACHE = Path(os.environ.get("ONC_PIPELINE_CI_CACHE", "/var/cache/onc-pipeline-ci"))
COMPOSE_PLUGIN = CACHE / "compose-2.26.1-4" / "docker-compose"
MIRROR = "http://deb.debian.org/debian"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
IMAGE = "onc-pipeline:latest"
EMULATOR_IMAGE = "onc-pipeline-emulator:latest"
DOCKER = "/usr/bin/docker"  # Debian's CLI, the one that matches its dockerd
HARDENED = [
    "--read-only",
    "--tmpfs=/tmp",
    "--cap-drop=ALL",
    "--security-opt=no-new-privileges",
    "--user=10001:10001",
]


def need(condition: bool, why: str) -> None:
    """A missing prerequisite fails the tier in CI and skips it elsewhere."""
    if not condition:
        if os.environ.get("CI"):
            pytest.fail(f"container tier: {why} (tests/container/provision.sh installs it)")
        pytest.skip(f"container tier: {why}")


@dataclass
class Engine:
    """A dockerd of our own: its data root, exec root, pid file and socket in one folder."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)

    def docker(
        self, *args: str, check: bool = True, timeout: float = 600, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [DOCKER, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            input=input,
        )
        if check and result.returncode != 0:
            pytest.fail(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stderr}")
        return result

    def compose(
        self, project: Path, *args: str, check: bool = True, timeout: float = 600
    ) -> subprocess.CompletedProcess[str]:
        return self.docker(
            "compose", "--project-directory", str(project), *args, check=check, timeout=timeout
        )

    def inspect(self, name: str) -> dict[str, Any]:
        data: list[dict[str, Any]] = json.loads(self.docker("inspect", name).stdout)
        return data[0]

    def published(self, name: str, port: int) -> str:
        """http://127.0.0.1:PORT where the container's `port` is published."""
        line = self.docker("port", name, str(port)).stdout.splitlines()[0]
        return "http://127.0.0.1:" + line.rpartition(":")[2]

    def wait_healthy(self, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = self.inspect(name)["State"]
            health = state.get("Health", {}).get("Status")
            if health == "healthy":
                return
            if not state["Running"]:
                break
            time.sleep(1)
        logs = self.docker("logs", "--tail", "40", name, check=False)
        pytest.fail(f"{name} not healthy: {json.dumps(state)[:2000]}\n{logs.stdout}{logs.stderr}")


@pytest.fixture(scope="session")
def engine() -> Iterator[Engine]:
    need(os.geteuid() == 0, "needs root to run dockerd")
    need(shutil.which("dockerd") is not None and Path(DOCKER).exists(), "no docker.io")
    need(shutil.which("mmdebstrap") is not None, "no mmdebstrap")
    need(COMPOSE_PLUGIN.exists(), f"no Compose v2 at {COMPOSE_PLUGIN}")
    # A short path: the socket's must fit in 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="onc-dockerd-", dir="/tmp"))
    plugins = root / "config" / "cli-plugins"
    plugins.mkdir(parents=True)
    (plugins / "docker-compose").symlink_to(COMPOSE_PLUGIN)
    env = {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(root),
        "DOCKER_HOST": f"unix://{root}/docker.sock",
        "DOCKER_CONFIG": str(root / "config"),
    }
    with open(root / "dockerd.log", "wb") as log:
        daemon = subprocess.Popen(
            [
                "dockerd",
                f"--data-root={root}/data",
                f"--exec-root={root}/exec",
                f"--pidfile={root}/dockerd.pid",
                f"-H=unix://{root}/docker.sock",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    engine = Engine(root=root, env=env)
    try:
        deadline = time.monotonic() + 60
        while engine.docker("version", check=False, timeout=10).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.fail("dockerd did not start:\n" + (root / "dockerd.log").read_text())
            time.sleep(0.5)
        yield engine
    finally:
        running = engine.docker("ps", "-aq", check=False).stdout.split()
        if running:
            engine.docker("rm", "-f", "-v", *running, check=False)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        # dockerd leaves its network namespace bind mount behind.
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted((m for m in mounts if m.startswith(f"{root}/")), reverse=True):
            subprocess.run(["umount", mount], capture_output=True, check=False)
        shutil.rmtree(root, ignore_errors=True)


def rootfs(name: str, *mmdebstrap_args: str) -> Path:
    """A Debian 12 root filesystem tarball, cached by a digest of what goes into it."""
    hook = (
        'mkdir -p "$1/etc/ssl/certs" "$1/usr/local/share/ca-certificates" && '
        f'cp {HOST_CA} "$1/etc/ssl/certs/ca-certificates.crt" && '
        # Kept by update-ca-certificates when a build installs ca-certificates.
        f'cp {HOST_CA} "$1/usr/local/share/ca-certificates/host-ca-bundle.crt"'
    )
    args = ["--variant=minbase", *mmdebstrap_args, f"--customize-hook={hook}"]
    digest = hashlib.sha256(json.dumps([args, MIRROR]).encode())
    digest.update(HOST_CA.read_bytes())
    tarball = CACHE / "rootfs" / f"{name}-{digest.hexdigest()[:16]}.tar"
    if not tarball.exists():
        tarball.parent.mkdir(parents=True, exist_ok=True)
        partial = tarball.with_suffix(".partial")
        subprocess.run(
            ["mmdebstrap", "--quiet", "--format=tar", *args, "bookworm", str(partial), MIRROR],
            check=True,
            capture_output=True,
            timeout=600,
        )
        partial.rename(tarball)
    return tarball


@pytest.fixture(scope="session")
def images(engine: Engine) -> Engine:
    """The base image made here, then our Dockerfile built unchanged (both targets)."""
    engine.docker("import", str(rootfs("debian-bookworm-minbase")), "debian:bookworm-slim")
    engine.docker("build", "--quiet", "--tag", IMAGE, str(ROOT), timeout=900)
    engine.docker("build", "--quiet", "--target", "emulator", "--tag", EMULATOR_IMAGE, str(ROOT))
    return engine


@pytest.fixture(scope="session")
def postgres_image(engine: Engine) -> str:
    """The stand-in for the compose file's postgres:16-alpine, from Debian's postgresql."""
    tarball = rootfs("debian-bookworm-postgresql", "--include=postgresql-15")
    engine.docker("import", str(tarball), "onc-ci/postgresql-rootfs:latest")
    engine.docker("build", "--quiet", "--tag", "postgres:16-alpine", str(HERE / "postgres"))
    return "postgres:16-alpine"


@pytest.fixture
def network(images: Engine) -> Iterator[str]:
    """A network with the emulator on it as `emulator`, its ONC port published for checks."""
    name = "onc-image-test"
    images.docker("network", "create", name)
    images.docker(
        "run", "--detach", "--name=emulator", f"--network={name}", "--network-alias=emulator",
        "--publish=127.0.0.1::8080", *HARDENED, EMULATOR_IMAGE,
    )  # fmt: skip
    images.wait_healthy("emulator", 60)
    yield name
    images.docker("rm", "--force", "--volumes", "emulator", check=False)
    images.docker("network", "rm", name, check=False)


def http_get(url: str, timeout: float = 5) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return reply.status, reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def http_json(url: str, method: str = "GET", body: Any = None) -> Any:
    request = urllib.request.Request(
        url,
        method=method,
        data=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as reply:
        return json.loads(reply.read())


def wait_until(predicate: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(1)
    pytest.fail(f"never saw {what}")

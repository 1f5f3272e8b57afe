"""The deployment files: Dockerfile (hadolint, healthcheck), compose file, systemd unit."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from pipeline.settings import load_settings

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
UNIT = ROOT / "deploy" / "systemd" / "onc-pipeline.service"
VENV_BIN = Path(sys.executable).parent


def tool(name: str) -> str:
    """A CLI tool from the venv or PATH; missing is a failure in CI and a skip elsewhere."""
    found = shutil.which(name, path=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed")
        pytest.skip(f"{name} is not installed")
    return found


# -- Dockerfile ---------------------------------------------------------------------------


def instructions() -> list[tuple[str, str]]:
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def test_hadolint_is_clean() -> None:
    result = subprocess.run(
        [tool("hadolint"), "--no-color", "--format", "json", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout) == []


def test_dockerfile_shape() -> None:
    ins = instructions()
    froms = [rest for kw, rest in ins if kw == "FROM"]
    # One image from outside, Debian's (rebuilt from Debian's packages in tests/container/);
    # every other stage builds on a stage of this file; the harvester is the default target.
    stages = {f.split(" AS ")[1] for f in froms}
    assert froms[0] == "debian:bookworm-slim AS python"
    assert all(f.split(" AS ")[0] in stages for f in froms[1:])
    assert froms[-1].endswith(" AS runtime")
    runs = " ".join(rest for kw, rest in ins if kw == "RUN")
    assert "--requirement requirements.lock" in runs
    assert "pip uninstall --yes pip setuptools" in runs, "no pip in the runtime stage"
    users = [rest for kw, rest in ins if kw == "USER"]
    assert users
    assert not users[-1].startswith(("0", "root"))
    single = {kw: rest for kw, rest in ins}
    assert single["STOPSIGNAL"] == "SIGTERM"
    assert json.loads(single["ENTRYPOINT"]) == ["onc-pipeline"]
    assert json.loads(single["CMD"]) == ["run", "--config", "/etc/onc-pipeline/config.yaml"]
    env = " ".join(rest for kw, rest in ins if kw == "ENV")
    assert "ONC_PIPELINE_LOGGING__FORMAT=json" in env
    assert "ONC_PIPELINE_OPS__BIND=0.0.0.0:9108" in env
    volumes = json.loads(single["VOLUME"])
    assert {"/var/lib/onc-pipeline/state", "/var/lib/onc-pipeline/data"} <= set(volumes)
    assert "HEALTHCHECK" in single


def locked() -> dict[str, str]:
    """requirements.lock as {normalised name: version}."""
    pins: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert re.fullmatch(r"[A-Za-z0-9._-]+==[A-Za-z0-9.+!-]+", line), f"not a pin: {line}"
            key = canonicalize_name(name)
            assert key not in pins, f"pinned twice: {name}"
            pins[key] = version
    return pins


def test_lock_pins_every_dependency_of_pyproject_within_its_range() -> None:
    """The image installs the lock with --no-deps (and `pip check` fails the build on a
    missing transitive dependency); this keeps it in step with pyproject.toml."""
    pins = locked()
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for spec in map(Requirement, declared):
        key = canonicalize_name(spec.name)
        assert key in pins, f"{spec.name} is a dependency but not in requirements.lock"
        assert spec.specifier.contains(pins[key]), f"{spec.name}=={pins[key]} is not {spec}"
        for extra in spec.extras:  # pydantic-settings[yaml] needs PyYAML
            assert extra != "yaml" or "pyyaml" in pins


def healthcheck_command() -> list[str]:
    """The harvester's (the last stage's) HEALTHCHECK."""
    rest = [rest for kw, rest in instructions() if kw == "HEALTHCHECK"][-1]
    command: list[str] = json.loads(rest[rest.index("CMD") + 3 :].strip())
    return command


def _serve_healthz(status: int) -> tuple[Any, int]:
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize(("answer", "expected"), [(200, 0), (503, 1)])
def test_healthcheck_one_liner_probes_healthz(answer: int, expected: int) -> None:
    server, port = _serve_healthz(answer)
    try:
        command = healthcheck_command()
        assert command[0] == "python"
        result = subprocess.run(
            [sys.executable, *command[1:]],
            env={"ONC_PIPELINE_OPS__BIND": f"0.0.0.0:{port}", "PATH": os.environ["PATH"]},
            capture_output=True,
            check=False,
        )
    finally:
        server.shutdown()
        server.server_close()
    # urlopen raises on 503, which exits non-zero as well: either way unhealthy.
    assert (result.returncode == 0) == (expected == 0), result.stderr


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests", "demo-data"} <= set(ignored)
    assert "pipeline" not in ignored
    assert "config" not in ignored


# -- docker compose ---------------------------------------------------------------------------


def stage_healthchecks() -> set[str]:
    """The Dockerfile stages that declare a HEALTHCHECK."""
    stages, stage = set(), ""
    for keyword, rest in instructions():
        if keyword == "FROM":
            stage = rest.rpartition(" AS ")[2]
        elif keyword == "HEALTHCHECK":
            stages.add(stage)
    return stages


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return data


def test_compose_references_resolve() -> None:
    doc = compose()
    services: dict[str, Any] = doc["services"]
    volumes = set(doc.get("volumes") or {})
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, name
        assert svc.get("restart") == "unless-stopped", name
        for mount in svc.get("volumes", []):
            source = mount.split(":", 1)[0]
            assert source in volumes, f"{name}: unknown volume {source}"
        deps = svc.get("depends_on", {})
        for dep, cond in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            assert cond["condition"] == "service_healthy"
            target = (services[dep].get("build") or {}).get("target")
            assert "healthcheck" in services[dep] or target in stage_healthchecks(), dep
        for secret in svc.get("secrets", []):
            assert secret in doc["secrets"]
        for config in svc.get("configs", []):
            assert config["source"] in doc["configs"]
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
        if "postgres" not in name:
            assert "no-new-privileges:true" in svc.get("security_opt", []), name
    # Built images: one build per tag.
    tags = [svc["image"] for svc in services.values() if "build" in svc]
    assert len(tags) == len(set(tags)), tags
    for entry in [*doc["secrets"].values(), *doc["configs"].values()]:
        assert (ROOT / entry["file"]).is_file(), entry["file"]


def test_compose_default_profile_is_the_offline_demo() -> None:
    services = compose()["services"]
    default = {name for name, svc in services.items() if not svc.get("profiles")}
    assert default == {"emulator", "pipeline"}
    emulator = services["emulator"]
    assert emulator["build"]["target"] == "emulator"
    assert emulator["command"][:2] == ["--host", "0.0.0.0"]
    assert "volumes" not in emulator
    pipeline = services["pipeline"]
    assert pipeline["stop_grace_period"] == "45s"
    assert pipeline["configs"][0]["target"] == "/etc/onc-pipeline/config.yaml"
    assert {m.split(":")[1] for m in pipeline["volumes"]} == {
        "/var/lib/onc-pipeline/state",
        "/var/lib/onc-pipeline/data",
    }


def test_compose_postgres_profile() -> None:
    services = compose()["services"]
    assert services["postgres"]["profiles"] == ["postgres"]
    variant = services["pipeline-pg"]
    assert variant["profiles"] == ["postgres"]
    assert variant["environment"]["ONC_PIPELINE_STATE__URL"].startswith("postgresql://")
    assert "postgres" in variant["depends_on"]
    assert variant["deploy"]["replicas"] == 2, "the scale-out profile runs two replicas"
    assert int(variant["environment"]["ONC_PIPELINE_DAEMON__MAX_CONCURRENT_PASSES"]) > 0
    # Replicas cannot share one host port: a range gives each its own.
    assert all("-" in port.split(":")[1] for port in variant["ports"])


def test_compose_demo_config_is_valid_and_targets_the_emulator_service() -> None:
    settings = load_settings(ROOT / "config" / "compose-demo.yaml", environ={}, secrets_dirs=[])
    assert settings.onc.base_url.startswith("http://emulator:8080")
    assert settings.registry.base_url.startswith("http://emulator:8081")
    assert settings.ops.bind == "0.0.0.0:9108"
    assert settings.logging.format == "json"
    assert settings.state.url.startswith("sqlite:////var/lib/onc-pipeline/state/")
    kinds = {s.kind for s in settings.streams}
    assert kinds == {"scalardata", "rawdata", "archivefile", "dataproduct"}
    token = (ROOT / "deploy" / "compose" / "demo-onc-token").read_text().strip()
    assert settings.onc.token is not None
    assert settings.onc.token.get_secret_value() == token


# -- systemd ----------------------------------------------------------------------------------


def unit_directives() -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def test_unit_directives() -> None:
    d = unit_directives()
    assert d["Type"] == ["notify"]
    assert d["Restart"] == ["on-failure"]
    assert d["DynamicUser"] == ["yes"]
    assert d["StateDirectory"] == ["onc-pipeline"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["PrivateTmp"] == ["yes"]
    assert d["ProtectHome"] == ["yes"]
    assert d["ReadWritePaths"] == ["/var/lib/onc-pipeline"]
    assert d["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
    creds = {c.split(":", 1)[0] for c in d["LoadCredential"]}
    assert creds == {"onc_token", "registry_password"}
    assert "ONC_PIPELINE_LOGGING__FORMAT=json" in d["Environment"]
    # Above the daemon's 20 s drain grace, with room to close files and the store.
    stop = re.fullmatch(r"(\d+)s", d["TimeoutStopSec"][0])
    assert stop is not None
    assert int(stop[1]) > 20
    watchdog = re.fullmatch(r"(\d+)s", d["WatchdogSec"][0])
    assert watchdog is not None
    assert int(watchdog[1]) >= 10


def test_systemd_analyze_verify_is_clean(tmp_path: Path) -> None:
    analyze = tool("systemd-analyze")
    # verify checks that ExecStart's binary exists: point it at this environment's script,
    # keeping everything else of the unit as shipped.
    binary = VENV_BIN / "onc-pipeline"
    assert binary.exists()
    text = UNIT.read_text()
    shipped = "ExecStart=/opt/onc-pipeline/bin/onc-pipeline "
    assert text.count(shipped) == 1
    copy = tmp_path / UNIT.name
    copy.write_text(text.replace(shipped, f"ExecStart={binary} "))
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        check=False,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "", result.stderr

"""Issue 19, items 1 and 3: every configuration problem at once; secrets only where needed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline.exceptions import ConfigError
from pipeline.settings import load_settings

STREAM = {"name": "ctd", "kind": "scalardata", "location_code": "BACAX",
          "device_category_code": "CTD"}  # fmt: skip


def problems(data: dict[str, Any], tmp_path: Path, **kwargs: Any) -> list[tuple[str, str]]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_settings(path, environ={}, secrets_dirs=[], **kwargs)
    return info.value.problems


def test_a_duplicate_name_is_reported_beside_a_broken_stream(tmp_path: Path) -> None:
    found = problems(
        {
            "onc": {"token": "t0k3n-value", "max_concurency": 2},
            "streams": [{**STREAM, "cadence": "fast"}, {**STREAM, "kind": "rawdata"}],
        },
        tmp_path,
    )
    paths = [path for path, _ in found]
    assert paths == ["onc.max_concurency", "streams[0].cadence", "streams[1].name"], found
    assert found[2][1] == 'stream name "ctd" is also streams[0]\'s; stream names must be unique'


def test_a_missing_registry_password_does_not_hide_the_missing_token(tmp_path: Path) -> None:
    found = dict(
        problems({"registry": {"enabled": True, "email": "a@b.c"}, "streams": [STREAM]}, tmp_path)
    )
    assert set(found) == {"onc.token", "registry.password"}, found
    assert "registry_password" in found["registry.password"]
    assert "dry_run: true" in found["registry.password"]


def test_secrets_are_not_required_by_commands_that_call_no_api(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"registry": {"enabled": True}, "streams": [STREAM]}))
    settings = load_settings(path, environ={}, secrets_dirs=[], need_secrets=False)
    assert settings.onc.token is None
    assert settings.streams[0].name == "ctd"


@pytest.mark.parametrize(
    ("stream", "path", "message"),
    [
        ({"start": "2026-01-01T00:00:00"}, "streams[0].start",
         'expected a UTC time ending in Z, like "2026-01-01T00:00:00Z", got "2026-01-01T00:00:00"'),
        ({"window": "7m"}, "streams[0].window",
         "expected a window between 1m and 1d that divides a day evenly, got 7m"),
    ],
)  # fmt: skip
def test_messages_speak_the_config_language(
    tmp_path: Path, stream: dict[str, Any], path: str, message: str
) -> None:
    found = problems({"onc": {"token": "t0k3n-value"}, "streams": [{**STREAM, **stream}]}, tmp_path)
    assert found == [(path, message)]

"""Settings: sources and their precedence, and every configuration error message."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline import settings as settings_module
from pipeline.exceptions import ConfigError
from pipeline.settings import (
    ERDDAP_ID_RE,
    DataProductStream,
    Settings,
    TimeSeriesStream,
    load_settings,
    masked_dump,
    parse_duration,
)

REPO = Path(__file__).resolve().parents[2]
STREAM = {
    "name": "bacax-ctd",
    "kind": "scalardata",
    "location_code": "BACAX",
    "device_category_code": "CTD",
}


@pytest.fixture
def write_config(tmp_path: Path) -> Any:
    def write(data: dict[str, Any] | str) -> Path:
        path = tmp_path / "config.yaml"
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
        return path

    return write


def load(
    path: Path | None, env: dict[str, str] | None = None, secrets: Path | None = None
) -> Settings:
    return load_settings(path, environ=env or {}, secrets_dirs=[secrets] if secrets else [])


def problems_of(path: Path | None, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load(path, env)
    return info.value.problems


def test_defaults_without_a_file() -> None:
    settings = load(None)
    assert settings.onc.base_url == "https://data.oceannetworks.ca"
    assert settings.onc.max_concurrency == 3
    assert settings.streams == []


def test_shipped_configs_are_valid() -> None:
    demo = load(REPO / "config" / "demo.yaml")
    assert {s.kind for s in demo.streams} == {"scalardata", "rawdata", "archivefile", "dataproduct"}
    example = load(REPO / "config" / "example.yaml", {"ONC_TOKEN": "t" * 36})
    assert example.streams[0].lookback == timedelta(minutes=15)


def test_precedence_file_then_env_then_secret_file(write_config: Any, tmp_path: Path) -> None:
    path = write_config({"onc": {"token": "from-file", "max_concurrency": 2}, "streams": [STREAM]})
    assert load(path).onc.token is not None
    assert load(path).onc.token.get_secret_value() == "from-file"

    env = {"ONC_PIPELINE_ONC__TOKEN": "from-env", "ONC_PIPELINE_ONC__MAX_CONCURRENCY": "4"}
    by_env = load(path, env)
    assert by_env.onc.token is not None
    assert by_env.onc.token.get_secret_value() == "from-env"
    assert by_env.onc.max_concurrency == 4

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "onc_token").write_text("from-secret-file\n")
    by_secret = load(path, env, secrets)
    assert by_secret.onc.token is not None
    assert by_secret.onc.token.get_secret_value() == "from-secret-file"
    assert by_secret.onc.max_concurrency == 4


def test_onc_token_convention_sits_below_prefixed_variable(write_config: Any) -> None:
    path = write_config({"onc": {"token": "from-file"}, "streams": [STREAM]})
    plain = load(path, {"ONC_TOKEN": "official-client-style"})
    assert plain.onc.token is not None
    assert plain.onc.token.get_secret_value() == "official-client-style"
    both = load(path, {"ONC_TOKEN": "a-token", "ONC_PIPELINE_ONC__TOKEN": "b-token"})
    assert both.onc.token is not None
    assert both.onc.token.get_secret_value() == "b-token"


def test_systemd_credentials_directory_is_a_secret_source(
    write_config: Any, tmp_path: Path
) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "registry_password").write_text("hunter22")
    settings = load_settings(None, environ={"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.registry.password is not None
    assert settings.registry.password.get_secret_value() == "hunter22"


def test_masked_dump_hides_every_secret(write_config: Any) -> None:
    path = write_config(
        {
            "onc": {"token": "tok-12345"},
            "registry": {"password": "pw-12345", "email": "a@b.c"},
            "output": {"erddap_flag_key": "flag-12345"},
            "streams": [STREAM],
        }
    )
    text = yaml.safe_dump(masked_dump(load(path)))
    for secret in ("tok-12345", "pw-12345", "flag-12345"):
        assert secret not in text
    assert "********" in text
    assert "streams" in text


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30),
        ("5m", 300),
        ("1.5h", 5400),
        ("2d", 172800),
        ("PT5M", 300),
        ("P1DT1H", 90000),
        (45, 45),
        ("250ms", 0.25),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text).total_seconds() == seconds


CASES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "bad duration",
        {"streams": [{**STREAM, "cadence": "fast"}]},
        "streams[0].cadence",
        'expected a duration like "30s" or "5m", got "fast"',
    ),
    (
        "typo in section",
        {"onc": {"max_concurency": 3}},
        "onc.max_concurency",
        "unknown key (check the spelling)",
    ),
    ("typo at top", {"stream": []}, "stream", "unknown key (check the spelling)"),
    (
        "typo in stream",
        {"streams": [{**STREAM, "cadance": "5m"}]},
        "streams[0].cadance",
        "unknown key (check the spelling)",
    ),
    (
        "unknown kind",
        {"streams": [{**STREAM, "kind": "wat"}]},
        "streams[0]",
        'unknown kind "wat"; expected one of scalardata, rawdata, archivefile, dataproduct',
    ),
    (
        "missing kind",
        {"streams": [{"name": "x", "device_code": "D"}]},
        "streams[0]",
        'missing "kind"; expected one of scalardata, rawdata, archivefile, dataproduct',
    ),
    (
        "missing name",
        {"streams": [{k: v for k, v in STREAM.items() if k != "name"}]},
        "streams[0].name",
        "required",
    ),
    (
        "both addressings",
        {"streams": [{**STREAM, "device_code": "D"}]},
        "streams[0]",
        "give either location_code and device_category_code, or device_code",
    ),
    (
        "half a location",
        {"streams": [{"name": "x", "kind": "rawdata", "location_code": "L"}]},
        "streams[0]",
        "give either location_code and device_category_code, or device_code",
    ),
    (
        "concurrency too high",
        {"onc": {"max_concurrency": 100}},
        "onc.max_concurrency",
        "Input should be less than or equal to 16",
    ),
    (
        "bad url",
        {"onc": {"base_url": "data.oceannetworks.ca"}},
        "onc.base_url",
        'expected an http(s) URL, got "data.oceannetworks.ca"',
    ),
    (
        "bad state url",
        {"state": {"url": "mysql://x"}},
        "state.url",
        'expected sqlite:///PATH, postgresql://... or memory://, got "mysql://x"',
    ),
    (
        "bad bind",
        {"ops": {"bind": "9108"}},
        "ops.bind",
        'expected "host:port" like "127.0.0.1:9108", got "9108"',
    ),
    (
        "bad window",
        {"streams": [{**STREAM, "window": "7m"}]},
        "streams[0].window",
        "expected a window between 1m and 1d that divides a day evenly, got 7m",
    ),
    (
        "dpo option",
        {
            "streams": [
                {
                    "name": "p",
                    "kind": "dataproduct",
                    "device_code": "D",
                    "data_product_code": "TSSD",
                    "extension": "csv",
                    "options": {"qualityControl": 1},
                }
            ]
        },
        "streams[0].options",
        "option names start with dpo_, got qualityControl",
    ),
    (
        "duplicate names",
        {"streams": [STREAM, STREAM]},
        "streams[1].name",
        'stream name "bacax-ctd" is also streams[0]\'s; stream names must be unique',
    ),
    (
        "bad stream name",
        {"streams": [{**STREAM, "name": "Bad Name"}]},
        "streams[0].name",
        "String should match pattern '^[a-z0-9][a-z0-9_.\\-]*$'",
    ),
    (
        "bad format",
        {"streams": [{**STREAM, "formats": ["xlsx"]}]},
        "streams[0].formats[0]",
        "Input should be 'jsonl', 'netcdf', 'csv', 'rawtext', 'jsonlcsv' or 'parquet'",
    ),
    (
        "registry without password",
        {"registry": {"enabled": True, "email": "a@b.c"}},
        "registry.password",
        "required when registry.enabled is true: set ONC_PIPELINE_REGISTRY__PASSWORD or the "
        "secret file registry_password; or set registry.dry_run: true",
    ),
    (
        "naive start",
        {"streams": [{**STREAM, "start": "2026-01-01T00:00:00"}]},
        "streams[0].start",
        'expected a UTC time ending in Z, like "2026-01-01T00:00:00Z", got "2026-01-01T00:00:00"',
    ),
]


@pytest.mark.parametrize(("case", "data", "path", "message"), CASES, ids=[c[0] for c in CASES])
def test_each_error_names_path_and_reason(
    write_config: Any, case: str, data: dict[str, Any], path: str, message: str
) -> None:
    data = {
        "onc": {"token": "t0k3n-value", **data.get("onc", {})},
        **{k: v for k, v in data.items() if k != "onc"},
    }
    assert (path, message) in problems_of(write_config(data))


def test_three_mistakes_give_three_messages(write_config: Any) -> None:
    path = write_config(
        {
            "onc": {"token": "x" * 10, "max_concurency": 3},
            "streams": [{**STREAM, "cadence": "fast"}, {**STREAM, "name": "two", "kind": "wat"}],
        }
    )
    assert len(problems_of(path)) == 3


def test_missing_token_is_an_error_when_streams_exist(write_config: Any) -> None:
    assert tuple(p for p, _ in problems_of(write_config({"streams": [STREAM]}))) == ("onc.token",)


@pytest.mark.parametrize(
    ("streams", "output", "expected"),
    [
        (
            [{**STREAM, "kind": "rawdata", "formats": ["netcdf"]}],
            {},
            (
                "streams[0].formats[0]",
                "rawdata cannot be written as netcdf; use jsonl, rawtext, jsonlcsv",
            ),
        ),
        (
            [{**STREAM, "formats": ["jsonl", "rawtext"]}],
            {},
            (
                "streams[0].formats[1]",
                "scalardata cannot be written as rawtext; use jsonl, netcdf, csv, parquet",
            ),
        ),
        (
            [{**STREAM, "kind": "rawdata", "formats": ["jsonl", "parquet"]}],
            {},
            (
                "streams[0].formats[1]",
                "rawdata cannot be written as parquet; use jsonl, rawtext, jsonlcsv",
            ),
        ),
        (
            [{**STREAM, "window": "2h"}],
            {"partition": "hourly"},
            (
                "streams[0].window",
                "a 2h window does not fit the hourly output partitions; "
                "use a window that divides 1h",
            ),
        ),
        (
            [STREAM, {**STREAM, "name": "again"}],
            {},
            (
                "streams[1].dataset_id",
                'dataset id "onc_bacax_ctd" is also stream "bacax-ctd"\'s; '
                "give one of them its own dataset_id",
            ),
        ),
    ],
    ids=[
        "raw-as-netcdf",
        "scalar-as-rawtext",
        "raw-as-parquet",
        "window-straddles-partition",
        "shared-dataset",
    ],
)
def test_cross_section_problems(
    write_config: Any,
    streams: list[dict[str, Any]],
    output: dict[str, Any],
    expected: tuple[str, str],
) -> None:
    path = write_config({"onc": {"token": "t0k3n"}, "streams": streams, "output": output})
    assert expected in problems_of(path)


def test_registry_harvest_for_unknown_dataset(write_config: Any) -> None:
    path = write_config(
        {
            "onc": {"token": "t0k3n"},
            "streams": [STREAM],
            "registry": {"harvests": {"onc_nope": "id"}},
        }
    )
    [(where, message)] = problems_of(path)
    assert where == "registry.harvests.onc_nope"
    assert "onc_bacax_ctd" in message


def test_env_errors_use_the_same_paths() -> None:
    assert problems_of(None, {"ONC_PIPELINE_ONC__MAX_RATE_PER_S": "zero"}) == [
        ("onc.max_rate_per_s", "Input should be a valid number, unable to parse string as a number")
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("onc: [1, 2", "at line"), ("- just\n- a list\n", "expected a mapping"), ("", None)],
)
def test_yaml_level_problems(write_config: Any, text: str, fragment: str | None) -> None:
    path = write_config(text)
    if fragment is None:
        assert load(path).streams == []
    else:
        [(_, message)] = problems_of(path)
        assert fragment in message
        assert str(path) in message


def test_a_yaml_mistake_is_placed_where_it_is(write_config: Any) -> None:
    # Read fast by libyaml, a broken file is read again by the Python loader for its message:
    # libyaml would place this one at the start of line 2, after the end of the file.
    [(_, message)] = problems_of(write_config("onc: [1, 2"))
    assert "at line 1, column 11: expected ',' or ']', but got '<stream end>'" in message


def test_both_yaml_loaders_read_the_example_alike() -> None:
    text = (Path(__file__).resolve().parents[2] / "config" / "example.yaml").read_text()
    assert yaml.load(text, Loader=settings_module._FAST_LOADER) == yaml.safe_load(text)


def test_missing_file(tmp_path: Path) -> None:
    [(_, message)] = problems_of(tmp_path / "nope.yaml")
    assert "does not exist" in message


def test_dataset_id_defaults() -> None:
    settings = load(
        None,
        {
            "ONC_TOKEN": "t0k3n",
            "ONC_PIPELINE_STREAMS": '[{"name": "a", "kind": "rawdata", "device_code": "BPR_889"},'
            '{"name": "b", "kind": "scalardata", "location_code": "CRIP.C1", '
            '"device_category_code": "CTD"}]',
        },
    )
    assert [s.resolved_dataset_id for s in settings.streams] == ["onc_bpr889", "onc_cripc1_ctd"]


def test_window_workers_auto_a_count_or_a_clear_error(write_config: Any) -> None:
    assert load(None).daemon.window_workers == "auto"
    assert load(write_config({"daemon": {"window_workers": 3}})).daemon.window_workers == 3
    env = {"ONC_PIPELINE_DAEMON__WINDOW_WORKERS": "0"}
    assert load(None, env).daemon.window_workers == 0
    for bad in (-1, 65, "many"):
        found = problems_of(write_config({"daemon": {"window_workers": bad}}))
        assert found, bad
        assert all(path.startswith("daemon.window_workers") for path, _ in found), found


@pytest.mark.parametrize("bad", ["bacax.ctd", "bacax-ctd", "9bacax", "_bacax"])
def test_dataset_ids_follow_erddaps_rule(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "onc": {"token": "t"},
                "streams": [
                    {"name": "ok", "kind": "scalardata", "device_code": "X", "dataset_id": "a_1"},
                    {"name": "s", "kind": "scalardata", "device_code": "X", "dataset_id": bad},
                ],
            }
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={}, secrets_dirs=[])
    ((where, message),) = caught.value.problems
    assert where == "streams[1].dataset_id"
    assert "not a valid ERDDAP datasetID" in message
    assert "[A-Za-z][A-Za-z0-9_]*" in message


def test_default_dataset_ids_are_valid_erddap_ids() -> None:
    weird = TimeSeriesStream(
        name="w", kind="scalardata", location_code="9.A-b", device_category_code="C-T.D"
    )
    product = DataProductStream(
        name="p", kind="dataproduct", device_code="1-x", data_product_code="L.F-2", extension="t"
    )
    for stream in (weird, product):
        assert ERDDAP_ID_RE.match(stream.resolved_dataset_id), stream.resolved_dataset_id


@pytest.mark.parametrize(
    ("formats", "csv_id", "parquet_id"),
    [
        (["parquet"], "ctd", "ctd"),
        (["jsonl", "parquet"], "ctd", "ctd"),
        (["netcdf", "parquet"], "ctd", "ctd_parquet"),
        (["csv", "parquet"], "ctd", "ctd_parquet"),
        (["netcdf", "csv", "parquet"], "ctd_csv", "ctd_parquet"),
    ],
)
def test_parquet_is_a_scalardata_format_with_its_own_erddap_id(
    formats: list[str], csv_id: str, parquet_id: str
) -> None:
    stream = TimeSeriesStream.model_validate(
        {
            "name": "s",
            "kind": "scalardata",
            "device_code": "X",
            "dataset_id": "ctd",
            "formats": formats,
        }
    )
    assert (stream.csv_dataset_id, stream.parquet_dataset_id) == (csv_id, parquet_id)


def test_streams_without_formats_publish_what_erddap_reads() -> None:
    scalar = TimeSeriesStream(name="s", kind="scalardata", device_code="X")
    raw = TimeSeriesStream(name="r", kind="rawdata", device_code="X")
    assert (scalar.formats, raw.formats) == (["netcdf"], ["jsonlcsv"])
    lossless = TimeSeriesStream(name="l", kind="rawdata", device_code="X", formats=["jsonl"])
    assert lossless.formats == ["jsonl"]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ({"dataset_id": "Bacax"}, {"dataset_id": "bacax"}),  # differ only in case
        # The second's id is the first's CSV view (`<id>_csv` next to NetCDF).
        ({"dataset_id": "ctd", "formats": ["netcdf", "csv"]}, {"dataset_id": "CTD_csv"}),
        # ... or its Parquet view (`<id>_parquet` next to NetCDF or CSV).
        ({"dataset_id": "ctd", "formats": ["csv", "parquet"]}, {"dataset_id": "CTD_parquet"}),
    ],
)
def test_erddap_ids_must_differ_in_more_than_case(
    tmp_path: Path, first: dict[str, Any], second: dict[str, Any]
) -> None:
    path = tmp_path / "c.yaml"
    base = {"kind": "scalardata", "device_code": "X"}
    path.write_text(
        yaml.safe_dump(
            {
                "onc": {"token": "t"},
                "streams": [{"name": "a", **base, **first}, {"name": "b", **base, **second}],
            }
        )
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={}, secrets_dirs=[])
    ((where, message),) = caught.value.problems
    assert where == "streams[1].dataset_id"
    assert "differ in more than case" in message

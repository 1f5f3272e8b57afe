"""Settings: pydantic models loaded from a YAML file, environment variables and secret files.

Precedence, lowest first: built-in defaults < YAML file < `ONC_TOKEN` < `ONC_PIPELINE_*` variables
< secret files (`/run/secrets/<name>`, systemd `$CREDENTIALS_DIRECTORY/<name>`). Every problem
in a configuration is collected and raised at once as a ConfigError with its YAML path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)
from pydantic_settings.sources.utils import parse_env_vars

from pipeline.exceptions import ConfigError

ENV_PREFIX = "ONC_PIPELINE_"
DEFAULT_SECRETS_DIRS: tuple[Path, ...] = (Path("/run/secrets"),)

# Secret file name -> where its content goes. Short names suit Docker secrets and systemd
# LoadCredential= alike: `LoadCredential=onc_token:/etc/onc-pipeline/token`.
SECRET_FILES: Mapping[str, tuple[str, str]] = {
    "onc_token": ("onc", "token"),
    "registry_password": ("registry", "password"),
    "registry_email": ("registry", "email"),
    "erddap_flag_key": ("output", "erddap_flag_key"),
}

_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)\s*$")
_ISO_DURATION_RE = re.compile(
    r"^P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$"
)
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: object) -> timedelta:
    """Parse "30s", "5m", "1.5h", "2d", "PT5M" or a number of seconds into a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.strip()
        if match := _DURATION_RE.match(text):
            return timedelta(seconds=float(match[1]) * _UNIT_SECONDS[match[2]])
        iso = _ISO_DURATION_RE.match(text.upper())
        if iso and text.upper() not in ("P", "PT") and any(iso.groupdict().values()):
            parts = {k: float(v) if v else 0.0 for k, v in iso.groupdict().items()}
            return timedelta(
                days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"]
            )
    raise PydanticCustomError(
        "duration",
        'expected a duration like "30s" or "5m", got {got}',
        {"got": _show(value)},
    )


def _show(value: object) -> str:
    return f'"{value}"' if isinstance(value, str) else repr(value)


Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
Code = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
StreamName = Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[a-z0-9][a-z0-9_.\-]*$")]


class _Section(BaseModel):
    """Base of every settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class OncSettings(_Section):
    """How to reach the Oceans API, and how politely."""

    base_url: str = "https://data.oceannetworks.ca"
    token: SecretStr | None = None
    connect_timeout: Duration = timedelta(seconds=10)
    read_timeout: Duration = timedelta(seconds=60)
    total_timeout: Duration = timedelta(minutes=10)
    max_concurrency: int = Field(default=3, ge=1, le=16)
    max_rate_per_s: float = Field(default=2.0, gt=0, le=50)
    max_attempts: int = Field(default=8, ge=1, le=100)
    backoff_base: Duration = timedelta(seconds=1)
    backoff_max: Duration = timedelta(minutes=2)
    retry_deadline: Duration = timedelta(minutes=30)
    maintenance_max_wait: Duration = timedelta(hours=6)
    product_poll_min: Duration = timedelta(seconds=1)
    product_poll_max: Duration = timedelta(seconds=10)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise PydanticCustomError(
                "url", "expected an http(s) URL, got {got}", {"got": _show(value)}
            )
        return value.rstrip("/")


class RegistrySettings(_Section):
    """The IOOS Catalog Registry: credentials, harvest ids per dataset, debouncing."""

    enabled: bool = False
    base_url: str = "https://registry.ioos.us"
    email: str | None = None
    password: SecretStr | None = None
    harvests: dict[str, str] = Field(default_factory=dict)
    debounce: Duration = timedelta(minutes=5)
    max_interval: Duration = timedelta(hours=1)
    dry_run: bool = False

    @model_validator(mode="after")
    def _credentials_when_enabled(self) -> RegistrySettings:
        if self.enabled and not self.dry_run and (not self.email or self.password is None):
            raise PydanticCustomError(
                "registry_credentials",
                "registry.enabled needs email and password (or dry_run: true)",
            )
        return self


class StateSettings(_Section):
    """Where the harvest state lives: `sqlite:///path` (default) or `postgresql://...`."""

    url: str = "sqlite:///state/onc-pipeline.db"

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not re.match(r"^(sqlite:///.+|memory://.*|postgres(ql)?://.+)$", value):
            raise PydanticCustomError(
                "state_url",
                "expected sqlite:///PATH, postgresql://... or memory://, got {got}",
                {"got": _show(value)},
            )
        return value


OutputFormat = Literal["jsonl", "netcdf", "csv", "rawtext"]


class OutputSettings(_Section):
    """Where harvested files land and how ERDDAP is told about them."""

    root: Path = Path("data")
    partition: Literal["hourly", "daily", "monthly"] = "daily"
    erddap_flag_dir: Path | None = None
    erddap_url: str | None = None
    erddap_flag_key: SecretStr | None = None
    attributes: dict[str, str] = Field(default_factory=dict)


class OpsSettings(_Section):
    """The health and metrics HTTP server."""

    enabled: bool = True
    bind: str = "127.0.0.1:9108"

    @field_validator("bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
            raise PydanticCustomError(
                "bind",
                'expected "host:port" like "127.0.0.1:9108", got {got}',
                {"got": _show(value)},
            )
        return value


class DaemonSettings(_Section):
    """How the daemon shares work out and shuts down."""

    shutdown_grace: Duration = timedelta(seconds=20)
    # A stream's pass holds a lease this long, renewed every third of it; a crashed
    # instance's streams are taken over by another one (PostgreSQL) after at most this.
    lease_ttl: Duration = timedelta(seconds=60)
    # Passes one instance runs at once (0: no limit). With several instances, a limit
    # spreads the streams between them instead of letting the first one take them all.
    max_concurrent_passes: int = Field(default=0, ge=0, le=10_000)
    # Worker processes that merge pages into output files, so a backfill uses every core
    # (0: in the daemon's own process; auto: none on one core, else one per core beside the
    # daemon's, at least two, at most four).
    window_workers: Annotated[int, Field(ge=0, le=64)] | Literal["auto"] = "auto"


class LoggingSettings(_Section):
    """Log level and format (`auto`: console on a TTY, JSON lines otherwise)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


class _StreamBase(_Section):
    """Fields every stream has: a name, what it addresses, when it runs."""

    name: StreamName
    enabled: bool = True
    location_code: Code | None = None
    device_category_code: Code | None = None
    device_code: Code | None = None
    dataset_id: StreamName | None = None
    cadence: Duration = timedelta(minutes=5)
    start: AwareDatetime | None = None
    initial_backfill: Duration = timedelta(hours=1)

    @model_validator(mode="after")
    def _one_addressing(self) -> _StreamBase:
        by_location = self.location_code is not None or self.device_category_code is not None
        if by_location == (self.device_code is not None) or (
            by_location and (self.location_code is None or self.device_category_code is None)
        ):
            raise PydanticCustomError(
                "addressing",
                "give either location_code and device_category_code, or device_code",
            )
        return self

    @property
    def resolved_dataset_id(self) -> str:
        """The stable dataset id: configured, else onc_<location>_<category> or onc_<device>."""
        if self.dataset_id:
            return self.dataset_id
        parts = (
            [self.location_code, self.device_category_code]
            if self.device_code is None
            else [self.device_code]
        )
        return "onc_" + "_".join(re.sub(r"[^a-z0-9]+", "", str(p).lower()) for p in parts)


def _default_formats() -> list[OutputFormat]:
    return ["jsonl"]


class TimeSeriesStream(_StreamBase):
    """A `scalardata` or `rawdata` stream: windows of readings from the cursor to now."""

    kind: Literal["scalardata", "rawdata"]
    property_codes: list[Code] = Field(default_factory=list)
    window: Duration = timedelta(hours=1)
    lookback: Duration = timedelta(0)
    safety_lag: Duration = timedelta(seconds=30)
    row_limit: int = Field(default=100_000, ge=1, le=100_000)
    quality_control: Literal["raw", "clean"] | None = None
    formats: list[OutputFormat] = Field(default_factory=_default_formats)

    @field_validator("window")
    @classmethod
    def _window_divides_day(cls, value: timedelta) -> timedelta:
        seconds = value.total_seconds()
        if seconds < 60 or seconds > 86400 or 86400 % seconds:
            raise PydanticCustomError(
                "window",
                "expected a window between 1m and 1d that divides a day evenly, got {got}",
                {"got": str(value)},
            )
        return value


class ArchiveFileStream(_StreamBase):
    """An `archivefile` stream: files the archive holds, downloaded byte-for-byte."""

    kind: Literal["archivefile"]
    file_extensions: list[Annotated[str, Field(pattern=r"^[A-Za-z0-9]+$")]] = Field(
        default_factory=list
    )
    data_product_code: Code | None = None
    parallel_downloads: int = Field(default=2, ge=1, le=8)
    safety_lag: Duration = timedelta(minutes=10)
    # Each listing starts this far before the cursor: the archive lists a file only once it
    # is complete (and archived), so a file that began before the cursor may appear later.
    # Files already published are skipped by the manifest, so this costs a few look-ups.
    lookback: Duration = timedelta(hours=1)


class DataProductStream(_StreamBase):
    """A `dataproduct` stream: one server-side product ordered per period and downloaded."""

    kind: Literal["dataproduct"]
    data_product_code: Code
    extension: Annotated[str, Field(pattern=r"^[A-Za-z0-9]+$")]
    period: Duration = timedelta(days=1)
    options: dict[str, str | int | float] = Field(default_factory=dict)
    poll_deadline: Duration = timedelta(hours=6)
    cadence: Duration = timedelta(hours=1)
    safety_lag: Duration = timedelta(hours=1)

    @property
    def resolved_dataset_id(self) -> str:
        """Products get their own dataset: the platform's id plus the product code."""
        if self.dataset_id:
            return self.dataset_id
        return f"{super().resolved_dataset_id}_{self.data_product_code.lower()}"

    @field_validator("options")
    @classmethod
    def _dpo_keys(cls, value: dict[str, str | int | float]) -> dict[str, str | int | float]:
        bad = [key for key in value if not key.startswith("dpo_")]
        if bad:
            raise PydanticCustomError(
                "dpo_options", "option names start with dpo_, got {got}", {"got": ", ".join(bad)}
            )
        return value


StreamSettings = Annotated[
    TimeSeriesStream | ArchiveFileStream | DataProductStream, Field(discriminator="kind")
]
STREAM_KINDS = ("scalardata", "rawdata", "archivefile", "dataproduct")


@dataclass(frozen=True)
class _LoadContext:
    yaml_data: dict[str, Any]
    secrets_dirs: tuple[Path, ...]
    environ: Mapping[str, str]


_LOAD: ContextVar[_LoadContext] = ContextVar("settings_load_context")


class Settings(BaseSettings):
    """Every setting of the pipeline; build it with `load_settings`, never directly."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True
    )

    onc: OncSettings = Field(default_factory=OncSettings)
    registry: RegistrySettings = Field(default_factory=RegistrySettings)
    state: StateSettings = Field(default_factory=StateSettings)
    output: OutputSettings = Field(default_factory=OutputSettings)
    ops: OpsSettings = Field(default_factory=OpsSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    streams: list[StreamSettings] = Field(default_factory=list)

    @field_validator("streams")
    @classmethod
    def _unique_names(cls, streams: list[StreamSettings]) -> list[StreamSettings]:
        seen: set[str] = set()
        for stream in streams:
            if stream.name in seen:
                raise PydanticCustomError(
                    "duplicate_stream",
                    "stream names must be unique; {name} appears twice",
                    {"name": _show(stream.name)},
                )
            seen.add(stream.name)
        return streams

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Highest priority first: secret files, ONC_PIPELINE_*, ONC_TOKEN, the YAML file."""
        ctx = _LOAD.get()
        return (
            init_settings,
            _SecretFilesSource(settings_cls, ctx.secrets_dirs),
            _EnvSource(settings_cls, ctx.environ),
            _OncTokenSource(settings_cls, ctx.environ),
            _DictSource(settings_cls, ctx.yaml_data),
        )

    def stream(self, name: str) -> StreamSettings:
        """The stream called `name`; KeyError when there is none."""
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)


class _DictSource(PydanticBaseSettingsSource):
    """A source that serves an already-parsed mapping (the YAML file)."""

    def __init__(self, settings_cls: type[BaseSettings], data: Mapping[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = dict(data)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return self._data


class _EnvSource(EnvSettingsSource):
    """`ONC_PIPELINE_*` variables, read from the mapping the CLI passes instead of os.environ."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class _OncTokenSource(_DictSource):
    """`ONC_TOKEN`, the official ONC client's convention for the token."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        token = environ.get("ONC_TOKEN", "").strip()
        super().__init__(settings_cls, {"onc": {"token": token}} if token else {})


class _SecretFilesSource(_DictSource):
    """Docker secrets and systemd credentials: one file per secret, named as in SECRET_FILES."""

    def __init__(self, settings_cls: type[BaseSettings], dirs: Sequence[Path]) -> None:
        data: dict[str, dict[str, str]] = {}
        for directory in dirs:
            for file_name, (section, key) in SECRET_FILES.items():
                path = directory / file_name
                if (section, key) in _flat(data):
                    continue
                if (text := _read_secret(path, section, key)) is not None:
                    data.setdefault(section, {})[key] = text
        super().__init__(settings_cls, data)


def _read_secret(path: Path, section: str, key: str) -> str | None:
    """A secret file's text, None when there is none; unreadable is the operator's to fix."""
    try:
        return path.read_text(encoding="utf-8").strip() if path.is_file() else None
    except PermissionError:
        # Docker mounts a file secret with the host file's owner and mode: a root-owned 0600
        # file is unreadable by the image's uid 10001.
        uid = os.geteuid()
        raise ConfigError(
            [
                (
                    f"{section}.{key}",
                    f"secret file {path} cannot be read by uid {uid} (permission denied); make "
                    f"it readable by that user (e.g. chown {uid} or a group it is in, mode "
                    "0440): see docs/operations.md, 'Giving the container its token'",
                )
            ]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(
            [(f"{section}.{key}", f"secret file {path} cannot be read: {reason}")]
        ) from None


def _flat(data: Mapping[str, Mapping[str, str]]) -> set[tuple[str, str]]:
    return {(section, key) for section, values in data.items() for key in values}


@dataclass(frozen=True)
class LoadedSettings:
    """Settings with where they came from, for `check` and reloads."""

    settings: Settings
    config_path: Path | None
    secret_files: list[Path] = field(default_factory=list)


def load_settings(
    config_path: Path | None,
    *,
    environ: Mapping[str, str],
    secrets_dirs: Sequence[Path] | None = None,
) -> Settings:
    """Load and validate settings; raise ConfigError listing every problem."""
    data = _read_yaml(config_path) if config_path is not None else {}
    dirs = tuple(secrets_dirs) if secrets_dirs is not None else _default_secret_dirs(environ)
    token = _LOAD.set(_LoadContext(data, dirs, environ))
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError(_problems(exc)) from None
    except SettingsError as exc:
        # A list or mapping given in the environment that is not JSON: pydantic-settings
        # raises before validation, which would otherwise escape as a traceback.
        raise ConfigError([_env_problem(exc)]) from None
    finally:
        _LOAD.reset(token)
    if problems := _cross_checks(settings):
        raise ConfigError(problems)
    return settings


def _env_problem(exc: SettingsError) -> tuple[str, str]:
    """(variable, message) for an environment value pydantic-settings could not decode."""
    match = re.search(r'field "([^"]+)"', str(exc))
    name = f"{ENV_PREFIX}{match.group(1).upper()}" if match else f"{ENV_PREFIX}*"
    # The cause says where the JSON broke; the value itself may hold a secret: never shown.
    cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
    return name, f"expected JSON for a list or mapping{cause}"


def _cross_checks(settings: Settings) -> list[tuple[str, str]]:
    """Problems that span sections, found after each section validated on its own."""
    problems: list[tuple[str, str]] = []
    if settings.onc.token is None and any(s.enabled for s in settings.streams):
        problems.append(
            (
                "onc.token",
                "required to harvest; set ONC_TOKEN, ONC_PIPELINE_ONC__TOKEN "
                "or the secret file onc_token",
            )
        )
    owners: dict[str, str] = {}
    for i, stream in enumerate(settings.streams):
        dataset = stream.resolved_dataset_id
        if dataset in owners:
            problems.append(
                (
                    f"streams[{i}].dataset_id",
                    f"dataset id {_show(dataset)} is also stream {_show(owners[dataset])}'s; "
                    "give one of them its own dataset_id",
                )
            )
        owners.setdefault(dataset, stream.name)
        if isinstance(stream, TimeSeriesStream):
            problems += _format_problems(i, stream, settings.output.partition)
    flags_on = settings.output.erddap_flag_dir is not None or settings.output.erddap_url
    if settings.registry.enabled and flags_on and settings.registry.debounce < ERDDAP_FLAG_EVERY:
        problems.append(
            (
                "registry.debounce",
                f"must be at least {describe_duration(ERDDAP_FLAG_EVERY)} with ERDDAP signalling "
                "on, so the catalog harvests only after ERDDAP was flagged",
            )
        )
    datasets = set(owners)
    for dataset in settings.registry.harvests:
        if dataset not in datasets:
            problems.append(
                (
                    f"registry.harvests.{dataset}",
                    f"no stream publishes dataset {_show(dataset)}; known: "
                    + (", ".join(sorted(datasets)) or "none"),
                )
            )
    return problems


# ERDDAP flags are debounced to one per dataset per this interval (pipeline.outputs.erddap).
ERDDAP_FLAG_EVERY = timedelta(seconds=10)
_FORMATS_BY_KIND = {"scalardata": ("jsonl", "netcdf", "csv"), "rawdata": ("jsonl", "rawtext")}
_PARTITION_SECONDS = {"hourly": 3600, "daily": 86400}


def _format_problems(i: int, stream: TimeSeriesStream, partition: str) -> list[tuple[str, str]]:
    """Formats that cannot hold the stream's kind; windows that straddle a partition."""
    problems = []
    allowed = _FORMATS_BY_KIND[stream.kind]
    for j, fmt in enumerate(stream.formats):
        if fmt not in allowed:
            problems.append(
                (
                    f"streams[{i}].formats[{j}]",
                    f"{stream.kind} cannot be written as {fmt}; use {', '.join(allowed)}",
                )
            )
    span = _PARTITION_SECONDS.get(partition)
    window = stream.window.total_seconds()
    if span is not None and span % window:
        whole = describe_duration(timedelta(seconds=span))
        problems.append(
            (
                f"streams[{i}].window",
                f"a {describe_duration(stream.window)} window does not fit the {partition} "
                f"output partitions; use a window that divides {whole}",
            )
        )
    return problems


def _default_secret_dirs(environ: Mapping[str, str]) -> tuple[Path, ...]:
    dirs = list(DEFAULT_SECRETS_DIRS)
    if credentials := environ.get("CREDENTIALS_DIRECTORY"):
        dirs.insert(0, Path(credentials))
    return tuple(dirs)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", f"config file {path} does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"config file {path} cannot be read: {exc}")]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        if mark := getattr(exc, "problem_mark", None):
            where = f" at line {mark.line + 1}, column {mark.column + 1}"
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError([("", f"{path}{where}: {problem}")]) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError([("", f"{path}: expected a mapping of sections at the top level")])
    return data


def _problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_url=False):
        loc = _strip_tags(error["loc"])
        problems.append((_yaml_path(loc), _message(error)))
    return problems


def _strip_tags(loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop pydantic's discriminator tag (`streams.2.scalardata.cadence` -> `streams.2.cadence`)."""
    out: list[int | str] = []
    for i, part in enumerate(loc):
        if isinstance(part, str) and part in STREAM_KINDS and i > 0 and isinstance(loc[i - 1], int):
            continue
        out.append(part)
    return tuple(out)


def _yaml_path(loc: tuple[int | str, ...]) -> str:
    path = ""
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _message(error: Any) -> str:
    kind = error["type"]
    if kind == "extra_forbidden":
        return "unknown key (check the spelling)"
    if kind == "missing":
        return "required"
    if kind == "union_tag_invalid":
        got = error["input"].get("kind") if isinstance(error["input"], dict) else error["input"]
        return f"unknown kind {_show(got)}; expected one of {', '.join(STREAM_KINDS)}"
    if kind == "union_tag_not_found":
        return f'missing "kind"; expected one of {", ".join(STREAM_KINDS)}'
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def describe_duration(value: timedelta) -> str:
    """Render a timedelta back in the short form settings accept ("90s", "5m", "1d")."""
    seconds = value.total_seconds()
    for unit in ("w", "d", "h", "m", "s"):
        size = _UNIT_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def masked_dump(settings: Settings) -> dict[str, Any]:
    """The resolved settings as plain data with every secret masked."""
    rendered: dict[str, Any] = _render(settings.model_dump())
    return rendered


def _render(value: Any) -> Any:
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else ""
    if isinstance(value, dict):
        return {k: _render(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_render(v) for v in value]
    if isinstance(value, timedelta):
        return describe_duration(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Path):
        return str(value)
    return value

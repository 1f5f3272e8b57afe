"""Settings: pydantic models loaded from a YAML file, environment variables and secret files.

Precedence, lowest first: built-in defaults < YAML file < `ONC_TOKEN` < `ONC_PIPELINE_*` variables
< secret files (`/run/secrets/<name>`, systemd `$CREDENTIALS_DIRECTORY/<name>`). Every problem
in a configuration is collected and raised at once as a ConfigError with its YAML path.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import MISSING, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    TypeAdapter,
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
from pipeline.onc.options import DEFAULT_BASE_URL, ClientOptions

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

# ERDDAP's datasetID rule, "[A-Za-z][A-Za-z0-9_]*": the constructors' documented form
# (ERDDAP/erddap WEB-INF/classes/gov/noaa/pfel/erddap/dataset/EDDTableFromFileNames.java,
# "tDatasetID ... recommended: [A-Za-z][A-Za-z0-9_]*"), enforced in part by EDD.ensureValid
# (EDD.java: Test.ensureFileNameSafe, "periods are not allowed in datasetID's"). A dataset id
# is the ERDDAP datasetID, its folder name and its flag file name, so it is held to the rule.
ERDDAP_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _erddap_id(value: str) -> str:
    if not ERDDAP_ID_RE.match(value):
        raise PydanticCustomError(
            "erddap_dataset_id",
            "{got} is not a valid ERDDAP datasetID: use a letter, then letters, digits or _ "
            "(ERDDAP's rule [A-Za-z][A-Za-z0-9_]*), e.g. {suggestion}",
            {"got": _show(value), "suggestion": _show(erddap_safe_id(value))},
        )
    return value


def erddap_safe_id(text: str) -> str:
    """`text` turned into a valid ERDDAP datasetID: other characters become `_`, and an id
    that does not start with a letter gets the prefix `onc_`."""
    cleaned = re.sub(r"[^A-Za-z0-9_]+", "_", text).strip("_") or "dataset"
    return cleaned if cleaned[0].isalpha() else f"onc_{cleaned}"


DatasetId = Annotated[str, Field(min_length=1, max_length=80), AfterValidator(_erddap_id)]


class _Section(BaseModel):
    """Base of every settings section: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


_CLIENT_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(ClientOptions) if f.default is not MISSING
}


def _client_seconds(name: str) -> timedelta:
    return timedelta(seconds=_CLIENT_DEFAULTS[name])


class OncSettings(_Section):
    """How to reach the Oceans API, and how politely."""

    # Every default comes from ClientOptions (pipeline/onc/options.py, where the evidence
    # for each is cited): one source of truth for the daemon and for library users.
    base_url: str = DEFAULT_BASE_URL
    token: SecretStr | None = None
    connect_timeout: Duration = _client_seconds("connect_timeout")
    read_timeout: Duration = _client_seconds("read_timeout")
    total_timeout: Duration = _client_seconds("total_timeout")
    max_concurrency: int = Field(default=_CLIENT_DEFAULTS["max_concurrency"], ge=1, le=16)
    max_rate_per_s: float = Field(default=_CLIENT_DEFAULTS["max_rate_per_s"], gt=0, le=50)
    max_attempts: int = Field(default=_CLIENT_DEFAULTS["max_attempts"], ge=1, le=100)
    backoff_base: Duration = _client_seconds("backoff_base")
    backoff_max: Duration = _client_seconds("backoff_max")
    retry_deadline: Duration = _client_seconds("retry_deadline")
    maintenance_max_wait: Duration = _client_seconds("maintenance_max_wait")
    product_poll_min: Duration = _client_seconds("product_poll_min")
    product_poll_max: Duration = _client_seconds("product_poll_max")

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


OutputFormat = Literal["jsonl", "netcdf", "csv", "rawtext", "jsonlcsv", "parquet"]


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
    dataset_id: DatasetId | None = None
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
        """The stable dataset id: configured, else onc_<location>_<category> or onc_<device>.

        Defaults are valid ERDDAP datasetIDs by construction: `onc_` and lower-case letters
        and digits of each code, joined by `_`.
        """
        if self.dataset_id:
            return self.dataset_id
        parts = (
            [self.location_code, self.device_category_code]
            if self.device_code is None
            else [self.device_code]
        )
        return "onc_" + "_".join(_id_part(p) for p in parts)


def _id_part(code: str | None) -> str:
    """A code's part of a default dataset id: its lower-case letters and digits only."""
    return re.sub(r"[^a-z0-9]+", "", str(code).lower())


# What a stream without `formats` publishes: what ERDDAP reads (CF DSG NetCDF for scalars,
# JSON Lines CSV for raw lines). The lossless `jsonl` is there for the asking.
DEFAULT_FORMATS: Mapping[str, tuple[OutputFormat, ...]] = {
    "scalardata": ("netcdf",),
    "rawdata": ("jsonlcsv",),
}


class TimeSeriesStream(_StreamBase):
    """A `scalardata` or `rawdata` stream: windows of readings from the cursor to now."""

    kind: Literal["scalardata", "rawdata"]
    property_codes: list[Code] = Field(default_factory=list)
    window: Duration = timedelta(hours=1)
    lookback: Duration = timedelta(0)
    safety_lag: Duration = timedelta(seconds=30)
    row_limit: int = Field(default=100_000, ge=1, le=100_000)
    quality_control: Literal["raw", "clean"] | None = None
    formats: list[OutputFormat] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _default_formats(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("formats") is None:
            return {**data, "formats": list(DEFAULT_FORMATS.get(data.get("kind", ""), ()))}
        return data

    @property
    def csv_dataset_id(self) -> str:
        """The ERDDAP datasetID of the CSV files: `<dataset>_csv` when NetCDF is published
        too (each ERDDAP dataset needs its own id), else the dataset id."""
        dataset = self.resolved_dataset_id
        return f"{dataset}_csv" if "netcdf" in self.formats and "csv" in self.formats else dataset

    @property
    def parquet_dataset_id(self) -> str:
        """The ERDDAP datasetID of the Parquet files: `<dataset>_parquet` when NetCDF or CSV
        is published too, else the dataset id."""
        dataset = self.resolved_dataset_id
        others = "netcdf" in self.formats or "csv" in self.formats
        return f"{dataset}_parquet" if others and "parquet" in self.formats else dataset

    @field_validator("window")
    @classmethod
    def _window_divides_day(cls, value: timedelta) -> timedelta:
        seconds = value.total_seconds()
        if seconds < 60 or seconds > 86400 or 86400 % seconds:
            raise PydanticCustomError(
                "window",
                "expected a window between 1m and 1d that divides a day evenly, got {got}",
                {"got": describe_duration(value)},
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
    # The cursor is on archive time: each pass lists what was archived since the cursor less
    # this overlap (and at least `safety_lag`), however old its data. The overlap covers clock
    # skew and files indexed a little after their archive time; files already published are
    # skipped by the manifest, so it costs a few look-ups.
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
        return f"{super().resolved_dataset_id}_{_id_part(self.data_product_code)}"

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
    # Every source merged, as validation received it (see Settings._keep_input).
    merged: dict[str, Any] = field(default_factory=dict)


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

    @model_validator(mode="before")
    @classmethod
    def _keep_input(cls, data: Any) -> Any:
        """Keep the merged input: the checks of `_input_problems` run on it even when a
        section fails validation, so one mistake never hides another."""
        if isinstance(data, dict) and (ctx := _LOAD.get(None)) is not None:
            ctx.merged.update(data)
        return data

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


def load_settings(
    config_path: Path | None,
    *,
    environ: Mapping[str, str],
    secrets_dirs: Sequence[Path] | None = None,
    need_secrets: bool = True,
) -> Settings:
    """Load and validate settings; raise ConfigError listing every problem.

    `need_secrets=False` is for commands that call no API (`status`, `erddap-config`): the
    token and the registry password may then be missing, as they are outside the service's
    own environment (systemd `LoadCredential=`).
    """
    data = _read_yaml(config_path) if config_path is not None else {}
    dirs = tuple(secrets_dirs) if secrets_dirs is not None else _default_secret_dirs(environ)
    ctx = _LoadContext(data, dirs, environ)
    token = _LOAD.set(ctx)
    try:
        settings = Settings()
    except ValidationError as exc:
        problems = _problems(exc)
        raise ConfigError(problems + _input_problems(ctx.merged, need_secrets)) from None
    except SettingsError as exc:
        # A list or mapping given in the environment that is not JSON: pydantic-settings
        # raises before validation, which would otherwise escape as a traceback.
        raise ConfigError([_env_problem(exc)]) from None
    finally:
        _LOAD.reset(token)
    if problems := _input_problems(ctx.merged, need_secrets) + _cross_checks(settings):
        raise ConfigError(problems)
    return settings


_TOKEN_HOW = "set ONC_TOKEN, ONC_PIPELINE_ONC__TOKEN or the secret file onc_token"
_REGISTRY_HOW = {
    "email": "set it in the file, ONC_PIPELINE_REGISTRY__EMAIL or the secret file registry_email",
    "password": "set ONC_PIPELINE_REGISTRY__PASSWORD or the secret file registry_password",
}


def _input_problems(data: Mapping[str, Any], need_secrets: bool) -> list[tuple[str, str]]:
    """Problems read off the merged input, so that they are reported beside any section's own
    problems: duplicate stream names and, when `need_secrets`, missing secrets."""
    problems: list[tuple[str, str]] = []
    streams = [s if isinstance(s, dict) else {} for s in _listed(data.get("streams"))]
    first: dict[str, int] = {}
    for i, stream in enumerate(streams):
        name = stream.get("name")
        if not isinstance(name, str):
            continue
        if name in first:
            problems.append(
                (
                    f"streams[{i}].name",
                    f"stream name {_show(name)} is also streams[{first[name]}]'s; "
                    "stream names must be unique",
                )
            )
        first.setdefault(name, i)
    if not need_secrets:
        return problems
    onc = _section(data, "onc")
    if not _given(onc.get("token")) and any(_flag(s.get("enabled"), True) for s in streams):
        problems.append(("onc.token", f"required to harvest; {_TOKEN_HOW}"))
    registry = _section(data, "registry")
    if _flag(registry.get("enabled"), False) and not _flag(registry.get("dry_run"), False):
        for key, how in _REGISTRY_HOW.items():
            if not _given(registry.get(key)):
                problems.append(
                    (
                        f"registry.{key}",
                        f"required when registry.enabled is true: {how}; "
                        "or set registry.dry_run: true",
                    )
                )
    return problems


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _section(data: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    value = data.get(name)
    return value if isinstance(value, dict) else {}


def _given(value: Any) -> bool:
    return value is not None and str(value).strip() != ""


def _flag(value: Any, default: bool) -> bool:
    """A boolean as validation will read it; the default when absent or invalid (validation
    reports an invalid one itself)."""
    if value is None:
        return default
    try:
        return bool(TypeAdapter(bool).validate_python(value))
    except ValidationError:
        return default


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
    owners: dict[str, str] = {}
    # ERDDAP datasetIDs must not differ only in case (datasets.md, datasetID), and a CSV view
    # next to NetCDF is `<id>_csv`: every id a stream publishes under is checked, ignoring case.
    erddap_owners: dict[str, tuple[str, str]] = {}  # lower-case id -> (stream, id)
    for i, stream in enumerate(settings.streams):
        dataset = stream.resolved_dataset_id
        ids = [dataset]
        if isinstance(stream, TimeSeriesStream):
            ids += [
                extra
                for extra in (stream.csv_dataset_id, stream.parquet_dataset_id)
                if extra != dataset
            ]
        for erddap_id in ids:
            other = erddap_owners.get(erddap_id.lower())
            if other is not None and other[0] != stream.name:
                case = (
                    ""
                    if other[1] == erddap_id
                    else " (ERDDAP datasetIDs must differ in more than case)"
                )
                problems.append(
                    (
                        f"streams[{i}].dataset_id",
                        f"dataset id {_show(erddap_id)} is also stream {_show(other[0])}'s{case}; "
                        "give one of them its own dataset_id",
                    )
                )
            erddap_owners.setdefault(erddap_id.lower(), (stream.name, erddap_id))
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


# ERDDAP flags are debounced to one per dataset per this interval (pipeline.erddap.flags).
ERDDAP_FLAG_EVERY = timedelta(seconds=10)
# The output formats that can hold each stream kind; each Writer declares the same `kinds`.
FORMATS_BY_KIND: Mapping[str, tuple[OutputFormat, ...]] = {
    "scalardata": ("jsonl", "netcdf", "csv", "parquet"),
    "rawdata": ("jsonl", "rawtext", "jsonlcsv"),
}
_PARTITION_SECONDS = {"hourly": 3600, "daily": 86400}


def _format_problems(i: int, stream: TimeSeriesStream, partition: str) -> list[tuple[str, str]]:
    """Formats that cannot hold the stream's kind; windows that straddle a partition."""
    problems = []
    allowed = FORMATS_BY_KIND[stream.kind]
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


_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([("", f"config file {path} does not exist")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([("", f"config file {path} cannot be read: {exc}")]) from None
    try:
        try:
            # libyaml's loader (when PyYAML was built with it) reads the same values several
            # times faster; a file it rejects is read again by the Python loader, whose
            # messages point at the problem more precisely, for the error.
            data = yaml.load(text, Loader=_FAST_LOADER)
        except yaml.YAMLError:
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
    if kind == "timezone_aware":
        got = error["input"]
        shown = _show(got.isoformat() if isinstance(got, datetime) else got)
        return f'expected a UTC time ending in Z, like "2026-01-01T00:00:00Z", got {shown}'
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


def client_options(settings: Settings) -> ClientOptions:
    """The Oceans API client's options from the `onc` section."""
    onc = settings.onc
    if onc.token is None:
        raise ValueError("onc.token is required")  # settings validation reports it first
    deadlines = [
        s.poll_deadline.total_seconds()
        for s in settings.streams
        if isinstance(s, DataProductStream)
    ]
    return ClientOptions(
        token=onc.token.get_secret_value(),
        base_url=onc.base_url,
        connect_timeout=onc.connect_timeout.total_seconds(),
        read_timeout=onc.read_timeout.total_seconds(),
        total_timeout=onc.total_timeout.total_seconds(),
        max_concurrency=onc.max_concurrency,
        max_rate_per_s=onc.max_rate_per_s,
        max_attempts=onc.max_attempts,
        backoff_base=onc.backoff_base.total_seconds(),
        backoff_max=onc.backoff_max.total_seconds(),
        retry_deadline=onc.retry_deadline.total_seconds(),
        maintenance_max_wait=onc.maintenance_max_wait.total_seconds(),
        product_poll_min=onc.product_poll_min.total_seconds(),
        product_poll_max=max(onc.product_poll_max, onc.product_poll_min).total_seconds(),
        product_deadline=max(deadlines, default=6 * 3600.0),
    )

"""Where things live: the database path and every other process-wide setting from the environment.

``EnvSettings`` is the one place that declares the ``ARMOR_*`` environment variables: each field's
variable name (the ``*_ENV`` constants below), type, default and meaning. ``env_settings()`` reads
the environment when it is called (never cached: tests change the environment, child processes
inherit theirs), so code reads ``env_settings().field`` instead of ``os.environ``. Processes that
start a child with a variable set use the same ``*_ENV`` constant for its name. The README's
"Configuration" table is generated from this class by ``env_table()`` (a test keeps them equal).

Blank values count as unset. Secrets are ``SecretStr``: they never show in a repr or a log line;
``.get_secret_value()`` where one is used.

The embedded DuckDB file defaults to ``.armor_ab/armor_ab.duckdb`` in the working directory;
``--db`` on the command line or the ``ARMOR_AB_DB`` environment variable move it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_DB = Path(".armor_ab") / "armor_ab.duckdb"
# Built engines (armor-ab engine build), relative to the working directory like the database.
DEFAULT_ENGINE_ROOT = Path("engine") / "build"
DEFAULT_API = "http://127.0.0.1:8000"
DEFAULT_DEMO_EXPERIMENT = "catalog-interleaved"

# The variables' names, declared once (two prefixes: ARMOR_AB_ for the platform, ARMOR_ORT_ for the engine).
DB_ENV = "ARMOR_AB_DB"
CORS_ORIGINS_ENV = "ARMOR_AB_CORS_ORIGINS"
LOG_LEVEL_ENV = "ARMOR_AB_LOG_LEVEL"
API_ENV = "ARMOR_AB_API"
KEY_ENV = "ARMOR_AB_KEY"
CLIENT_KEY_ENV = "ARMOR_AB_CLIENT_KEY"
DASHBOARD_NO_AUTH_ENV = "ARMOR_AB_DASHBOARD_NO_AUTH"
PORT_ENV = "ARMOR_AB_PORT"
DASHBOARD_PORT_ENV = "ARMOR_AB_DASHBOARD_PORT"
DEMO_CLIENT_KEY_ENV = "ARMOR_AB_DEMO_CLIENT_KEY"
DEMO_API_ENV = "ARMOR_AB_DEMO_API"
DEMO_EXPERIMENT_ENV = "ARMOR_AB_DEMO_EXPERIMENT"
ORT_THREADS_ENV = "ARMOR_ORT_THREADS"
ORT_SPINNING_ENV = "ARMOR_ORT_SPINNING"
DIST_BACKEND_ENV = "ARMOR_AB_DIST_BACKEND"


class EnvSettings(BaseSettings):
    """Every ``ARMOR_*`` environment variable: name (alias), type, default, meaning (description)."""

    model_config = SettingsConfigDict(
        case_sensitive=True,  # the exact names only
        env_ignore_empty=True,  # VAR= is the same as unset
        extra="ignore",
        frozen=True,
    )

    # -- the database and the API server (armor-ab serve and every command with --db)
    db: Path = Field(DEFAULT_DB, validation_alias=DB_ENV,
                     description="the DuckDB file when `--db` is not given")
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        (), validation_alias=CORS_ORIGINS_ENV,
        description="origins allowed to call the client endpoints, comma-separated (`armor-ab serve --cors-origin`)")
    log_level: str = Field("WARNING", validation_alias=LOG_LEVEL_ENV,
                           description="log level of the API's database process")
    # -- clients of the API: dashboards, simulate
    api: str = Field(DEFAULT_API, validation_alias=API_ENV,
                     description="the API base URL for `armor-ab dashboard`, `armor-ab simulate` and the dashboards")
    key: SecretStr | None = Field(None, validation_alias=KEY_ENV,
                                  description="read or admin key the dashboards use with `--no-auth`, and the "
                                              "example site alone reads the catalog with (secret)")
    client_key: SecretStr | None = Field(None, validation_alias=CLIENT_KEY_ENV,
                                         description="client-scope key for `armor-ab simulate --key` (secret)")
    dashboard_no_auth: bool = Field(False, validation_alias=DASHBOARD_NO_AUTH_ENV,
                                    description="1: the dashboards skip sign-in and use the key in ARMOR_AB_KEY "
                                                "(set by `armor-ab dashboard --no-auth`)")
    # -- make demo (python -m armor_ab.devtools.demo)
    port: int = Field(8000, validation_alias=PORT_ENV, description="the demo's API port (`--port`)")
    dashboard_port: int = Field(8501, validation_alias=DASHBOARD_PORT_ENV,
                                description="the demo's dashboard port (`--dashboard-port`)")
    # -- the example catalog site (/demo/), read at request time
    demo_client_key: SecretStr | None = Field(
        None, validation_alias=DEMO_CLIENT_KEY_ENV,
        description="the publishable client key the /demo/ pages use (unset: catalog copy only; secret)")
    demo_api: str = Field("", validation_alias=DEMO_API_ENV,
                          description="the API base URL the /demo/ pages talk to (unset: the server itself)")
    demo_experiment: str = Field(DEFAULT_DEMO_EXPERIMENT, validation_alias=DEMO_EXPERIMENT_ENV,
                                 description="the experiment the /demo/ pages run")
    # -- the engine (ONNX Runtime sessions)
    ort_threads: int | None = Field(None, validation_alias=ORT_THREADS_ENV,
                                    description="ONNX Runtime intra-op threads (unset or 0: ONNX Runtime's choice)")
    ort_spinning: bool = Field(False, validation_alias=ORT_SPINNING_ENV,
                               description="1: ONNX Runtime worker threads spin between graph calls")
    # -- training under torchrun
    dist_backend: Literal["gloo", "nccl"] | None = Field(
        None, validation_alias=DIST_BACKEND_ENV,
        description="torch.distributed backend of `armor-ab train` under torchrun (unset: nccl with CUDA, else gloo)")

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: Any, info: ValidationInfo) -> Any:
        """Strip text; blank text means the default; the CORS origins are a comma-separated list."""
        if not isinstance(value, str):
            return value
        value = value.strip()
        if info.field_name == "cors_origins":
            return tuple(o.strip() for o in value.split(",") if o.strip())
        if not value:
            return cls.model_fields[info.field_name].default
        return value


def env_settings() -> EnvSettings:
    """The ``ARMOR_*`` settings as the environment has them now (read on every call; cheap)."""
    return EnvSettings()


def env_names() -> dict[str, str]:
    """Field name -> environment variable name, in declaration order."""
    return {name: str(f.validation_alias) for name, f in EnvSettings.model_fields.items()}


def documented_default(field: str) -> str:
    """A field's default as the README's table writes it."""
    default = EnvSettings.model_fields[field].default
    if default is None or default == () or default == "":
        return "unset"
    if isinstance(default, bool):
        return "`1`" if default else "`0`"
    return f"`{default}`"


def env_table() -> str:
    """The README's Configuration table (Markdown), generated from ``EnvSettings``."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, env in env_names().items():
        rows.append(f"| `{env}` | {documented_default(name)} | {EnvSettings.model_fields[name].description} |")
    return "\n".join(rows)


def resolve_db_path(db: str | os.PathLike[str] | None = None) -> Path:
    """The database path: an explicit argument wins, then ``ARMOR_AB_DB``, then the default."""
    if db:
        return Path(db)
    return env_settings().db


if __name__ == "__main__":  # python -m armor_ab.config: print the README table
    print(env_table())

"""One settings object for every ``ARMOR_*`` environment variable (``EnvSettings`` in armor_ab/config.py).

* The README's Configuration table lists exactly its variables, with its defaults (docs and code agree).
* No module under armor_ab/ or dashboards/ reads an ``ARMOR_*`` variable except through it (writing one
  into a child process's environment is fine, by the declared name constant).
* Values parse from the environment at call time: ints, booleans, paths, lists, secrets kept out of reprs.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import click
import pytest
import typer
from pydantic import SecretStr, ValidationError

from armor_ab import config
from armor_ab.config import (
    DEFAULT_DB,
    EnvSettings,
    documented_default,
    env_names,
    env_settings,
    env_table,
    resolve_db_path,
)

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted((ROOT / "armor_ab").rglob("*.py"))
SETTINGS_MODULE = ROOT / "armor_ab" / "config.py"
ENV_NAME = re.compile(r"ARMOR_[A-Z0-9_]+")
# The names the code may hold an environment variable's name in (config's constants and their aliases).
NAME_CONSTANTS = {n for n in vars(config) if n.endswith("_ENV")} | {"ENV_API", "ENV_KEY", "ENV_NO_AUTH", "CORS_ENV"}


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No ARMOR_* variable set, whatever the shell running the tests has."""
    for name in env_names().values():
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# ---- (a) the README and the class agree -------------------------------------------------------------------


def readme_table() -> list[tuple[str, str, str]]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Configuration\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `(ARMOR_\w+)` \| (.+?) \| (.+) \|$", section, flags=re.M)


def test_readme_table_lists_exactly_the_settings_with_their_defaults() -> None:
    rows = readme_table()
    assert [env for env, _, _ in rows] == list(env_names().values())
    by_env = {env: default for env, default, _ in rows}
    for field, env in env_names().items():
        assert by_env[env] == documented_default(field), env
    assert len(rows) == len(set(by_env)), "one row per variable"


def test_readme_table_is_the_generated_one() -> None:
    """The whole table, meanings included, is ``python -m armor_ab.config``'s output."""
    assert env_table() in (ROOT / "README.md").read_text()


def test_every_field_has_a_type_default_and_description_and_an_exact_name() -> None:
    for field, info in EnvSettings.model_fields.items():
        assert info.description, field
        assert info.annotation is not None, field
        assert ENV_NAME.fullmatch(str(info.validation_alias)), (field, info.validation_alias)
    assert len(set(env_names().values())) == len(EnvSettings.model_fields)
    assert "Settings" not in vars(config), "one meaning per name: the class is EnvSettings"


def test_documented_defaults_are_the_behaviour_of_an_empty_environment(clean_env) -> None:
    s = env_settings()
    for field in EnvSettings.model_fields:
        assert getattr(s, field) == EnvSettings.model_fields[field].default, field
    assert s.db == DEFAULT_DB and documented_default("db") == "`.armor_ab/armor_ab.duckdb`"
    assert documented_default("port") == "`8000`" and documented_default("ort_spinning") == "`0`"
    assert documented_default("key") == "unset"


def test_the_dashboards_default_api_is_the_settings_default() -> None:
    from armor_ab.dashboards.lib.api import DEFAULT_API

    assert EnvSettings.model_fields["api"].default == DEFAULT_API


def test_cli_options_read_only_documented_variables() -> None:
    """Typer options with ``envvar=`` name a field's variable; the same name the table documents."""
    from armor_ab.cli import app

    def params(cmd: click.Command):
        yield from cmd.params
        for sub in getattr(cmd, "commands", {}).values():
            yield from params(sub)

    envvars = set()
    for p in params(typer.main.get_command(app)):
        for name in [p.envvar] if isinstance(p.envvar, str) else (p.envvar or []):
            envvars.add(name)
    armor = {e for e in envvars if e.startswith("ARMOR_")}
    assert armor, "the CLI has env-backed options (--api, --key)"
    assert armor <= set(env_names().values())


# ---- (b) no ARMOR_* read outside the settings module ------------------------------------------------------


READ_PATTERNS = [
    re.compile(r"environ\.get\(\s*[\"']ARMOR"),
    re.compile(r"getenv\(\s*[\"']ARMOR"),
    re.compile(r"environ\[\s*[\"']ARMOR[^\"']*[\"']\s*\](?!\s*=[^=])"),  # a subscript that is not assigned to
    re.compile(r"[\"']ARMOR\w*[\"']\s+(?:not\s+)?in\s+(?:os\.)?environ"),
    re.compile(r"envvar\s*=\s*[\"']ARMOR"),
]


def _is_environ(node: ast.AST) -> bool:
    return ast.unparse(node).split(".")[-1] == "environ"


def _env_key_is_suspect(key: ast.AST) -> bool:
    """A key that is an ARMOR_* name, or a name constant that holds one."""
    if isinstance(key, ast.Constant):
        return isinstance(key.value, str) and key.value.startswith("ARMOR_")
    return ast.unparse(key).split(".")[-1] in NAME_CONSTANTS


def environment_reads(source: str) -> list[str]:
    """The ARMOR_* reads in ``source``, as source snippets: ``os.environ.get/[...]/in``, ``getenv``,
    any ``.get(NAME_ENV)``, and a bare ``"ARMOR_..."`` string used as a key (names belong in config's
    constants). Assignments (``env[NAME] = value``, ``{**os.environ, NAME: value}``) are writes, not reads."""
    found = [m.group(0) for pattern in READ_PATTERNS for m in pattern.finditer(source)]
    for node in ast.walk(ast.parse(source)):
        key = None
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "getenv" or (node.func.attr in ("get", "pop", "setdefault")
                                             and (_is_environ(node.func.value) or node.args and not isinstance(
                                                 node.args[0], ast.Constant))):
                key = node.args[0] if node.args else None
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getenv":
            key = node.args[0] if node.args else None
        elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load) and _is_environ(node.value):
            key = node.slice
        elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
            if any(_is_environ(c) for c in node.comparators):
                key = node.left
        elif isinstance(node, ast.keyword) and node.arg == "envvar":
            if isinstance(node.value, ast.Constant) and ENV_NAME.fullmatch(str(node.value.value)):
                found.append(ast.unparse(node))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.fullmatch(node.value):
            found.append(repr(node.value))  # a name spelled out again instead of config's constant
        if key is not None and _env_key_is_suspect(key):
            found.append(ast.unparse(node))
    return found


def test_the_read_check_tells_reads_from_writes() -> None:
    reads = '''
import os
a = os.environ.get("ARMOR_AB_X")
b = os.getenv("ARMOR_AB_X", "1")
c = os.environ["ARMOR_AB_X"]
d = "ARMOR_AB_X" in os.environ
e = os.environ.get(DB_ENV)
f = typer.Option("--x", envvar="ARMOR_AB_X")
'''
    writes = '''
import os
env = {**os.environ, KEY_ENV: key}
env[API_ENV] = api
os.environ[DEMO_API_ENV] = url
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
p = os.environ.get("PYTHONPATH")
h = typer.Option("--key", envvar=CLIENT_KEY_ENV, help="the key in $ARMOR_AB_KEY")
'''
    assert len(environment_reads(reads)) >= 6
    assert environment_reads(writes) == []


def test_no_module_reads_an_armor_variable_outside_the_settings_module() -> None:
    offenders = []
    for path in SOURCES:
        if path == SETTINGS_MODULE:
            continue
        for snippet in environment_reads(path.read_text()):
            offenders.append(f"{path.relative_to(ROOT)}: {snippet}")
    assert not offenders, ("read ARMOR_* variables through armor_ab.config.env_settings() and name them by "
                           "config's *_ENV constants:\n  " + "\n  ".join(offenders))


def test_every_variable_the_code_mentions_is_a_setting() -> None:
    """Help texts and messages that name a variable name a documented one."""
    known = set(env_names().values())
    word = re.compile(r"\bARMOR_[A-Z0-9_]*[A-Z0-9]\b")
    mentioned = {m for path in SOURCES for m in word.findall(path.read_text())}
    assert mentioned - known == set()


# ---- (c) parsing from the environment ----------------------------------------------------------------------


def test_ints_parse_and_are_read_at_call_time(clean_env) -> None:
    clean_env.setenv(config.PORT_ENV, "9001")
    clean_env.setenv(config.ORT_THREADS_ENV, "3")
    s = env_settings()
    assert (s.port, s.dashboard_port, s.ort_threads) == (9001, 8501, 3)
    clean_env.setenv(config.PORT_ENV, "9002")
    assert env_settings().port == 9002  # no caching: a changed environment is seen


def test_booleans_parse(clean_env) -> None:
    assert env_settings().ort_spinning is False
    for text, value in (("1", True), ("0", False), ("true", True), ("no", False), (" Yes ", True)):
        clean_env.setenv(config.ORT_SPINNING_ENV, text)
        clean_env.setenv(config.DASHBOARD_NO_AUTH_ENV, text)
        s = env_settings()
        assert (s.ort_spinning, s.dashboard_no_auth) == (value, value), text


def test_paths_parse_and_the_explicit_db_wins(clean_env, tmp_path: Path) -> None:
    assert resolve_db_path() == DEFAULT_DB
    clean_env.setenv(config.DB_ENV, str(tmp_path / "x.duckdb"))
    assert resolve_db_path() == tmp_path / "x.duckdb"
    assert resolve_db_path(tmp_path / "y.duckdb") == tmp_path / "y.duckdb"


def test_empty_or_blank_means_unset(clean_env) -> None:
    for name in (config.DB_ENV, config.PORT_ENV, config.ORT_THREADS_ENV, config.DEMO_EXPERIMENT_ENV,
                 config.KEY_ENV, config.DASHBOARD_NO_AUTH_ENV):
        clean_env.setenv(name, "")
    defaults = {field: info.default for field, info in EnvSettings.model_fields.items()}
    assert env_settings().model_dump() == defaults
    clean_env.setenv(config.DEMO_EXPERIMENT_ENV, "   ")
    clean_env.setenv(config.KEY_ENV, "  ")
    s = env_settings()
    assert s.demo_experiment == "catalog-interleaved" and s.key is None and s.db == DEFAULT_DB


def test_cors_origins_are_a_comma_separated_list(clean_env) -> None:
    from armor_ab.api.app import settings_from_env

    clean_env.setenv(config.CORS_ORIGINS_ENV, "https://a.example, https://b.example,,")
    assert env_settings().cors_origins == ("https://a.example", "https://b.example")
    assert settings_from_env().cors_origins == ("https://a.example", "https://b.example")
    clean_env.delenv(config.CORS_ORIGINS_ENV)
    assert settings_from_env().cors_origins == ()


def test_secrets_never_show_in_a_repr(clean_env) -> None:
    secrets = {config.KEY_ENV: "aab_admin_s3cret", config.CLIENT_KEY_ENV: "aab_client_s3cret",
               config.DEMO_CLIENT_KEY_ENV: "aab_demo_s3cret"}
    for name, value in secrets.items():
        clean_env.setenv(name, value)
    s = env_settings()
    for shown in (repr(s), str(s), s.model_dump_json()):
        for value in secrets.values():
            assert value not in shown
    assert isinstance(s.key, SecretStr) and s.key.get_secret_value() == "aab_admin_s3cret"
    assert s.client_key.get_secret_value() == "aab_client_s3cret"
    assert s.demo_client_key.get_secret_value() == "aab_demo_s3cret"


def test_names_are_exact(clean_env) -> None:
    """Only the exact, upper-case names count (the environment is case-sensitive here)."""
    clean_env.setenv("armor_ab_port", "9003")
    clean_env.setenv("AB_PORT", "9004")
    assert env_settings().port == 8000


def test_a_malformed_value_names_its_variable(clean_env) -> None:
    clean_env.setenv(config.ORT_THREADS_ENV, "many")
    with pytest.raises(ValidationError, match=config.ORT_THREADS_ENV):
        env_settings()


def test_users_of_the_settings_see_the_environment(clean_env) -> None:
    """A few readers, end to end: the ONNX Runtime options and the dashboards' settings."""
    pytest.importorskip("onnxruntime")
    from armor_ab.dashboards.lib import ui
    from armor_ab.engine.backends.onnxruntime import ort_session_options

    clean_env.setenv(config.ORT_THREADS_ENV, "2")
    clean_env.setenv(config.ORT_SPINNING_ENV, "1")
    so = ort_session_options()
    assert so.intra_op_num_threads == 2
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == "1"
    assert ort_session_options(threads=5, spinning=False).intra_op_num_threads == 5

    assert ui.settings() == ui.DashboardSettings("http://127.0.0.1:8000", False, None)
    clean_env.setenv(ui.ENV_API, "http://api.example:1")
    clean_env.setenv(ui.ENV_KEY, "aab_read")
    clean_env.setenv(ui.ENV_NO_AUTH, "1")
    assert ui.settings() == ui.DashboardSettings("http://api.example:1", True, "aab_read")

"""The wheel: built with ``python -m build``, installed into a fresh virtual environment, it runs ``armor-ab serve``
and ``armor-ab dashboard`` outside the repository, with the demo catalog, model, experiment and dashboards it ships.

The wheel is built from a clean copy of the source (a stale ``build/lib`` in a checkout would leak into it). The
fresh environment gets the wheel with ``pip install --no-deps --no-index`` and then borrows the third-party
packages of the environment running the tests through one ``.pth`` line: Python does not process the ``.pth``
files of a directory that a ``.pth`` line adds, so the development install's editable finder for armor_ab stays
off and ``import armor_ab`` finds the wheel's copy. Every command runs in a temporary directory, without
``PYTHONPATH``. ``build`` is a dev dependency (``make install``); without it the test fails, it never skips.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.helpers.platform import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[1]
STARTUP_S = 180.0  # two busy cores: the API imports torch and friends, Streamlit its whole tree


@dataclass(frozen=True)
class Installed:
    wheel: Path
    source: Path  # the clean copy the wheel was built from
    venv: Path
    python: Path
    cli: Path  # venv/bin/armor-ab, the wheel's console script
    site: Path  # the fresh environment's site-packages
    work: Path  # the working directory of every command: outside the repository
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
        proc = subprocess.run([str(self.cli), *args], cwd=self.work, env={**self.env, **env}, capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"armor-ab {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def python_out(self, code: str, timeout: float = 300, **env: str) -> str:
        proc = subprocess.run([str(self.python), "-c", code], cwd=self.work, env={**self.env, **env},
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, f"{code}\nexited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout


def _check(cmd: list[str], **kwargs) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"


def _clean_env(venv: Path) -> dict[str, str]:
    """This environment minus anything that points at the repository or configures armor-ab."""
    drop = {"PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTHONSAFEPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("ARMOR_")}
    env["PATH"] = os.pathsep.join([str(venv / "bin"), env.get("PATH", "")])
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    if importlib.util.find_spec("build") is None:
        pytest.fail("the `build` package is missing from this environment: `make install` "
                    "(it is in the dev extra) or `.venv/bin/pip install build`")
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT), "the temporary directory must lie outside the repository"

    source = base / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(ROOT / "armor_ab", source / "armor_ab",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    dist = base / "dist"
    _check([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist), str(source)],
           cwd=source, timeout=600)
    wheels = sorted(dist.glob("armor_ab-*.whl"))
    assert len(wheels) == 1, wheels

    venv = base / "venv"
    _check([sys.executable, "-m", "venv", "--without-pip", str(venv)], timeout=300)
    python = venv / "bin" / "python"
    # This environment's pip installs into the fresh one (``--python``), before the fresh one can see this
    # environment's packages: pip then finds no armor_ab installed and touches nothing outside the fresh one.
    _check([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index",
            "--no-compile", "--disable-pip-version-check", str(wheels[0])], timeout=600)
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                               capture_output=True, text=True, check=True).stdout.strip())
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (site / "zz_armor_ab_test_deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))
    work = base / "work"
    work.mkdir()
    return Installed(wheels[0], source, venv, python, venv / "bin" / "armor-ab", site, work, _clean_env(venv))


def test_the_wheel_holds_every_file_of_the_package(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        names = set(zf.namelist())
    package = installed.source / "armor_ab"
    files = {p.relative_to(installed.source).as_posix() for p in package.rglob("*") if p.is_file()}
    assert files - names == set(), "files of the package missing from the wheel (pyproject.toml package-data)"
    for name in ("model.safetensors", "config.json"):
        assert f"armor_ab/assets/models/armor-demo/{name}" in names
    catalog = json.loads((package / "assets" / "catalog" / "catalog.json").read_text())
    assert len(catalog["products"]) >= 40
    for product in catalog["products"]:
        assert f"armor_ab/assets/catalog/{product['picture']}" in names
    assert "armor_ab/assets/experiments/catalog-interleaved.yaml" in names
    assert {"armor_ab/assets/recipes/build/armor-demo.yaml", "armor_ab/assets/recipes/build/armor-tiny.yaml",
            "armor_ab/assets/recipes/training/armor-demo.yaml"} <= names
    assert "armor_ab/dashboards/app.py" in names
    views = {n for n in names if n.startswith("armor_ab/dashboards/views/") and n.endswith(".py")}
    assert {f"armor_ab/dashboards/views/{v}.py" for v in ("experiments", "design", "results", "roi", "content")} <= views
    assert {"armor_ab/web/static/armor-ab.js", "armor_ab/web/static/demo.css"} <= names
    assert not any(n.startswith(("tests/", "engine/", "dashboards/", "experiments/")) for n in names), "only armor_ab"


def test_armor_ab_imports_from_the_fresh_environment(installed: Installed) -> None:
    out = installed.python_out(
        "import armor_ab, armor_ab.assets as a, armor_ab.dashboards as d, streamlit, torch, json;"
        "print(json.dumps([armor_ab.__file__, str(a.DEMO_MODEL), str(a.DEMO_CATALOG), d.__file__, streamlit.__file__]))"
    )
    package, model, catalog, dashboards, streamlit_file = (Path(p) for p in json.loads(out))
    for path in (package, model, catalog, dashboards):
        assert path.is_relative_to(installed.site), f"{path} is not the wheel's copy in {installed.site}"
        assert not path.resolve().is_relative_to(ROOT), path
    assert (model / "model.safetensors").is_file() and (catalog / "catalog.json").is_file()
    assert not streamlit_file.is_relative_to(installed.venv), "dependencies come from the test environment"


def _start(cmd: list[str], installed: Installed, log: Path, **env: str) -> subprocess.Popen:
    with open(log, "ab") as fh:
        return subprocess.Popen(cmd, cwd=installed.work, env={**installed.env, **env}, stdout=fh,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_for(url: str, proc: subprocess.Popen, log: Path, ok=lambda r: r.status_code == 200) -> httpx.Response:
    deadline = time.monotonic() + STARTUP_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            response = httpx.get(url, timeout=2.0)
            if ok(response):
                return response
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    pytest.fail(f"{url} did not answer within {STARTUP_S:.0f} s:\n{log.read_text()[-4000:]}")


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _stop(proc: subprocess.Popen) -> bool:
    """SIGTERM to the leader, which stops its own children; True when its whole process group is gone."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 10
    while _group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    clean = proc.poll() is not None and not _group_alive(proc.pid)
    if not clean:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)
    return clean


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for proc in reversed(started):
        _stop(proc)


def test_the_installed_wheel_serves_the_api_and_the_dashboards(
    installed: Installed, processes: list[subprocess.Popen]
) -> None:
    help_text = installed.run("--help").stdout
    assert "serve" in help_text and "dashboard" in help_text

    db = installed.work / "x.duckdb"
    admin = installed.run("keys", "create", "--scope", "admin", "--db", str(db)).stdout.strip().splitlines()[-1]
    assert admin.startswith("aab_")
    # The shipped demo catalog into the database, as an import stores it (the server reads it from there).
    installed.python_out(
        "from pathlib import Path; from armor_ab.catalog.demo import demo_items; "
        "from armor_ab.store.catalog import import_items, write_photo; "
        "from armor_ab.store.content import images_dir_for; from armor_ab.store.db import connect\n"
        f"db = Path({str(db)!r}); items = demo_items(); con = connect(db)\n"
        "[write_photo(images_dir_for(db), i.image, i.image_type, png) for i, png in items if png]\n"
        "import_items(con, [i for i, _ in items], file='demo', file_sha256='0' * 64); con.close()")

    port = free_port()
    api = f"http://127.0.0.1:{port}"
    server_log = installed.work / "serve.log"
    server = _start([str(installed.cli), "serve", "--db", str(db), "--port", str(port), "--log-level", "warning"],
                    installed, server_log)
    processes.append(server)
    _wait_for(f"{api}/healthz", server, server_log)

    # The shipped experiment, from the installed package, through the API; then control's copy from the shipped
    # catalog for a shipped product.
    experiment = Path(installed.python_out("from armor_ab import assets; print(assets.DEMO_EXPERIMENT)").strip())
    assert experiment.is_relative_to(installed.site)
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=api, headers=headers, timeout=60) as client:
        created = client.post("/v1/experiments", content=experiment.read_bytes(),
                              headers={"Content-Type": "application/yaml"})
        assert created.status_code == 201, created.text
        started = client.post("/v1/experiments/catalog-interleaved/start")
        assert started.status_code == 200, started.text

        catalog = json.loads((installed.site / "armor_ab" / "assets" / "catalog" / "catalog.json").read_text())
        product = catalog["products"][0]
        content = client.get("/v1/experiments/catalog-interleaved/content",
                             params={"user_id": "u1", "item_id": product["id"], "force_variant": "control"})
        assert content.status_code == 200, content.text
        body = content.json()
        assert body["variant"] == "control" and body["source"] == "catalog" and body["fallback"] is None, body
        assert body["content"] is not None and product["name"] in json.dumps(body["content"]), body

        listing = client.get("/demo/")
        assert listing.status_code == 200 and all(p["name"] in listing.text for p in catalog["products"])
        photo = (installed.site / "armor_ab" / "assets" / "catalog" / product["picture"]).read_bytes()
        assert f'src="/v1/images/{hashlib.sha256(photo).hexdigest()}"' in listing.text
        picture = client.get(f"/v1/images/{hashlib.sha256(photo).hexdigest()}")
        assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
        assert picture.content == photo
        assert client.get("/v1/sdk/armor-ab.js").status_code == 200

    dash_port = free_port()
    dash_log = installed.work / "dashboard.log"
    dashboard = _start([str(installed.cli), "dashboard", "--headless", "--port", str(dash_port), "--api", api,
                        "--no-auth"], installed, dash_log, ARMOR_AB_KEY=admin)
    processes.append(dashboard)
    dash = f"http://127.0.0.1:{dash_port}"
    health = _wait_for(f"{dash}/_stcore/health", dashboard, dash_log)
    assert health.text.strip() == "ok"
    page = httpx.get(f"{dash}/", timeout=30)
    assert page.status_code == 200 and "<html" in page.text.lower()

    # The page the server above hands a browser runs the installed app.py and its views: run it once headless.
    out = installed.python_out(
        "import json, armor_ab.dashboards as d\n"
        "from pathlib import Path\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file(str(Path(d.__file__).parent / 'app.py'), default_timeout=180).run()\n"
        "assert not at.exception, [e.value for e in at.exception]\n"
        "import armor_ab.dashboards.lib.api as lib\n"
        "print(json.dumps([at.title[0].value, lib.__file__]))",
        ARMOR_AB_API=api, ARMOR_AB_KEY=admin, ARMOR_AB_DASHBOARD_NO_AUTH="1",
    )
    title, lib_file = json.loads(out.strip().splitlines()[-1])
    assert title == "Experiments" and Path(lib_file).is_relative_to(installed.site)

    # Both stop cleanly on SIGTERM, the API's database process with it: nothing is left behind.
    assert _stop(dashboard), f"the dashboard left processes behind:\n{dash_log.read_text()[-3000:]}"
    assert _stop(server), f"the API left processes behind:\n{server_log.read_text()[-3000:]}"

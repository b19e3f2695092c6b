"""`make test` never passes with the browser tests silently skipped.

`make test` and `make test-fast` first run `system-deps`, which installs Chromium as root and fails loudly
(non-zero exit) when it is missing and cannot be installed; the pytest run exports ARMOR_AB_REQUIRE_BROWSER=1,
under which the browser tests fail instead of skipping. The recipe is run for real here, with `id` and
`apt-get` replaced by stubs on PATH (so nothing is ever installed) and CHROMIUM pointed at a temp path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

MAKEFILE = ROOT / "Makefile"
pytestmark = [pytest.mark.skipif(shutil.which("make") is None, reason="needs make"), pytest.mark.timeout(120)]


def _rule(target: str) -> tuple[list[str], str]:
    """(prerequisites, recipe text) of a target in the Makefile."""
    text = MAKEFILE.read_text()
    m = re.search(rf"^{re.escape(target)}:([^\n=]*)\n((?:\t[^\n]*\n?)*)", text, re.M)
    assert m, f"no rule for {target} in the Makefile"
    return m.group(1).split(), m.group(2)


@pytest.mark.parametrize("target", ["test", "test-fast"])
def test_test_targets_run_system_deps_and_require_the_browser(target: str) -> None:
    prereqs, recipe = _rule(target)
    assert "system-deps" in prereqs, prereqs
    assert "ARMOR_AB_REQUIRE_BROWSER=1" in recipe, recipe
    assert "system-deps" in (ROOT / ".ci" / "run").read_text()


def _system_deps(
    tmp_path: Path, *, uid: int, apt_rc: int, chromium: Path, node: Path = Path("/usr/bin/node"),
    promtool: Path | None = None, java: Path | None = None,
) -> tuple[subprocess.CompletedProcess, str]:
    stubs = tmp_path / "stubs"
    stubs.mkdir(exist_ok=True)
    calls = tmp_path / "apt-get.calls"
    (stubs / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (stubs / "apt-get").write_text(f'#!/bin/sh\necho "$@" >> {calls}\nexit {apt_rc}\n')
    for stub in stubs.iterdir():
        stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "CHROMIUM")}
    env["PATH"] = f"{stubs}{os.pathsep}{env.get('PATH', '')}"
    if promtool is None:  # present, whatever this machine has: the tests of the other packages are about those
        promtool = _present(tmp_path / "promtool")
    if java is None:
        java = _present(tmp_path / "java")
    done = subprocess.run(["make", "-s", "-C", str(ROOT), "system-deps", f"CHROMIUM={chromium}", f"NODE={node}",
                           f"PROMTOOL={promtool}", f"JAVA={java}"],
                          capture_output=True, text=True, env=env, timeout=60)
    return done, calls.read_text() if calls.exists() else ""


def test_system_deps_fails_loudly_without_chromium_when_not_root(tmp_path) -> None:
    done, apt = _system_deps(tmp_path, uid=1000, apt_rc=0, chromium=tmp_path / "missing" / "chromium")
    assert done.returncode != 0, done.stdout + done.stderr
    assert "sudo apt-get install -y chromium" in done.stderr and "missing" in done.stderr, done.stderr
    assert apt == ""  # it did not try to install without root


def test_system_deps_as_root_installs_and_fails_when_that_fails(tmp_path) -> None:
    missing = tmp_path / "missing" / "chromium"
    done, apt = _system_deps(tmp_path, uid=0, apt_rc=100, chromium=missing)
    assert done.returncode != 0 and "installing chromium failed" in done.stderr, done.stdout + done.stderr
    assert "update" in apt
    # apt-get "succeeds" but the browser is still not where the tests look: a failure, not a pass
    done, apt = _system_deps(tmp_path, uid=0, apt_rc=0, chromium=missing)
    assert done.returncode != 0 and "still missing" in done.stderr, done.stdout + done.stderr
    assert "install -y -q chromium" in apt


def _present(path: Path) -> Path:
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_system_deps_does_nothing_when_chromium_and_node_are_present(tmp_path) -> None:
    done, apt = _system_deps(tmp_path, uid=1000, apt_rc=1, chromium=_present(tmp_path / "chromium"),
                             node=_present(tmp_path / "node"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert apt == ""


def test_system_deps_installs_nodejs_when_node_is_missing(tmp_path) -> None:
    chromium, node = _present(tmp_path / "chromium"), tmp_path / "missing" / "node"
    done, apt = _system_deps(tmp_path, uid=1000, apt_rc=0, chromium=chromium, node=node)
    assert done.returncode != 0 and "sudo apt-get install -y nodejs" in done.stderr, done.stderr
    assert apt == ""
    done, apt = _system_deps(tmp_path, uid=0, apt_rc=0, chromium=chromium, node=node)
    assert "install -y -q nodejs" in apt and "chromium" not in apt.split("install", 1)[1], apt
    assert done.returncode != 0 and "nodejs was installed but" in done.stderr, done.stderr  # the stub installs nothing


def test_system_deps_installs_java_when_it_is_missing(tmp_path) -> None:
    """Spark's tests need a Java runtime: Debian's openjdk-17-jre-headless, installed like the others."""
    chromium, node = _present(tmp_path / "chromium"), _present(tmp_path / "node")
    java = tmp_path / "missing" / "java"
    done, apt = _system_deps(tmp_path, uid=1000, apt_rc=0, chromium=chromium, node=node, java=java)
    assert done.returncode != 0 and "sudo apt-get install -y openjdk-17-jre-headless" in done.stderr, done.stderr
    done, apt = _system_deps(tmp_path, uid=0, apt_rc=0, chromium=chromium, node=node, java=java)
    assert "install -y -q openjdk-17-jre-headless" in apt and "prometheus" not in apt, apt
    assert done.returncode != 0 and "openjdk-17-jre-headless was installed but" in done.stderr, done.stderr


def test_system_deps_installs_prometheus_when_promtool_is_missing(tmp_path) -> None:
    chromium, node = _present(tmp_path / "chromium"), _present(tmp_path / "node")
    promtool = tmp_path / "missing" / "promtool"
    done, apt = _system_deps(tmp_path, uid=1000, apt_rc=0, chromium=chromium, node=node, promtool=promtool)
    assert done.returncode != 0 and "sudo apt-get install -y prometheus" in done.stderr, done.stderr
    assert apt == ""
    done, apt = _system_deps(tmp_path, uid=0, apt_rc=0, chromium=chromium, node=node, promtool=promtool)
    assert "install -y -q prometheus" in apt and "nodejs" not in apt, apt
    assert done.returncode != 0 and "prometheus was installed but" in done.stderr, done.stderr  # the stub installs nothing
    done, apt = _system_deps(tmp_path, uid=0, apt_rc=100, chromium=chromium, node=node, promtool=promtool)
    assert done.returncode != 0 and "installing prometheus failed" in done.stderr, done.stderr


_NO_PROMTOOL_PLUGIN = '''
from pathlib import Path
import sys

def pytest_collection_finish(session):
    sys.modules["tests.test_alerts"].PROMTOOL = Path("/nonexistent/promtool")
'''


@pytest.mark.parametrize("required", [False, True], ids=["plain-pytest", "make-test"])
def test_alert_rule_tests_fail_instead_of_skipping_when_required(tmp_path, required: bool) -> None:
    """The promtool tests on a machine without it: skipped under plain pytest, failed under `make test`."""
    (tmp_path / "no_promtool.py").write_text(_NO_PROMTOOL_PLUGIN)
    env = {k: v for k, v in os.environ.items() if k != "ARMOR_AB_REQUIRE_BROWSER"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    if required:
        env["ARMOR_AB_REQUIRE_BROWSER"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no_promtool", "-rA",
         "tests/test_alerts.py", "-k", "valid or unit_tests"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=110,
    )
    out = done.stdout + done.stderr
    if required:
        assert done.returncode == 1, out[-3000:]
        assert "2 failed" in out and "skipped" not in out, out[-3000:]
        assert "/nonexistent/promtool is missing" in out and "make system-deps" in out, out[-3000:]
    else:
        assert done.returncode == 0, out[-3000:]
        assert "2 skipped" in out and "failed" not in out, out[-3000:]


_NO_CHROMIUM_PLUGIN = '''
from pathlib import Path
import sys

def pytest_collection_finish(session):
    for name in ("tests.test_web_e2e", "tests.test_dashboard_browser"):
        sys.modules[name].CHROMIUM = Path("/nonexistent/chromium")
'''


@pytest.mark.parametrize("required", [False, True], ids=["plain-pytest", "make-test"])
def test_browser_tests_fail_instead_of_skipping_when_required(tmp_path, required: bool) -> None:
    """The browser tests on a machine without Chromium: skipped under plain pytest, failed under `make test`."""
    (tmp_path / "no_chromium.py").write_text(_NO_CHROMIUM_PLUGIN)
    env = {k: v for k, v in os.environ.items() if k != "ARMOR_AB_REQUIRE_BROWSER"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path), env.get("PYTHONPATH")]))
    if required:
        env["ARMOR_AB_REQUIRE_BROWSER"] = "1"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no_chromium", "-rA",
         "tests/test_web_e2e.py", "tests/test_dashboard_browser.py"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=110,
    )
    out = done.stdout + done.stderr
    if required:
        assert done.returncode == 1, out[-3000:]
        assert "4 errors" in out and "skipped" not in out, out[-3000:]
        assert "/nonexistent/chromium is missing" in out and "make system-deps" in out, out[-3000:]
    else:
        assert done.returncode == 0, out[-3000:]
        assert "4 skipped" in out and "error" not in out, out[-3000:]

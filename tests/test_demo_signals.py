"""`make demo` stops everything it started on SIGINT, SIGTERM and SIGHUP sent to its own process.

A real `kill <pid>` reaches the demo alone, not its children (they run in sessions of their own): the demo
must stop the API with its database process, the dashboards and the simulator, say so, and exit 0.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (ppid, whole command line) of every process on the machine (``-ww``: never cut to a width)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,args="], capture_output=True, text=True, check=True).stdout
    procs = {}
    for line in out.splitlines():
        pid, ppid, *args = line.split(None, 2)
        procs[int(pid)] = (int(ppid), args[0] if args else "")
    return procs


def _descendants(root: int) -> dict[int, str]:
    procs = _processes()
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, args) in procs.items():
            if ppid == parent and pid not in found:
                found[pid] = args
                todo.append(pid)
    return found


def _start_demo(db: Path, port: int, dash_port: int, visitors: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "armor_ab.devtools.demo", "--db", str(db), "--port", str(port),
         "--dashboard-port", str(dash_port), "--visitors", str(visitors), "--no-content"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        # As a terminal starts it: a test run in the background (`make test &`, nohup) inherits an ignored SIGINT
        # or SIGHUP, which the demo, like any program, leaves ignored.
        preexec_fn=lambda: [signal.signal(s, signal.SIG_DFL) for s in (signal.SIGINT, signal.SIGHUP)],
    )


def _read_until(proc: subprocess.Popen, marker: str, timeout: float) -> str:
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if marker in line:
            break
    return "".join(lines)


def _stop_and_check(proc: subprocess.Popen, sig: signal.Signals, db: Path, port: int, dash_port: int,
                    children: dict[int, str]) -> None:
    os.kill(proc.pid, sig)  # `kill -<sig> <pid>`: the demo's process only, not its group
    try:
        rest = proc.communicate(timeout=90)[0]
    except subprocess.TimeoutExpired:
        still = subprocess.run(["ps", "-eo", "pid,ppid,pgid,etimes,args"], capture_output=True, text=True).stdout
        what = ("did not stop" if proc.poll() is None else
                f"exited with {proc.returncode}, but processes it started still hold its output,")
        pytest.fail(f"the demo {what} within 90 s of {sig.name}\n{still[-4000:]}")
    assert proc.returncode == 0, rest[-3000:]
    assert "[demo] stopped" in rest, rest[-3000:]
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{dash_port}/_stcore/health", timeout=2)
    # Nothing it started is left: neither the processes seen while it ran nor any naming its database or ports.
    deadline = time.monotonic() + 10
    while True:
        procs = _processes()
        left = {pid: args for pid, (_, args) in procs.items()
                if (pid in children and procs[pid][1] == children[pid])
                or str(db) in args or f"--port {dash_port}" in args or f"127.0.0.1:{port}" in args
                or f"--server.port {dash_port}" in args}
        left.pop(os.getpid(), None)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert not left, f"left running after {sig.name}: {left}"


def _kill_all(proc: subprocess.Popen, children: dict[int, str]) -> None:
    """After a failure: leave nothing behind for the next test (only processes still running what they ran)."""
    procs = _processes()
    for pid, args in children.items():
        if pid in procs and procs[pid][1] == args:
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)
    proc.stdout.close()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_demo_stops_everything_on_signal_while_serving(tmp_path, sig: signal.Signals) -> None:
    db = tmp_path / "demo" / "armor_ab.duckdb"
    port, dash_port = free_port(), free_port()
    proc = _start_demo(db, port, dash_port, visitors=50)
    children: dict[int, str] = {}
    try:
        out = _read_until(proc, "serving; press Ctrl-C", timeout=300)
        assert "serving; press Ctrl-C" in out, out[-3000:]
        for url in (f"http://127.0.0.1:{port}/healthz", f"http://127.0.0.1:{dash_port}/_stcore/health"):
            assert httpx.get(url, timeout=30).status_code == 200, url
        children = _descendants(proc.pid)
        commands = " ".join(children.values())
        # the API, its database process, and the dashboards (streamlit, exec'd by `armor-ab dashboard`)
        assert "armor_ab serve" in commands and "armor_ab.store.process" in commands, children
        assert "streamlit" in commands, children
        _stop_and_check(proc, sig, db, port, dash_port, children)
    finally:
        _kill_all(proc, children)


def test_demo_stops_the_simulator_on_sigterm(tmp_path) -> None:
    """A `kill` while the visitors are still being simulated stops the simulator too."""
    db = tmp_path / "demo" / "armor_ab.duckdb"
    port, dash_port = free_port(), free_port()
    proc = _start_demo(db, port, dash_port, visitors=1_000_000)
    children: dict[int, str] = {}
    try:
        out = _read_until(proc, "simulating 1000000 visitors", timeout=300)
        assert "simulating 1000000 visitors" in out, out[-3000:]
        deadline = time.monotonic() + 60
        while "armor_ab simulate" not in " ".join(children.values()) and time.monotonic() < deadline:
            time.sleep(0.3)
            children = _descendants(proc.pid)
        assert "armor_ab simulate" in " ".join(children.values()), children
        _stop_and_check(proc, signal.SIGTERM, db, port, dash_port, children)
    finally:
        _kill_all(proc, children)

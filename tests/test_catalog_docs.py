"""docs/catalog.md's walk from a CSV to served pages, run as written.

The doc's example files (a ``File `NAME`:`` line, then a fenced block) are written into a temporary
directory, the photos its catalog names are drawn there, and every command of its ```sh blocks runs in
order, in that directory: ``armor-ab`` as ``sys.executable -m armor_ab``, each ``--db`` in the
temporary directory, ``serve`` on a free port in the background (stopped at the end), ``curl`` through
httpx on the same URL with the same headers. ``VAR=$(command)`` keeps the command's output for later
``$VAR``; ``NAME=value command`` sets the command's environment. Each command must succeed, and the
last content request must return the generated, approved page. Change the doc and this runs the new walk.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw

from armor_ab.store.content import list_content, with_image_urls
from armor_ab.store.db import connect
from armor_ab.store.experiments import list_experiments
from tests.helpers.docs import doc_files as shared_doc_files
from tests.helpers.docs import sh_commands
from tests.helpers.platform import ROOT, free_port

DOC = ROOT / "docs" / "catalog.md"
CAPTURE = re.compile(r"^([A-Za-z_]\w*)=\$\((.*)\)$", re.S)
VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_]\w*=")


def doc_files(text: str) -> dict[str, str]:
    return shared_doc_files(text, "docs/catalog.md")


def doc_commands(text: str) -> list[str]:
    return sh_commands(text, "docs/catalog.md")


def draw_photo(path: Path, index: int) -> None:
    """A photo for the doc's catalog, in the format its suffix names."""
    formats = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}
    assert path.suffix.lower() in formats, f"the doc's catalog names a photo {path.name} of no known type"
    image = Image.new("RGB", (80, 80), (250, 248, 240))
    ImageDraw.Draw(image).polygon([(40, 8 + index), (72, 70), (8, 70)], fill=(60 * index % 256, 90, 160))
    buf = io.BytesIO()
    image.save(buf, format=formats[path.suffix.lower()])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def catalog_rows(path: Path) -> list[dict]:
    if path.suffix == ".csv":
        with path.open(newline="") as fh:
            return list(csv.DictReader(fh))
    if path.suffix in (".jsonl", ".ndjson"):
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    raise AssertionError(f"the doc imports {path.name}: this test draws photos for CSV or JSON lines catalogs")


def option(args: list[str], name: str) -> str | None:
    return args[args.index(name) + 1] if name in args and args.index(name) + 1 < len(args) else None


@dataclass
class Walk:
    """The state of the walk: the directory, the shell variables, the server, what each step returned."""

    tmp: Path
    variables: dict[str, str] = field(default_factory=dict)
    ports: dict[str, str] = field(default_factory=dict)  # the doc's port -> the test's
    server: subprocess.Popen | None = None
    server_log: Path | None = None
    catalog: dict[str, dict] = field(default_factory=dict)  # the imported rows by id
    pages: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # approved pages when serve started
    stored: dict[tuple[str, str, str], dict] = field(default_factory=dict)  # every page: status, verdict, failing
    responses: list[tuple[str, httpx.Response]] = field(default_factory=list)

    def expand(self, command: str) -> str:
        def value(m: re.Match) -> str:
            name = m.group(1) or m.group(2)
            assert name in self.variables, f"{command!r} uses ${name}, which no earlier command of the doc set"
            return self.variables[name]

        for doc_port, port in self.ports.items():
            command = re.sub(rf"(//(?:127\.0\.0\.1|localhost)):{doc_port}\b", rf"\1:{port}", command)
        return VARIABLE.sub(value, command)

    def run(self, command: str) -> None:
        captured = CAPTURE.match(command)
        if captured:
            out = self.execute(captured.group(2), capture=True)
            assert out.strip() and "\n" not in out.strip(), f"{command!r} printed {out!r}, not one value"
            self.variables[captured.group(1)] = out.strip()
            return
        background = command.endswith("&")
        self.execute(command.rstrip("&").strip(), background=background)

    def execute(self, command: str, capture: bool = False, background: bool = False) -> str:
        args = shlex.split(self.expand(command))
        env = {}
        while args and ENV_ASSIGNMENT.match(args[0]):
            name, _, value = args.pop(0).partition("=")
            env[name] = value
        assert args, f"{command!r}: no command"
        if args[0] == "curl":
            assert not background and not env, f"{command!r}: curl runs in the foreground, with no variables"
            return self.curl(command, args[1:])
        assert args[0] == "armor-ab", f"{command!r}: the walk runs armor-ab and curl, nothing else"
        args = self.armor_ab_args(args[1:])
        if args[0] == "catalog" and args[1] == "import":
            self.prepare_import(args)
        if args[0] == "serve":
            assert background, f"{command!r}: the walk must go on while the server runs (end it with &)"
            self.start_server(args, env)
            return ""
        assert not background, f"{command!r}: only serve runs in the background"
        r = subprocess.run([sys.executable, "-m", "armor_ab", *args], cwd=self.tmp, env={**os.environ, **env},
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, (f"{command!r} exited {r.returncode}\nstdout:\n{r.stdout[-3000:]}\n"
                                   f"stderr:\n{r.stderr[-3000:]}")
        return r.stdout

    def armor_ab_args(self, args: list[str]) -> list[str]:
        """The doc's arguments with each --db in the temporary directory and serve's port a free one."""
        args = list(args)
        if "--db" in args:
            i = args.index("--db") + 1
            args[i] = str(self.tmp / Path(args[i]).name)
        if args and args[0] == "serve":
            if "--port" not in args:
                args += ["--port", "8000"]  # serve's default
            i = args.index("--port") + 1
            self.ports.setdefault(args[i], str(free_port()))
            args[i] = self.ports[args[i]]
        return args

    def prepare_import(self, args: list[str]) -> None:
        """Draw the photos the catalog file names, where the import looks for them; keep its rows."""
        file = self.tmp / args[2]
        assert file.is_file(), f"the doc imports {args[2]}, which it does not show (File `{args[2]}`:)"
        images = self.tmp / (option(args, "--images") or str(Path(args[2]).parent))
        images.mkdir(parents=True, exist_ok=True)
        for index, row in enumerate(catalog_rows(file)):
            self.catalog[row["id"]] = row
            if row.get("image"):
                draw_photo(images / row["image"], index)

    def start_server(self, args: list[str], env: dict[str, str]) -> None:
        assert self.server is None, "the doc starts a second server"
        db = option(args, "--db")
        if db is not None:  # the pages the server starts with, read before it owns the database
            con = connect(Path(db), read_only=True)
            try:
                for rec in list_experiments(con):
                    for row in list_content(con, rec.key):
                        self.stored[(rec.key, row.variant, row.item_id)] = {
                            "status": row.status, "verdict": row.verdict, "failing": row.failing()}
                        if row.status == "approved":
                            self.pages[(rec.key, row.variant, row.item_id)] = with_image_urls(row.content)
            finally:
                con.close()
        self.server_log = self.tmp / "serve.log"
        with self.server_log.open("ab") as log:
            self.server = subprocess.Popen([sys.executable, "-m", "armor_ab", *args], cwd=self.tmp,
                                           env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                                           start_new_session=True)
        url = f"http://127.0.0.1:{option(args, '--port')}/healthz"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            assert self.server.poll() is None, f"serve exited {self.server.returncode}:\n{self.log()}"
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"serve did not answer {url} in 120 s:\n{self.log()}")

    def curl(self, command: str, args: list[str]) -> str:
        """curl's GET with -H headers (-s, -S, -f change nothing here: a non-200 fails the step)."""
        headers: dict[str, str] = {}
        urls: list[str] = []
        it = iter(args)
        for arg in it:
            if arg in ("-H", "--header"):
                name, _, value = next(it).partition(":")
                headers[name.strip()] = value.strip()
            elif re.fullmatch(r"-[sSf]+|--silent|--show-error|--fail", arg):
                continue
            elif arg.startswith("http://") or arg.startswith("https://"):
                urls.append(arg)
            else:
                raise AssertionError(f"{command!r}: this test's curl knows -s, -S, -f and -H, not {arg!r}")
        assert len(urls) == 1, f"{command!r}: expected one URL"
        r = httpx.get(urls[0], headers=headers, timeout=60)
        assert r.status_code == 200, f"{command!r}: {r.status_code} {r.text[:2000]}"
        self.responses.append((urls[0], r))
        return r.text

    def log(self) -> str:
        return self.server_log.read_text()[-3000:] if self.server_log and self.server_log.exists() else ""

    def stop(self) -> None:
        if self.server is not None and self.server.poll() is None:
            self.server.send_signal(signal.SIGTERM)
            try:
                self.server.wait(30)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait(10)


def test_the_doc_shows_its_files_and_commands() -> None:
    text = DOC.read_text()
    files = doc_files(text)
    commands = doc_commands(text)
    # The walk the doc promises: from the import to a content request, through every step between.
    steps = ["armor-ab catalog import", "armor-ab keys create", "armor-ab experiment validate",
             "armor-ab experiment apply", "armor-ab experiment start", "armor-ab content generate",
             "armor-ab content approve", "armor-ab serve", "/content?"]
    found = [next((i for i, c in enumerate(commands) if step in c), None) for step in steps]
    assert None not in found, f"the walk lacks {[s for s, i in zip(steps, found, strict=True) if i is None]}"
    assert found == sorted(found), "the walk's steps are out of order"
    for command in commands:
        for name in re.findall(r"(?:import|validate|apply) (\S+\.(?:csv|jsonl|ndjson|yaml))", command):
            assert name in files, f"{command!r} names {name}, which the doc does not show"


@pytest.mark.slow  # generates the doc's pages with the shipped model and serves them: a minute or two
@pytest.mark.timeout(900)
def test_the_walk_from_a_csv_to_served_pages_runs_as_written(tmp_path: Path) -> None:
    text = DOC.read_text()
    for name, body in doc_files(text).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(body)
    walk = Walk(tmp_path)
    try:
        for command in doc_commands(text):
            walk.run(command)
        assert walk.server is not None, "the walk never starts the server"
        assert walk.server.poll() is None, f"the server stopped during the walk:\n{walk.log()}"
    finally:
        walk.stop()
    assert walk.catalog, "the walk imports no catalog"
    contents = [(url, r.json()) for url, r in walk.responses if re.search(r"/v1/experiments/[^/]+/content\?", url)]
    assert contents, "the walk asks for no content"
    for url, body in contents:
        item = walk.catalog.get(body["item_id"])
        assert item is not None, f"{url}: item {body['item_id']} is not in the doc's catalog"
        if body["source"] == "catalog":  # control copy: the item's own description
            assert body["content"]["segments"] == [{"type": "text", "text": item["description"]}], url
    url, last = contents[-1]
    # The demo model writes a pump's page for a lamp: the guardrails fail it, as the doc says, and the
    # ARMOR visitor gets the item's own description instead.
    assert (last["variant"], last["source"], last["fallback"]) == ("armor", "catalog", "guardrail"), (
        f"the doc's last content request {url} did not get control's copy for a page the guardrails fail: {last}")
    stored = walk.stored[(last["experiment"], "armor", last["item_id"])]
    assert stored["verdict"] == "fail" and stored["status"] == "pending"
    assert {"spec_fidelity", "image_text"} <= set(stored["failing"]), stored["failing"]
    assert f"the catalog's power is {walk.catalog[last['item_id']]['spec_power']}" in text  # the doc's example
    for url, r in walk.responses:
        if "/v1/catalog/items" in url:
            for listed in r.json()["items"]:
                row = walk.catalog[listed["id"]]
                assert (listed["name"], listed["description"]) == (row["name"], row["description"])

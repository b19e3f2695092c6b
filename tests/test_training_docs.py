"""docs/training.md's walk for a manufacturer, run as written: import, init, train, eval, engine, pages.

In a temporary directory: ``shop.csv`` and ``photos/`` are the twelve-product kitchen catalog
(``tests/helpers/second_catalog.py``), ``InternVL2_5-1B-hf`` a tiny InternVL checkpoint written by
transformers (Qwen2 LM, BPE tokenizer with a chat template), ``chameleon/tokenizer`` a Chameleon-format
VQGAN, and the doc's example files as shown. Then every command of the section's ```sh blocks runs in order
(``armor-ab`` as ``sys.executable -m armor_ab``). One liberty, said in the doc: a training run without
``--scale`` gets ``--scale 0.01``, as the doc's own smoke run has. Each command must succeed; the trained
model, its evaluation, its engine and the pages it wrote must exist and say what made them.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.helpers.base_models import chameleon_vqgan, tiny_internvl
from tests.helpers.content import stored_pages
from tests.helpers.docs import doc_files, sh_commands
from tests.helpers.platform import ROOT
from tests.helpers.second_catalog import write_catalog

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]
DOC = ROOT / "docs" / "training.md"


def _section(text: str) -> str:
    start = text.index("## Your model on your catalog")
    return text[start:text.index("\n## ", start + 1)]


def test_the_walk_of_a_manufacturer_runs_as_written(tmp_path) -> None:
    section = _section(DOC.read_text())
    commands = sh_commands(section, "docs/training.md")
    for name, body in doc_files(section, "docs/training.md").items():
        (tmp_path / name).write_text(body)
    csv_path, photos, rows, _ = write_catalog(tmp_path)
    shutil.move(csv_path, tmp_path / "shop.csv")
    assert photos == tmp_path / "photos"
    tiny_internvl(tmp_path / "InternVL2_5-1B-hf", "qwen2", shards=2)
    chameleon_vqgan(tmp_path / "chameleon" / "tokenizer")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ran = []
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "armor-ab", f"the walk runs {words[0]!r}; only armor-ab commands are run here"
        if words[1] == "train" and "--scale" not in words:
            words += ["--scale", "0.01"]
        proc = subprocess.run([sys.executable, "-m", "armor_ab", *words[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        ran.append(words[1])
    assert ran[:3] == ["catalog", "model", "train"] and "eval" in ran and ran[-1] == "content"
    model = tmp_path / "models" / "armor-shop"
    report = json.loads((model / "training.json").read_text())
    assert [str(s) for s in report["stages"]] == ["1", "2", "3"]
    assert all(stage["frozen_unchanged"] for stage in report["stages"].values())
    manifest = json.loads((tmp_path / "engines" / "armor-shop" / "onnx" / "manifest.json").read_text())
    assert manifest["tokenizer"]["kind"] == "hf"
    pages = list(stored_pages(tmp_path / "shop.duckdb", "shop-pages").values())
    assert len(pages) == len(rows)
    assert {page.content["metadata"]["model"] for page in pages} == {"armor-shop"}

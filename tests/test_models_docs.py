"""docs/models.md's walk from InternVL weights to an ARMOR model and its engine, run as written.

The doc's inputs are made in a temporary directory at the paths it names: the ``--base`` directory is a tiny
InternVL checkpoint written by transformers (a Qwen2 language model, as InternVL2.5-1B's) with its BPE
tokenizer, and ``--vqgan`` a Chameleon-format ``vqgan.ckpt`` + ``vqgan.yaml``. Then every command of the
doc's ```sh blocks runs in order in that directory (``armor-ab`` as ``sys.executable -m armor_ab``) and
must succeed; the outputs it names must exist and say what made them.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys

from tests.helpers.base_models import chameleon_vqgan, tiny_internvl
from tests.helpers.docs import sh_commands
from tests.helpers.platform import ROOT

DOC = ROOT / "docs" / "models.md"


def _option(commands: list[str], command: str, option: str) -> str:
    for line in commands:
        words = shlex.split(line)
        if words[:3] == ["armor-ab", *command.split()] or words[:2] == ["armor-ab", command]:
            if option in words:
                return words[words.index(option) + 1]
    raise AssertionError(f"docs/models.md runs no `armor-ab {command} ... {option}`")


def test_every_command_of_the_models_doc_runs(tmp_path) -> None:
    text = DOC.read_text()
    commands = sh_commands(text, "docs/models.md")
    base = _option(commands, "model init", "--base")
    vqgan = _option(commands, "model init", "--vqgan")
    out = _option(commands, "model init", "--out")
    tiny_internvl(tmp_path / base, "qwen2", shards=2)
    chameleon_vqgan(tmp_path / vqgan)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for command in commands:
        words = shlex.split(command)
        assert words[0] == "armor-ab", f"docs/models.md runs {words[0]!r}; only armor-ab commands are run here"
        proc = subprocess.run([sys.executable, "-m", "armor_ab", *words[1:]], cwd=tmp_path, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, f"{command}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    model = tmp_path / out
    provenance = json.loads((model / "armor_init.json").read_text())
    assert provenance["made_by"] == "armor-ab model init"
    assert json.loads((model / "config.json").read_text())["tokenizer_kind"] == "hf"
    for line in commands:  # every generate wrote its page, made by the doc's model
        if line.startswith("armor-ab generate"):
            page = json.loads((tmp_path / _option([line], "generate", "--out") / "content.json").read_text())
            assert page["metadata"]["model"]
            assert not re.search(r"<\|im_end\|>|<imgbos>|<imgcode_", json.dumps(page["segments"]))
    assert "ENGINE_SECTION" not in text

"""Tiny ARMOR models with the Hugging Face tokenizer, one per supported LM, and their ONNX engines: built once
per session and shared by ``test_engine_hf`` and ``test_generate_hf``.

Each model is what a user makes of their own checkpoint: an InternVL checkpoint written by transformers
(``base_models.tiny_internvl``: a Llama or a Qwen2 LM, the tiny BPE tokenizer with a ChatML template) and a
Chameleon VQGAN, turned into an ARMOR directory by ``armor-ab model init``'s ``init_from_base``. Its engine
is built by the documented command, as a user runs it - in the directory that holds the model, in a process
of its own (the two builds run side by side; each export is mostly one core's work):

    armor-ab engine build --recipe own-model --model armor-<lm> --out engines   # -> engines/armor-<lm>/onnx
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.base_models import chameleon_vqgan, tiny_internvl

LMS = ("llama", "qwen2")
ROOT = Path(__file__).resolve().parents[2]  # the checkout
BUILD_TIMEOUT_S = 300


@dataclass(frozen=True)
class HFModel:
    lm: str  # "llama" | "qwen2"
    root: Path  # the working directory of the builds: holds the models and engines/
    name: str  # armor-<lm>: the model directory's name, and so the engine's
    model_dir: Path  # root / name
    engine_dir: Path  # root / engines / name / onnx
    build_output: str  # what `armor-ab engine build` printed (stdout)


_BUILT: dict[str, HFModel] = {}


def hf_models(factory: pytest.TempPathFactory) -> dict[str, HFModel]:
    """Every LM's model and ONNX engine (built on first use, parity checked by the build)."""
    if not _BUILT:
        from armor_ab.model.from_base import init_from_base

        root = factory.mktemp("hf-models")
        vqgan = chameleon_vqgan(root / "vqgan")
        for lm in LMS:
            base = tiny_internvl(root / f"base-{lm}", lm, shards=2)  # sharded, as InternVL checkpoints are
            init_from_base(base, vqgan, root / f"armor-{lm}", adapter_layers=1)
        # The builds run in the models' directory: this checkout's armor_ab first on the path, as in the tests.
        path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        env = os.environ | {"PYTHONPATH": path}
        builds = {
            lm: subprocess.Popen(
                [sys.executable, "-m", "armor_ab", "engine", "build", "--recipe", "own-model",
                 "--model", f"armor-{lm}", "--out", "engines", "--threads", "1"],
                cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for lm in LMS
        }
        outputs = {lm: proc.communicate(timeout=BUILD_TIMEOUT_S) for lm, proc in builds.items()}
        for lm, (out, err) in outputs.items():
            assert builds[lm].returncode == 0, f"{lm}: {out}\n{err[-3000:]}"
            name = f"armor-{lm}"
            _BUILT[lm] = HFModel(lm, root, name, root / name, root / "engines" / name / "onnx", out)
    return dict(_BUILT)


def hf_model(factory: pytest.TempPathFactory, lm: str) -> HFModel:
    return hf_models(factory)[lm]

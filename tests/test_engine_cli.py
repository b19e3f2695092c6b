"""`armor-ab generate --backend onnxruntime --engine DIR`, `armor-ab engine verify`, and TensorRT without CUDA."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from armor_ab.cli import app
from armor_ab.engine.backends.tensorrt import tensorrt_missing_reason
from armor_ab.engine.errors import BackendUnavailable
from tests.helpers.engine import TINY_RECIPE, tiny_engine_dir

GREEDY = ["--temperature", "0", "--image-temperature", "0", "--max-new-tokens", "6", "--guidance", "3"]


@pytest.fixture(scope="module")
def engine_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_engine_dir(tmp_path_factory)


def test_generate_over_onnxruntime_equals_the_torch_path(engine_dir: Path, tmp_path: Path) -> None:
    common = ["generate", "--prompt", "a blue mug", "--seed", "3", *GREEDY, "--threads", "1"]
    ort = CliRunner().invoke(
        app,
        [*common, "--backend", "onnxruntime", "--engine", str(engine_dir), "--out", str(tmp_path / "ort")],
    )
    assert ort.exit_code == 0, ort.output
    assert "RANDOM" in ort.output  # the engine's manifest says its weights are random
    ref = CliRunner().invoke(app, [*common, "--model", "armor-tiny", "--out", str(tmp_path / "torch")])
    assert ref.exit_code == 0, ref.output
    a = json.loads((tmp_path / "ort" / "content.json").read_text())
    b = json.loads((tmp_path / "torch" / "content.json").read_text())
    assert a == b and a["metadata"]["model"] == "armor-tiny"


def test_generate_refuses_a_bad_engine_before_generating(engine_dir: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(engine_dir, bad)
    (bad / "embed.onnx").write_bytes(b"\x08\x07")
    out = tmp_path / "out"
    args = ["generate", "--prompt", "x", "--backend", "onnxruntime", "--engine", str(bad), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "embed.onnx" in result.output
    assert not out.exists()
    mismatch = CliRunner().invoke(app, [*args[:-2], "--model", "armor-demo", "--out", str(out)])
    assert mismatch.exit_code == 2 and "manifest.json" in mismatch.output


def test_generate_backend_options_are_checked(engine_dir: Path, tmp_path: Path) -> None:
    no_engine = CliRunner().invoke(
        app, ["generate", "--prompt", "x", "--backend", "onnxruntime", "--out", str(tmp_path)]
    )
    assert no_engine.exit_code == 2 and "--engine" in no_engine.output
    no_model = CliRunner().invoke(app, ["generate", "--prompt", "x", "--out", str(tmp_path)])
    assert no_model.exit_code == 2 and "--model" in no_model.output


def test_engine_verify(engine_dir: Path) -> None:
    ok = CliRunner().invoke(app, ["engine", "verify", str(engine_dir), "--model", "armor-tiny"])
    assert ok.exit_code == 0, ok.output
    assert "verified" in ok.output and "max |diff|" in ok.output
    wrong = CliRunner().invoke(app, ["engine", "verify", str(engine_dir), "--model", "armor-demo"])
    assert wrong.exit_code == 2 and "manifest.json" in wrong.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: TensorRT may well run")
def test_tensorrt_refuses_cleanly_without_cuda(engine_dir: Path, tmp_path: Path) -> None:
    import armor_ab.engine.backends.tensorrt  # noqa: F401 - imports cleanly without tensorrt / CUDA

    assert "CUDA" in tensorrt_missing_reason()
    args = ["engine", "build", "--recipe", str(TINY_RECIPE), "--backend", "tensorrt", "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "CUDA/TensorRT is missing" in result.output and "Traceback" not in result.output
    assert not any(tmp_path.iterdir())  # refused before doing any work
    gen = CliRunner().invoke(
        app,
        [
            "generate",
            "--prompt",
            "x",
            "--backend",
            "tensorrt",
            "--engine",
            str(engine_dir),
            "--out",
            str(tmp_path),
        ],
    )
    assert gen.exit_code == 2 and "CUDA" in gen.output
    from armor_ab.engine.loader import open_engine_backend

    with pytest.raises(BackendUnavailable, match="CUDA"):
        open_engine_backend(engine_dir, "tensorrt")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")
def test_gpu_check_script_refuses_cleanly_without_cuda(tmp_path: Path) -> None:
    import os
    import subprocess

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(
        ["bash", str(root / "engine" / "gpu_check.sh")], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 3, done.stderr
    assert "no CUDA" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "gpu_check.json").exists()

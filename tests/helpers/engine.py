"""The session's armor-tiny ONNX engine, built once by the real CLI and shared by the ``test_engine_*`` modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
TINY_RECIPE = ROOT / "engine" / "recipes" / "armor-tiny.yaml"
_BUILT: dict[str, Path] = {}


def tiny_engine_dir(factory: pytest.TempPathFactory) -> Path:
    """engine/build/armor-tiny/onnx, built once per session by `armor-ab engine build` into a temp root."""
    if "onnx" not in _BUILT:
        from armor_ab.cli import app

        root = factory.mktemp("engine-build")
        args = ["engine", "build", "--recipe", str(TINY_RECIPE), "--backend", "onnx", "--out", str(root)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        _BUILT["onnx"] = root / "armor-tiny" / "onnx"
        _BUILT["cli_output"] = result.output  # type: ignore[assignment]
    return _BUILT["onnx"]

"""The session's armor-tiny ONNX engine, built once by the real CLI and shared by the ``test_engine_*`` modules."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from armor_ab.assets import build_recipe

TINY_RECIPE = build_recipe("armor-tiny")
_BUILT: dict[str, Path] = {}
_CLI_OUTPUT: dict[str, str] = {}


def tiny_engine_dir(factory: pytest.TempPathFactory) -> Path:
    """engine/build/armor-tiny/onnx, built once per session by `armor-ab engine build` into a temp root."""
    if "onnx" not in _BUILT:
        from armor_ab.cli import app

        root = factory.mktemp("engine-build")
        args = ["engine", "build", "--recipe", str(TINY_RECIPE), "--backend", "onnx", "--out", str(root)]
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output + repr(result.exception)
        _BUILT["onnx"] = root / "armor-tiny" / "onnx"
        _CLI_OUTPUT["onnx"] = result.output
    return _BUILT["onnx"]


def tiny_engine_build_output(factory: pytest.TempPathFactory) -> str:
    """What `armor-ab engine build` printed when it built the session's armor-tiny ONNX engine."""
    tiny_engine_dir(factory)
    return _CLI_OUTPUT["onnx"]

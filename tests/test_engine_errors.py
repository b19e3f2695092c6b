"""Bad engines fail at load time with an ``EngineError`` that names the file: missing, truncated, corrupt,
config mismatch, shape mismatch. Each case damages a copy of the session's armor-tiny ONNX engine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from armor_ab.engine.errors import EngineError
from armor_ab.engine.loader import open_engine_backend, open_engine_generator
from armor_ab.engine.manifest import file_record, verify_engine_dir
from armor_ab.model import get_config
from tests.helpers.engine import tiny_engine_dir


@pytest.fixture()
def engine(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    copy = tmp_path / "onnx"
    shutil.copytree(tiny_engine_dir(tmp_path_factory), copy)
    return copy


def _edit_manifest(engine: Path, edit) -> None:
    path = engine / "manifest.json"
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _load_error(engine: Path, **kw) -> EngineError:
    with pytest.raises(EngineError) as info:
        open_engine_backend(engine, "onnxruntime", threads=1, **kw)
    return info.value


def test_intact_copy_loads_and_answers_like_the_original(
    engine: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The control case: the copy every other test damages is, undamaged, the same engine: it verifies (every
    # file's SHA-256, the config, the graphs' shapes), its graphs answer like the original's, and a whole
    # generation over it (text and an image, guided) is the original's, token for token and pixel for pixel.
    import torch

    from armor_ab.model import SamplingConfig

    cfg = get_config("armor-tiny")
    manifest, config = verify_engine_dir(engine, cfg, backend="onnx")
    assert config.config_hash() == cfg.config_hash() == manifest.config_hash
    original_dir = tiny_engine_dir(tmp_path_factory)
    copy = open_engine_generator(engine, "onnxruntime", cfg, threads=1)
    original = open_engine_generator(original_dir, "onnxruntime", cfg, threads=1)
    try:
        assert copy.backend.directory == engine and original.backend.directory == original_dir
        assert copy.backend.manifest.to_json() == original.backend.manifest.to_json() == manifest.to_json()
        h = torch.randn(3, cfg.text_config.hidden_size, generator=torch.Generator().manual_seed(0))
        logits = copy.backend.text_head(h)
        assert logits.shape[0] == 3 and torch.isfinite(logits).all()
        assert torch.equal(logits, original.backend.text_head(h))
        settings = SamplingConfig(max_new_tokens=8, max_images=1, seed=3, guidance_scale=3.0,
                                  text_logit_bias={cfg.imgbos_id: 3.0})
        prompts = ["a blue mug", "a lamp"]
        a, b = copy.generate(prompts, settings=settings), original.generate(prompts, settings=settings)
        assert all(c.segments for c in a.contents)  # it generated something
        assert [c.to_json_str() for c in a.contents] == [c.to_json_str() for c in b.contents]
        assert [i.png for c in a.contents for i in c.images] == [i.png for c in b.contents for i in c.images]
        assert sum(copy.backend.calls.values()) > 0  # it ran on the copy's graphs, not elsewhere
    finally:
        copy.backend.close()
        original.backend.close()


def test_missing_file(engine: Path) -> None:
    (engine / "decode.onnx").unlink()
    err = _load_error(engine)
    assert err.path == engine / "decode.onnx" and "missing" in str(err) and "decode.onnx" in str(err)


def test_missing_manifest(engine: Path) -> None:
    (engine / "manifest.json").unlink()
    assert "manifest.json" in str(_load_error(engine))


def test_truncated_file(engine: Path) -> None:
    path = engine / "prefill.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    err = _load_error(engine)
    assert err.path == path and "truncated" in str(err)


def test_corrupt_file_fails_the_sha256_check(engine: Path) -> None:
    path = engine / "adapter.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one flipped byte (a weight): only the hash can tell
    path.write_bytes(bytes(data))
    err = _load_error(engine)
    assert err.path == path and "SHA-256" in str(err)


def test_engine_for_another_model_config(engine: Path) -> None:
    err = _load_error(engine, expected_config=get_config("armor-demo"))
    assert err.path == engine / "manifest.json" and "rebuild" in str(err)


def test_manifest_config_edited_after_the_build(engine: Path) -> None:
    _edit_manifest(engine, lambda d: d["config"]["text_config"].update(hidden_size=96))
    err = _load_error(engine)
    assert err.path == engine / "manifest.json" and "hash" in str(err)


def test_graph_file_with_the_wrong_shapes(engine: Path) -> None:
    # A valid ONNX file, hashed in the manifest, but the wrong graph: text_head's I/O where visual_head's belongs.
    shutil.copyfile(engine / "text_head.onnx", engine / "visual_head.onnx")
    _edit_manifest(
        engine, lambda d: d["files"].update({"visual_head.onnx": file_record(engine / "visual_head.onnx")})
    )
    err = _load_error(engine)
    assert err.path == engine / "visual_head.onnx" and "shape mismatch" in str(err)


def test_manifest_declaring_shapes_the_config_does_not_imply(engine: Path) -> None:
    def edit(d: dict) -> None:
        d["graphs"]["text_head"]["outputs"][0]["shape"] = ["rows", 999]

    _edit_manifest(engine, edit)
    err = _load_error(engine)
    assert err.path == engine / "text_head.onnx" and "shape mismatch" in str(err)


def test_wrong_input_shape_at_run_time_is_an_engine_error(engine: Path) -> None:
    import torch

    be = open_engine_backend(engine, "onnxruntime", threads=1)
    with pytest.raises(EngineError, match="text_head.onnx"):
        be.text_head(torch.zeros(2, 65))  # hidden size is 64

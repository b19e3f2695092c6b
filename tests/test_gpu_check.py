"""engine/gpu_check.sh on a machine without a GPU: the dry run runs to its end, the real run refuses cleanly,
and the pieces the GPU run relies on (the roofline arithmetic, the figures, the carried-wheel checks, the
stage caps) do what they say."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import torch

from armor_ab.engine import gpu_check
from armor_ab.engine.gpu_check import FULL, BackendTimeout, Roofline, Sizes, figures, time_limit

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "engine" / "gpu_check.sh"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the check would run")


def _layer_params(text) -> int:
    """One decoder layer of the config's LM (Llama: no biases; Qwen2: q/k/v biases), two RMSNorms."""
    h, heads, kv_heads = text.hidden_size, text.num_attention_heads, text.num_key_value_heads
    head_dim = getattr(text, "head_dim", None) or h // heads
    kv = kv_heads * head_dim
    bias = (h + 2 * kv) if text.model_type == "qwen2" else 0
    return h * h + 2 * h * kv + h * h + bias + 3 * h * text.intermediate_size + 2 * h


def test_roofline_counts_the_bytes_each_step_reads() -> None:
    from armor_ab.model import get_config
    from armor_ab.model.modeling import ArmorForInterleavedGeneration

    cfg = get_config("armor-tiny")
    text = cfg.text_config
    roof = Roofline(ArmorForInterleavedGeneration(cfg))  # fp32: 4 bytes a parameter
    h, layer = text.hidden_size, _layer_params(text)
    w = roof.w
    assert w["lm_layers"] == 4 * (text.num_hidden_layers * layer + h)
    assert w["text_head"] == 4 * h * (cfg.text_vocab_size + 1)
    assert w["adapter"] == 4 * (cfg.adapter_num_layers * layer + h)
    assert w["visual_head"] == 4 * h * cfg.visual_head_size
    head_dim = h // text.num_attention_heads
    assert roof.kv_lm == 2 * text.num_hidden_layers * text.num_key_value_heads * head_dim * 4
    assert roof.text_step(10, 3) == w["lm_layers"] + w["text_head"] + 3 * (w["embedding_row"] + 10 * roof.kv_lm)

    # Text only: the prefill (weights once) and the first head, then one step per further token.
    prompt, n = 7, 5
    expected = w["lm_layers"] + w["text_head"] + sum(roof.text_step(prompt + i, 2) for i in range(1, n))
    assert roof.generation_bytes(prompt, n, 0, 2) == expected
    # One guided image: catch-up chunks, N code steps on 2B rows, <imgend> on B rows, nothing after it.
    n_codes = cfg.codes_per_image
    one = w["lm_layers"] + w["text_head"] + w["lm_layers"] + w["adapter"]
    one += sum(roof.code_step(prompt + 1 + i, 2) for i in range(n_codes)) + roof.lm_step(prompt + 1 + n_codes, 1)
    assert roof.generation_bytes(prompt, 1, 1, 1) == one
    # The plan's rates are bandwidth / bytes.
    plan = roof.plan(prompt, Sizes(text_long=n, batch=2), bandwidth=1e9)
    assert plan["pages_per_s"] == pytest.approx(1e9 / plan["bytes"]["page"])
    assert plan["text_tokens_per_s"]["batch_2"] == pytest.approx(2 * n * 1e9 / plan["bytes"]["text_batch_2"])


def test_figures_put_each_rate_beside_its_roofline() -> None:
    sizes = Sizes(text_short=8, text_long=72, batch=16)
    runs = {
        "text_batch_1_short": {"seconds": 0.2},
        "text_batch_1": {"seconds": 1.0},
        "text_batch_16": {"seconds": 2.0},
        "image_batch_1": {"seconds": 3.0},
        "page_batch_1": {"seconds": 6.0},
        "image_batch_16": {"skipped": "would take about 9 s; 5 s left"},
    }
    f = figures(runs, sizes, roofline=None, bandwidth=1e12, prompt_len=60, codes=256)
    assert f["text_tokens_per_s"] == {"batch_1": 72.0, "batch_16": 16 * 72 / 2.0}
    assert f["images_per_s"] == {"batch_1": pytest.approx(1 / 3)}  # batch 16 was skipped
    assert f["pages_per_s"] == {"batch_1": pytest.approx(1 / 6)}
    assert f["decode"]["step_s"] == pytest.approx(0.8 / 64)


def test_the_wheel_list_pins_what_the_tests_run_with() -> None:
    """engine/gpu_wheels.txt carries the versions this environment tests: same name, same version."""
    import importlib.metadata as md

    pins = gpu_check.read_wheel_list(ROOT / "engine" / "gpu_wheels.txt")
    assert {"transformers", "huggingface-hub", "pydantic", "pydantic-core", "pydantic-settings"} <= set(pins)
    for name, version in pins.items():
        try:
            installed = md.version(name)
        except md.PackageNotFoundError:
            continue
        assert installed == version, f"{name}: pinned {version} in engine/gpu_wheels.txt, tested with {installed}"


def test_wheel_checks_catch_a_wrong_tag_an_unlisted_wheel_and_an_unmet_need(tmp_path: Path) -> None:
    (tmp_path / "engine").mkdir()
    (tmp_path / "engine" / "gpu_wheels.txt").write_text("# pins\nfoo==1.0\nbar==2.0\n")
    wheels = tmp_path / ".whl"
    wheels.mkdir()

    def wheel(filename: str, requires: list[str]) -> None:
        name, version = filename.split("-")[:2]
        with zipfile.ZipFile(wheels / filename, "w") as zf:
            meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            zf.writestr(f"{name}-{version}.dist-info/METADATA", meta + "".join(f"Requires-Dist: {r}\n" for r in requires))

    wheel("foo-1.0-cp311-cp311-manylinux_2_17_x86_64.whl", ["numpy>=3", "nosuchpackage", "torch; python_version<'3'"])
    wheel("baz-1.0-py3-none-any.whl", ["idna>=3"])
    out = gpu_check.check_wheels(tmp_path)
    problems = "\n".join(out["problems"])
    assert "no tag for CPython 3.12" in problems  # cp311
    assert "baz-1.0-py3-none-any.whl: not in engine/gpu_wheels.txt" in problems
    assert "numpy>=3; the machine has 2.5.2" in problems
    assert "nosuchpackage: neither carried nor on the machine" in problems
    assert "bar==2.0: listed but no wheel" in problems
    assert "torch" not in problems  # its marker is false on Python 3.12
    assert out["pip_dry_run"] != "ok"

    (tmp_path / "engine" / "gpu_wheels.txt").write_text("foo==1.0\nfoo==1.1\n")
    with pytest.raises(ValueError, match="listed twice"):
        gpu_check.read_wheel_list(tmp_path / "engine" / "gpu_wheels.txt")
    (tmp_path / "engine" / "gpu_wheels.txt").write_text("foo>=1.0\n")
    with pytest.raises(ValueError, match="NAME==VERSION"):
        gpu_check.read_wheel_list(tmp_path / "engine" / "gpu_wheels.txt")


def test_a_stage_that_runs_past_its_cap_is_ended_and_a_backend_past_its_share_is_stopped() -> None:
    start = time.monotonic()
    rc, seconds, timed_out = gpu_check.run_child([sys.executable, "-c", "import time; time.sleep(60)"], cap=1.0)
    assert timed_out and rc == gpu_check.EXIT_BUDGET and time.monotonic() - start < 20
    with pytest.raises(BackendTimeout), time_limit(0.2):
        while True:
            time.sleep(0.01)


def test_a_check_told_to_stop_ends_its_stage_and_keeps_what_it_has(tmp_path: Path) -> None:
    """gpu_check.sh's overall timeout sends SIGTERM: the running stage's process group ends with the driver
    (none is left behind on the GPU), and the JSON says which stage was stopped; exit 124."""
    log, out = tmp_path / "log", tmp_path / "x.json"
    env = {**os.environ, "USE_HUB_KERNELS": "NO", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "armor_ab.engine.gpu_check", "--dry-run", "--stages", "armor-demo", "--out", str(out)]
    with log.open("w") as sink:
        driver = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=sink, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while "stage armor-demo: cap" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1.0)
        driver.terminate()
        assert driver.wait(timeout=60) == gpu_check.EXIT_BUDGET, log.read_text()[-3000:]
    report = json.loads(out.read_text())
    assert report["stages"]["armor-demo"]["status"] == "stopped: the whole check ran out of its time"
    left = [p for p in Path("/proc").glob("[0-9]*") if str(tmp_path).encode() in _cmdline(p) and "--stage" in str(_cmdline(p))]
    assert not left, "a stage process outlived the driver"


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


@no_cuda
def test_without_cuda_the_check_refuses_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("USE_HUB_KERNELS", "NO")  # what main() sets for its stages: kept out of other tests
    env = {**os.environ, "OUT": str(tmp_path), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 3, done.stderr
    assert "no CUDA" in done.stderr and "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())  # nothing written
    assert gpu_check.main(["--out", str(tmp_path / "x.json")]) == gpu_check.EXIT_REFUSED
    assert not (tmp_path / "x.json").exists()


@pytest.mark.slow
def test_the_dry_run_runs_to_its_end_on_a_cpu(tmp_path: Path) -> None:
    """What make test runs of the GPU check: imports, shapes, a small generation of armor-demo on the CPU, the
    roofline arithmetic at armor-1b's sizes, the training stage on armor-tiny, the carried wheels."""
    from armor_ab.model import get_config

    out = tmp_path / "dry.json"
    env = {**os.environ, "PYTHON": sys.executable}
    start = time.monotonic()
    done = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=320)  # fmt: skip
    elapsed = time.monotonic() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    report = json.loads(out.read_text())
    stages = report["stages"]
    assert report["exit_code"] == 0 and elapsed < 300
    assert [s for s, v in stages.items() if v["status"] != "ok"] == (["tensorrt"] if "tensorrt" in stages else [])
    if report["environment"]["tensorrt"] == "not installed":
        assert stages["tensorrt"]["reason"] == "TensorRT: not installed" and "TensorRT: not installed" in done.stderr
    assert stages["bandwidth"]["result"]["copy"]["bytes_per_s"] > 0

    demo = stages["armor-demo"]["result"]
    eager = demo["backends"]["torch-eager"]
    assert demo["model"]["random_weights"] is False and eager["parity"]["ok"]
    assert eager["phase"] == "done" and "error" not in eager and "timed_out" not in eager
    f = eager["figures"]
    assert f["text_tokens_per_s"]["batch_1"] > 0 and f["decode"]["step_s"] > 0
    assert 0 < f["pages_per_s"]["batch_1"] < f["pages_per_s"]["batch_1_roofline"]
    assert "needs CUDA" in demo["backends"]["torch-cuda"]["not_run"]

    # armor-1b: no generation, the arithmetic at its real sizes (bf16), checked against the config.
    big = stages["armor-1b"]["result"]
    cfg = get_config("armor-1b")
    text = cfg.text_config
    roof = big["roofline"]
    assert big["model"]["dtype"] == "torch.bfloat16" and roof["sizes"]["batch"] == FULL.batch
    assert roof["weights_bytes"]["lm_layers"] == 2 * (text.num_hidden_layers * _layer_params(text) + text.hidden_size)
    assert roof["weights_bytes"]["text_head"] == 2 * text.hidden_size * (cfg.text_vocab_size + 1)
    assert roof["kv_bytes_per_token"]["lm"] == 2 * 24 * 2 * 64 * 2
    assert 0 < roof["pages_per_s"] < roof["images_per_s"]["batch_1"] < roof["text_tokens_per_s"]["batch_1"]

    training = stages["training"]["result"]
    assert training["config"] == "armor-tiny" and training["steps_measured"] == 1
    wheels = report["wheels"]
    assert wheels["listed"]["transformers"] == "5.25.0"
    if wheels["fetched"]:  # bash engine/fetch_gpu_wheels.sh was run here
        assert wheels["problems"] == [] and wheels["pip_dry_run"] == "ok" and wheels["total_mib"] < 40
    assert "| armor-demo | torch-eager |" in done.stdout

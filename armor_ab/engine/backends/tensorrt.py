"""TensorRT: build engines from the exported ONNX graphs, and run them as a ``StepBackend``.

Importing this module never imports ``tensorrt``: that happens in ``require_tensorrt()``, which raises
``BackendUnavailable`` with the reason when CUDA or the ``tensorrt`` package is missing. Buffers are torch CUDA
tensors; the KV cache protocol is the one of ``base.GraphBackend`` (bind ``kv[rows]`` by address, write the
graph's ``new_kv`` into it).

Precision: graph I/O stays fp32 (the same KV buffers and loop as the other backends); the builder runs layers
in fp16 or bf16 where it is faster (``BuilderFlag.FP16`` / ``BF16``). One optimisation profile per engine
covers the recipe's ``[min, opt, max]`` for each dynamic axis: rows (classifier-free guidance doubles the
prompts), tokens (a prefill chunk), cache (the KV positions) and images.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import torch

from armor_ab.model.configuration import ArmorConfig

from ..errors import BackendUnavailable
from ..graphs import GraphSpec
from ..manifest import EngineError, GraphEntry, Manifest, check_session_io
from .base import GraphBackend


def tensorrt_missing_reason() -> str | None:
    """Why TensorRT cannot run here, or None when it can."""
    if not torch.cuda.is_available():
        return (
            f"TensorRT needs CUDA, and this machine has none (torch {torch.__version__}, "
            "torch.cuda.is_available() is False)"
        )
    if importlib.util.find_spec("tensorrt") is None:
        return "the tensorrt Python package is not installed (pip install tensorrt, or a wheel from .whl/)"
    return None


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, or ``BackendUnavailable`` saying why not."""
    reason = tensorrt_missing_reason()
    if reason:
        raise BackendUnavailable(reason)
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:  # noqa: BLE001 - a broken install (missing libnvinfer) is still "unavailable"
        raise BackendUnavailable(f"tensorrt is installed but does not import: {exc}") from exc


def _logger(trt: Any) -> Any:
    return trt.Logger(trt.Logger.WARNING)


def build_plan(
    onnx_path: Path,
    plan_path: Path,
    spec: GraphSpec,
    profiles: dict[str, list[int]],
    precision: str,
    optimization_level: int = 3,
    workspace_bytes: int = 4 << 30,
) -> None:
    """Parse one ONNX graph and serialise a TensorRT engine for it (one optimisation profile)."""
    trt = require_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(onnx_path, f"TensorRT's ONNX parser rejected the graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    config.builder_optimization_level = optimization_level
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    elif precision == "bf16":
        config.set_flag(trt.BuilderFlag.BF16)
    profile = builder.create_optimization_profile()
    for t in spec.inputs:
        if not any(isinstance(s, str) for s in t.shape):
            continue
        lo, opt, hi = ([profiles[s][k] if isinstance(s, str) else s for s in t.shape] for k in range(3))
        profile.set_shape(t.name, lo, opt, hi)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(onnx_path, "TensorRT failed to build an engine from this graph (see its log above)")
    plan_path.write_bytes(bytes(serialized))


_TRT_DTYPES = {"FLOAT": "float32", "HALF": "float16", "INT64": "int64", "BOOL": "bool", "INT32": "int32"}


class TensorRTBackend(GraphBackend):
    """One TensorRT engine + execution context per graph; torch CUDA tensors as buffers; torch's stream."""

    kind = "tensorrt"

    def __init__(self, manifest: Manifest, config: ArmorConfig, directory: Path) -> None:
        trt = require_tensorrt()
        super().__init__(manifest, config, directory, torch.device("cuda"))
        self._trt = trt
        self.runtime = trt.Runtime(_logger(trt))
        self.engines: dict[str, Any] = {}
        self.contexts: dict[str, Any] = {}
        for name, entry in manifest.graphs.items():
            path = directory / entry.file
            engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:
                raise EngineError(
                    path, "TensorRT cannot deserialise this engine (other TensorRT version or GPU?)"
                )
            self._check_io(path, entry, engine)
            self.engines[name] = engine
            self.contexts[name] = engine.create_execution_context()
        self.limits = {axis: prof[2] for axis, prof in manifest.profiles.items()}

    def _check_io(self, path: Path, entry: GraphEntry, engine: Any) -> None:
        trt = self._trt
        ins, outs = [], []
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            dtype = _TRT_DTYPES.get(engine.get_tensor_dtype(name).name, engine.get_tensor_dtype(name).name)
            shape = tuple(engine.get_tensor_shape(name))
            (ins if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outs).append(
                (name, dtype, shape)
            )
        order = {t.name: k for k, t in enumerate(entry.inputs)}
        order_out = {t.name: k for k, t in enumerate(entry.outputs)}
        ins.sort(key=lambda x: order.get(x[0], 1 << 30))
        outs.sort(key=lambda x: order_out.get(x[0], 1 << 30))
        check_session_io(path, entry, ins, outs)

    def check_capacity(self, rows: int, max_len: int) -> None:
        if rows > self.limits.get("rows", rows) or max_len > self.limits.get("cache", max_len):
            raise EngineError(
                self.directory / "manifest.json",
                f"request needs {rows} rows x {max_len} positions, the TensorRT profiles allow at most "
                f"{self.limits.get('rows')} rows x {self.limits.get('cache')} positions: rebuild with a larger recipe",
            )

    def _run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        spec = self.specs[graph]
        inputs = self._prepare(graph, inputs)
        outputs = self._output_buffers(graph, inputs)
        ctx = self.contexts[graph]
        for t in spec.inputs:
            x = inputs[t.name]
            ctx.set_input_shape(t.name, tuple(x.shape))
            ctx.set_tensor_address(t.name, x.data_ptr())
        for t in spec.outputs:
            ctx.set_tensor_address(t.name, outputs[t.name].data_ptr())
        stream = torch.cuda.current_stream()
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of graph {graph!r} failed")
        stream.synchronize()
        self.calls[graph] += 1
        return self._results(outputs)

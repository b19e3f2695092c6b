"""TensorRT: build engines from the exported ONNX graphs, and run them as a ``StepBackend``.

Importing this module never imports ``tensorrt``: that happens in ``require_tensorrt()``, which raises
``BackendUnavailable`` with the reason when CUDA or the ``tensorrt`` package is missing. Buffers are torch CUDA
tensors; the KV cache protocol is the one of ``base.GraphBackend`` (bind ``kv[rows]`` by address, write the
graph's ``new_kv`` into it).

TensorRT 10 only (``require_tensorrt`` refuses another major version): TensorRT 11 removed the FP16/BF16
builder flags this module builds with (and builds an fp32 ONNX graph in fp32 only).

Precision: the builder runs layers in fp16 or bf16 where it is faster (``BuilderFlag.FP16`` / ``BF16``); graph
I/O stays fp32 except the KV cache, whose I/O (``past_*``, ``new_kv``) is fp16 in fp16 engines (``kv_dtype``,
recorded in the manifest), so the cache the layers read is not twice the size they use. RoPE comes from fp32
tables in the graphs (``graphs.RopeTable``), never from angles computed in fp16. One optimisation profile per
engine covers the recipe's ``[min, opt, max]`` for each dynamic axis: rows (classifier-free guidance doubles
the prompts), tokens (a prefill chunk), cache (the KV positions) and images; ``GraphBackend.check_capacity``
refuses a larger request before any graph runs.

Running: every address bound is 256-byte aligned (``base.ALIGN``; ``bind_tensors`` checks it and TensorRT's
return values), and the engines run on a stream of their own, ordered after torch's current stream and
before it again (``_run``), never on the legacy default stream, which synchronises the whole device.
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
from .base import ALIGN, GraphBackend

TENSORRT_MAJOR = 10
INSTALL_HINT = (
    'pip install --extra-index-url https://pypi.nvidia.com "tensorrt-cu12>=10,<11" '
    "(tensorrt-cu13 for a CUDA 13 torch), or TensorRT 10's wheels from its tarball (docs/engine.md)"
)


def version_problem(version: str) -> str | None:
    """Why this TensorRT version cannot build or run the engines (None: a 10.x)."""
    major = version.split(".")[0]
    if major.isdigit() and int(major) == TENSORRT_MAJOR:
        return None
    return (
        f"TensorRT {version} is installed, but the engines need TensorRT {TENSORRT_MAJOR}.x (TensorRT 11 "
        f"removed the FP16/BF16 builder flags they are built with): {INSTALL_HINT}"
    )


def _installed_version() -> str | None:
    """The version of the distribution that provides the ``tensorrt`` module, read without importing it."""
    import importlib.metadata as md

    for dist in md.packages_distributions().get("tensorrt", []):
        try:
            return md.version(dist)
        except md.PackageNotFoundError:
            continue
    return None


def tensorrt_missing_reason() -> str | None:
    """Why TensorRT cannot run here, or None when it can (``require_tensorrt`` checks the imported version)."""
    if not torch.cuda.is_available():
        return (
            f"TensorRT needs CUDA, and this machine has none (torch {torch.__version__}, "
            "torch.cuda.is_available() is False)"
        )
    if importlib.util.find_spec("tensorrt") is None:
        return f"the tensorrt Python package is not installed: {INSTALL_HINT}"
    version = _installed_version()
    return version_problem(version) if version is not None else None


def check_tensorrt_version(trt: Any) -> None:
    """``BackendUnavailable`` unless ``trt`` is TensorRT 10 (11 removed the FP16/BF16 builder flags)."""
    problem = version_problem(str(getattr(trt, "__version__", "unknown")))
    if problem:
        raise BackendUnavailable(problem)


def require_tensorrt() -> Any:
    """The ``tensorrt`` module (TensorRT 10), or ``BackendUnavailable`` saying why not."""
    reason = tensorrt_missing_reason()
    if reason:
        raise BackendUnavailable(reason)
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # noqa: BLE001 - a broken install (missing libnvinfer) is still "unavailable"
        raise BackendUnavailable(f"tensorrt is installed but does not import: {exc}") from exc
    check_tensorrt_version(trt)
    return trt


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
    kv_dtype: str = "float32",
) -> None:
    """Parse one ONNX graph and serialise a TensorRT engine for it (one optimisation profile). ``kv_dtype``
    "float16" makes the KV cache I/O (``past_*`` inputs, the ``new_kv`` output) fp16; the ONNX file is fp32."""
    trt = require_tensorrt()
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(onnx_path, f"TensorRT's ONNX parser rejected the graph: {errors}")
    if kv_dtype == "float16":
        kv_io = [network.get_input(i) for i in range(network.num_inputs)]
        kv_io += [network.get_output(i) for i in range(network.num_outputs)]
        for tensor in kv_io:
            if tensor.name == "new_kv" or tensor.name.startswith(("past_key_", "past_value_")):
                tensor.dtype = trt.float16  # network I/O type: TensorRT converts at the boundary
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


def bind_tensors(
    ctx: Any,  # a TensorRT IExecutionContext (anything with set_input_shape / set_tensor_address)
    graph: str,
    inputs: dict[str, torch.Tensor],
    outputs: dict[str, torch.Tensor],
    align: int = ALIGN,
) -> None:
    """Set every input's shape and every tensor's address on an execution context. TensorRT answers False to a
    shape outside the profile or an address it cannot use, then fails at execution with no name: this raises
    at once, naming the graph and the tensor (and checks the 256-byte alignment TensorRT needs itself)."""
    for name, x in inputs.items():
        if not ctx.set_input_shape(name, tuple(x.shape)):
            raise RuntimeError(
                f"TensorRT graph {graph!r}: input {name!r}: shape {tuple(x.shape)} refused "
                "(outside the engine's optimisation profile?)"
            )
    for name, x in (*inputs.items(), *outputs.items()):
        address = x.data_ptr()
        if address % align:
            raise RuntimeError(
                f"TensorRT graph {graph!r}: tensor {name!r}: address {address:#x} is not {align}-byte aligned"
            )
        if not ctx.set_tensor_address(name, address):
            raise RuntimeError(f"TensorRT graph {graph!r}: tensor {name!r}: address {address:#x} refused")


class TensorRTBackend(GraphBackend):
    """One TensorRT engine + execution context per graph; torch CUDA tensors as buffers; a stream of its own."""

    kind = "tensorrt"
    fixed_profiles = True  # one optimisation profile per engine: larger requests are refused up front
    address_alignment = ALIGN

    def __init__(self, manifest: Manifest, config: ArmorConfig, directory: Path) -> None:
        trt = require_tensorrt()
        super().__init__(manifest, config, directory, torch.device("cuda"))
        self._trt = trt
        self.stream = torch.cuda.Stream()  # not the legacy default stream, which synchronises the device
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

    def _run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self._prepare(graph, inputs)  # on torch's current stream, aligned
        outputs = self._output_buffers(graph, inputs)
        ctx = self.contexts[graph]
        bind_tensors(ctx, graph, inputs, outputs)
        current = torch.cuda.current_stream()
        self.stream.wait_stream(current)  # inputs, KV writes and past_valid written before TensorRT reads
        if not ctx.execute_async_v3(self.stream.cuda_stream):
            raise RuntimeError(f"TensorRT execution of graph {graph!r} failed")
        # Torch's stream waits for the outputs: the copies ``_results`` makes, the KV write and every later
        # use of these buffers (or of the inputs' memory, once freed) are ordered after TensorRT's reads and
        # writes; copies to the CPU block until they are done.
        current.wait_stream(self.stream)
        self.calls[graph] += 1
        return self._results(outputs)

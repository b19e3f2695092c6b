"""The ONNX Runtime backend: ``GraphBackend`` over ONNX Runtime sessions, run through I/O binding.

Importing this module does not import ``onnxruntime``: the sessions are created (and the package imported) when
an ``OnnxRuntimeBackend`` is constructed. ``ort_session_options`` are the session options every engine session
uses (small-batch decoding; ``ARMOR_ORT_THREADS`` / ``ARMOR_ORT_SPINNING``).

ONNX Runtime falls back to the CPU without an error when the CUDA execution provider cannot load (missing
CUDA / cuDNN libraries, the CPU-only ``onnxruntime`` package shadowing ``onnxruntime-gpu``): only a warning,
which log level 3 would hide. So every session's providers are compared with the ones asked for
(``check_providers``), and warnings are shown when CUDA is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from armor_ab.logs import first_line
from armor_ab.model.configuration import ArmorConfig

from ..manifest import EngineError, Manifest, check_session_io
from .base import GraphBackend

_NP_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "bool": np.bool_}
_ORT_TYPES = {
    "tensor(float)": "float32",
    "tensor(float16)": "float16",
    "tensor(int64)": "int64",
    "tensor(bool)": "bool",
}


def ort_session_options(
    threads: int | None = None, spinning: bool | None = None, log_severity: int = 3
) -> Any:
    """Session options for small-batch decoding: all graph optimisations, sequential execution, one inter-op
    thread; ``threads`` intra-op threads (default: $ARMOR_ORT_THREADS or ONNX Runtime's choice). Spinning is off
    by default: between two graph calls the Python loop runs, and spinning workers would only steal its core.
    ``log_severity``: 3 (errors) on the CPU; 2 (warnings) when CUDA is asked for, so a fallback shows."""
    import onnxruntime as ort

    from armor_ab.config import env_settings

    env = env_settings()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.inter_op_num_threads = 1
    threads = threads or env.ort_threads
    if threads:
        so.intra_op_num_threads = threads
    if spinning is None:
        spinning = env.ort_spinning
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    so.log_severity_level = log_severity
    return so


def check_providers(path: Path, session: Any, requested: list[str]) -> None:
    """``EngineError`` when a session did not get the execution providers asked for: above all CUDA asked for
    first and not given (ONNX Runtime then runs on the CPU with only a warning)."""
    got = list(session.get_providers())
    missing = [p for p in requested if p not in got]
    if (requested and got[:1] != requested[:1]) or missing:
        raise EngineError(
            path,
            f"ONNX Runtime gave this session the providers {got}, not the ones asked for {requested} "
            "(for CUDA: onnxruntime-gpu installed alone, with the CUDA and cuDNN libraries it needs; "
            "see ONNX Runtime's warnings above)",
        )


class OnnxRuntimeBackend(GraphBackend):
    """ONNX Runtime sessions (CPU EP here; CUDA EP first when it is available), run through I/O binding."""

    kind = "onnxruntime"

    def __init__(
        self,
        manifest: Manifest,
        config: ArmorConfig,
        directory: Path,
        threads: int | None = None,
        providers: list[str] | None = None,
        spinning: bool | None = None,
    ) -> None:
        import onnxruntime as ort

        available = ort.get_available_providers()
        if providers is None:
            providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
        use_cuda = providers[0] == "CUDAExecutionProvider"
        if use_cuda and not torch.cuda.is_available():
            raise EngineError(directory, "CUDAExecutionProvider requested, but torch sees no CUDA device")
        super().__init__(manifest, config, directory, torch.device("cuda" if use_cuda else "cpu"))
        self.providers = providers
        self._device_type, self._device_id = ("cuda", 0) if use_cuda else ("cpu", 0)
        so = ort_session_options(threads, spinning, log_severity=2 if use_cuda else 3)
        self.sessions: dict[str, Any] = {}
        self.bindings: dict[str, Any] = {}
        for name, entry in manifest.graphs.items():
            path = directory / entry.file
            try:
                session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
            except Exception as exc:  # noqa: BLE001 - ORT raises its own hierarchy; all mean "bad file"
                raise EngineError(path, f"ONNX Runtime cannot load this graph ({first_line(exc)})") from exc
            check_providers(path, session, providers)
            check_session_io(
                path,
                entry,
                [(i.name, _ORT_TYPES.get(i.type, i.type), tuple(i.shape)) for i in session.get_inputs()],
                [(o.name, _ORT_TYPES.get(o.type, o.type), tuple(o.shape)) for o in session.get_outputs()],
            )
            self.sessions[name] = session
            self.bindings[name] = session.io_binding()
        self._bound: dict[str, dict[str, tuple[int, tuple[int, ...]]]] = {name: {} for name in self.sessions}
        self._dtypes = {
            g: {t.name: t.dtype for t in spec.inputs + spec.outputs} for g, spec in self.specs.items()
        }

    def _run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        inputs = self._prepare(graph, inputs)  # keeps the tensors alive while ORT reads them
        outputs = self._output_buffers(graph, inputs)
        binding, bound = self.bindings[graph], self._bound[graph]
        dev, dev_id = self._device_type, self._device_id
        # Bind by pointer; skip names whose pointer and shape did not change since the last call (the KV
        # buffers, past_valid and the output buffers of a decode step): ORT reads the memory at run time.
        for items, bind in ((inputs, binding.bind_input), (outputs, binding.bind_output)):
            for name, x in items.items():
                key = (x.data_ptr(), tuple(x.shape))
                if bound.get(name) != key:
                    bind(name, dev, dev_id, _NP_DTYPES[self._dtypes[graph][name]], key[1], key[0])
                    bound[name] = key
        if dev == "cuda":
            torch.cuda.synchronize()  # inputs written on torch's stream before ORT's stream reads them
        self.sessions[graph].run_with_iobinding(binding)
        self.calls[graph] += 1
        return self._results(outputs)

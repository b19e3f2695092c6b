"""The graph backend protocol: ``StepBackend`` over exported graphs, shared by every engine backend.

``GraphBackend`` implements the step protocol of ``armor_ab.model.steps`` once, on top of a single primitive,
``_run(graph, inputs) -> outputs`` (dicts of torch tensors); the ONNX Runtime and TensorRT backends only
implement that primitive (``onnxruntime.py``, ``tensorrt.py`` beside this module; ``armor_ab.engine.loader``
picks one by name). So ``InterleavedGenerator`` runs unchanged on PyTorch, ONNX Runtime or TensorRT.
This module imports no backend: the backends import it, never the other way round.

KV cache. Two buffers (LM, adapter) of shape ``(layers, 2, rows, kv_heads, S, head_dim)`` are allocated once
per generation by ``allocate`` (and reused while they are big enough), on the compute device, in the
manifest's KV dtype (fp32; fp16 for fp16 TensorRT engines), together with a ``(r, S)`` validity mask per stack
and row range. A step binds ``kv[layer, k_or_v, rows]`` - each a contiguous block - as
the graph's ``past_key_i`` / ``past_value_i`` inputs by pointer (``io_binding`` on ONNX Runtime, tensor
addresses on TensorRT): no copy. The graph returns only the new tokens' keys/values (``new_kv``), which are
written into ``kv[:, :, rows, :, start:start+T]``.

Fewer calls per token. The ``decode`` graph is the LM step fused with the embedding and the text head, and
the ``adapter`` graph ends with the visual head at the last position; their logits are kept, and the following
``text_head`` / ``visual_head`` call returns them when its input is exactly the hidden state they came from
(checked with ``torch.equal``), so a text token is one graph call and an image code two (LM + adapter).

Alignment. TensorRT takes only 256-byte aligned tensor addresses, and ``kv[i, k_or_v, rows]`` lies at
``rows.start`` times the row stride ``kv_heads * S * head_dim * itemsize``. So the cache length S is
``max_len`` padded up until that stride is a multiple of ``ALIGN`` (``cache_len``; the extra slots are never
valid, hence masked like any stale slot), the buffers start at an aligned address (``aligned_empty``), and
each row range gets its own ``past_valid`` buffer (a row slice of one ``(rows, S)`` bool buffer would lie at
``rows.start * S`` bytes). Every row range that can be bound is then aligned; TensorRT checks it again at
bind time.

The generation loop keeps its own buffers on the CPU (``device``); graph I/O moves to and from the compute
device (a no-op on the CPU; a few KB per step on CUDA, while the KV cache stays on the GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.tokenizer import TextTokenizer

from ..graphs import TORCH_DTYPES, Dims, GraphSpec
from ..manifest import MANIFEST_FILE, EngineError, Manifest

ALIGN = 256  # bytes: TensorRT's alignment for tensor addresses (and more than any other runtime asks)
AXES_NEED = {  # what each dynamic axis of the profiles bounds, for the capacity error
    "rows": "rows (prompts, doubled by classifier-free guidance)",
    "cache": "KV positions (prompt + text + images x (codes + 1))",
    "tokens": "tokens in one prefill chunk (the prompt, or a catch-up before an image)",
    "images": "input images",
}


def aligned_empty(
    shape: tuple[int, ...], dtype: torch.dtype, device: torch.device, align: int = ALIGN
) -> torch.Tensor:
    """An uninitialised contiguous tensor whose first element lies at a multiple of ``align`` bytes."""
    if align <= 1:
        return torch.empty(shape, dtype=dtype, device=device)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = torch.empty(nbytes + align, dtype=torch.uint8, device=device)
    skip = -raw.data_ptr() % align  # 0 on CUDA (the caching allocator aligns to 512 bytes)
    return raw[skip : skip + nbytes].view(dtype).view(shape)


def cache_len(max_len: int, row_bytes: int, align: int = ALIGN) -> int:
    """``max_len`` padded up so that ``S * row_bytes`` (one KV row: kv_heads * S * head_dim * itemsize) is a
    multiple of ``align``: then ``kv[i, k_or_v, rows]`` is aligned for every ``rows.start``."""
    step = align // math.gcd(align, row_bytes)
    return -(-max_len // step) * step


@dataclass
class _Memo:
    """Logits a fused graph already computed for the hidden states it returned."""

    row0: int
    hidden: torch.Tensor  # (R, C)
    logits: torch.Tensor  # (R, K)

    def lookup(self, h: torch.Tensor) -> torch.Tensor | None:
        n = h.shape[0]
        if self.row0 != 0 or h.dim() != 2 or n > self.hidden.shape[0] or h.dtype != self.hidden.dtype:
            return None
        return self.logits[:n] if torch.equal(h, self.hidden[:n]) else None


class GraphBackend:
    """``StepBackend`` over exported graphs; subclasses provide ``_run``."""

    kind = "graphs"
    fixed_profiles = False  # True: requests beyond the manifest's profiles are refused (TensorRT)
    address_alignment = 1  # bytes every bound address must be a multiple of (TensorRT: ALIGN)

    def __init__(
        self, manifest: Manifest, config: ArmorConfig, directory: Path, compute_device: torch.device
    ) -> None:
        self.manifest = manifest
        self.config = config
        self.directory = directory
        self.specs: dict[str, GraphSpec] = {name: g.spec for name, g in manifest.graphs.items()}
        self.dims = Dims.of(config)
        self.compute_device = compute_device
        self.device = torch.device("cpu")  # where the generation loop keeps its buffers
        self.dtype = torch.float32  # graph I/O is fp32 (TensorRT runs fp16/bf16 inside)
        self.kv_dtype = TORCH_DTYPES[manifest.kv_dtype]  # fp32, or fp16 for an fp16 TensorRT engine
        # Largest size per dynamic axis, from the optimisation profiles of backends that have fixed ones.
        self.limits: dict[str, int] = (
            {axis: int(prof[2]) for axis, prof in manifest.profiles.items()} if self.fixed_profiles else {}
        )
        self.lm_kv: torch.Tensor | None = None  # (L, 2, rows, H, S, D)
        self.ad_kv: torch.Tensor | None = None  # (La, 2, rows, H, S, D)
        self._valid: dict[tuple[str, int, int], torch.Tensor] = {}  # (stack, row range) -> (r, S) bool
        self._text_memo: _Memo | None = None
        self._visual_memo: _Memo | None = None
        self.tokenizer: TextTokenizer | None = None  # the engine's own, set by ``loader.open_engine_backend``
        self.calls: dict[str, int] = dict.fromkeys(self.specs, 0)  # graph calls, for benchmarks and tests
        self._shape_cache: dict[tuple, dict[str, tuple[int, ...]]] = {}
        self._out_bufs: dict[tuple[str, str], torch.Tensor] = {}
        self._out_dtypes = {(g, t.name): t.dtype for g, spec in self.specs.items() for t in spec.outputs}

    # --- the primitive ---
    def _run(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _output_shapes(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, tuple[int, ...]]:
        """Output shapes from the inputs' dynamic axes; the inputs' static dims are checked against the spec.
        Cached per input-shape signature: a decode step pays for one tuple of shapes, not for the check."""
        signature = (graph, *(tuple(x.shape) for x in inputs.values()))
        shapes = self._shape_cache.get(signature)
        if shapes is not None:
            return shapes
        spec = self.specs[graph]
        sizes: dict[str, int] = {}
        for t in spec.inputs:
            x = inputs[t.name]
            bad = x.dim() != len(t.shape) or any(
                not isinstance(s, str) and int(dim) != s for dim, s in zip(x.shape, t.shape, strict=False)
            )
            if bad:
                raise EngineError(
                    self.directory / self.manifest.graphs[graph].file,
                    f"input {t.name} has shape {tuple(x.shape)}, the graph takes {list(t.shape)}",
                )
            for dim, s in zip(x.shape, t.shape, strict=True):
                if isinstance(s, str):
                    sizes.setdefault(s, int(dim))
        shapes = {t.name: tuple(sizes[s] if isinstance(s, str) else s for s in t.shape) for t in spec.outputs}
        if len(self._shape_cache) > 4096:  # prefill chunks of every length: keep the cache bounded
            self._shape_cache.clear()
        self._shape_cache[signature] = shapes
        return shapes

    def _output_buffers(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Output tensors on the compute device, kept per graph while their shape stays the same (so a decode
        step binds the same buffers every time); ``_results`` hands out copies of what the caller keeps."""
        out = {}
        for name, shape in self._output_shapes(graph, inputs).items():
            key = (graph, name)
            buf = self._out_bufs.get(key)
            if buf is None or tuple(buf.shape) != shape:
                dtype = TORCH_DTYPES[self._out_dtypes[key]]
                buf = self._out_bufs[key] = aligned_empty(shape, dtype, self.compute_device)
            out[name] = buf
        return out

    @staticmethod
    def _results(outputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The caller's own copies of the outputs (small: the next call reuses the buffers); ``new_kv`` is
        consumed at once by the KV write, so it is not copied."""
        return {name: buf if name == "new_kv" else buf.clone() for name, buf in outputs.items()}

    def _prepare(self, graph: str, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Inputs as contiguous tensors of the graph's dtypes on the compute device (copied to an aligned
        address where the runtime needs one and the tensor is not: a view into the caller's buffer)."""
        spec, align = self.specs[graph], self.address_alignment
        out = {}
        for t in spec.inputs:
            x = inputs[t.name].to(self.compute_device, TORCH_DTYPES[t.dtype]).contiguous()
            if x.data_ptr() % align:
                x = aligned_empty(tuple(x.shape), x.dtype, x.device, align).copy_(x)
            out[t.name] = x
        return out

    # --- KV state ---
    def cache_len(self, max_len: int) -> int:
        """The cache length S the buffers get for ``max_len`` positions (padded for alignment)."""
        d = self.dims
        return cache_len(max_len, d.kv_heads * d.head_dim * self.kv_dtype.itemsize)

    def allocate(self, rows: int, max_len: int) -> None:
        self.check_capacity(rows, max_len)
        self._text_memo = self._visual_memo = None
        if self.lm_kv is not None and self.lm_kv.shape[2] == rows and self.lm_kv.shape[4] >= max_len:
            return  # same batch, enough room: keep the buffers (stale slots are masked by past_valid)
        d, dev, s = self.dims, self.compute_device, self.cache_len(max_len)
        shape = (rows, d.kv_heads, s, d.head_dim)  # per layer, K or V
        self.lm_kv = aligned_empty((d.layers, 2, *shape), self.kv_dtype, dev).zero_()
        self.ad_kv = aligned_empty((d.adapter_layers, 2, *shape), self.kv_dtype, dev).zero_()
        self._valid = {}

    def check_capacity(self, rows: int, max_len: int, tokens: int = 0, images: int = 0) -> None:
        """Refuse a request beyond the engine's optimisation profiles (TensorRT) before any graph runs: rows,
        KV positions (``max_len``, as padded by ``cache_len``), the longest prefill chunk (``tokens``) and the
        number of input images. A backend without fixed profiles (ONNX Runtime) takes any size."""
        if not self.limits:
            return
        need = {"rows": rows, "cache": self.cache_len(max_len), "tokens": tokens, "images": images}
        over = [
            f"{axis} {n} ({AXES_NEED[axis]}) > {self.limits[axis]}"
            for axis, n in need.items()
            if axis in self.limits and n > self.limits[axis]
        ]
        if over:
            raise EngineError(
                self.directory / MANIFEST_FILE,
                f"request too large for this {self.kind} engine's optimisation profiles: {'; '.join(over)}; "
                "rebuild the engine with a larger recipe (max_batch, max_seq_len, profiles)",
            )

    def _past_valid(
        self, stack: str, rows: slice, key_valid: torch.Tensor, start: int, s: int
    ) -> torch.Tensor:
        """``past_valid`` for a row range: its own (r, S) buffer (aligned, reused while S stays the same)."""
        r0, r1 = rows.start or 0, rows.stop
        v = self._valid.get((stack, r0, r1))
        if v is None or v.shape[1] != s:
            v = self._valid[(stack, r0, r1)] = aligned_empty((r1 - r0, s), torch.bool, self.compute_device)
        v[:, :start] = key_valid[:, :start].to(v.device)
        v[:, start:] = False  # the chunk's own slots and beyond: stale, never visible as "past"
        return v

    def _chunk(
        self,
        graph: str,
        kv: torch.Tensor,
        stack: str,
        inputs: dict[str, torch.Tensor],
        key_valid: torch.Tensor,
        rows: slice,
        start: int,
        t: int,
    ) -> dict[str, torch.Tensor]:
        if start + t > kv.shape[4]:
            raise RuntimeError(f"KV cache full: writing up to {start + t} > max_len {kv.shape[4]}")
        inputs["past_valid"] = self._past_valid(stack, rows, key_valid, start, kv.shape[4])  # (r, S)
        for i in range(kv.shape[0]):  # (r, H, S, D) views, contiguous, aligned: bound by pointer, not copied
            inputs[f"past_key_{i}"] = kv[i, 0, rows]
            inputs[f"past_value_{i}"] = kv[i, 1, rows]
        out = self._run(graph, inputs)
        kv[:, :, rows, :, start : start + t] = out["new_kv"]  # (L, 2, r, H, T, D): the only KV write
        return out

    # --- StepBackend ---
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self._run("vision", {"pixel_values": pixel_values})["image_features"].to(self.device)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self._run("embed", {"ids": ids})["embeds"].to(self.device)  # (R, T, C)

    def prefill(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        key_valid: torch.Tensor,
        rows: slice,
        start: int,
    ) -> torch.Tensor:
        t = embeds.shape[1]
        inputs = {
            "embeds": embeds,
            "position_ids": position_ids,
            "new_valid": key_valid[:, start : start + t],
        }
        out = self._chunk("prefill", self.lm_kv, "lm", inputs, key_valid, rows, start, t)
        return out["hidden"].to(self.device)  # (r, T, C)

    def decode_step(
        self, ids: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor:
        inputs = {"ids": ids, "position_ids": position_ids}
        out = self._chunk("decode", self.lm_kv, "lm", inputs, key_valid, rows, start, 1)
        h = out["hidden"].to(self.device)  # (r, C)
        self._text_memo = _Memo(rows.start or 0, h, out["text_logits"].to(self.device))
        return h

    def text_head(self, h: torch.Tensor) -> torch.Tensor:
        if self._text_memo is not None and (logits := self._text_memo.lookup(h)) is not None:
            return logits  # computed by the fused decode graph for exactly this h
        return self._run("text_head", {"hidden": h})["text_logits"].to(self.device)  # (r, V + 1)

    def adapter(
        self, h: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor:
        t = h.shape[1]
        inputs = {"hidden": h, "position_ids": position_ids, "new_valid": key_valid[:, start : start + t]}
        out = self._chunk("adapter", self.ad_kv, "ad", inputs, key_valid, rows, start, t)
        a = out["adapter_hidden"].to(self.device)  # (r, T, C)
        self._visual_memo = _Memo(rows.start or 0, a[:, -1], out["visual_logits"].to(self.device))
        return a

    def visual_head(self, h: torch.Tensor) -> torch.Tensor:
        if self._visual_memo is not None and (logits := self._visual_memo.lookup(h)) is not None:
            return logits  # computed by the fused adapter graph for exactly this h
        return self._run("visual_head", {"adapter_hidden": h})["visual_logits"].to(self.device)  # (r, N + 2)

    def vq_decode(self, codes: torch.Tensor) -> torch.Tensor:
        return self._run("vq_decode", {"codes": codes})["pixels"].to(self.device)  # (B, 3, H, W)

    def close(self) -> None:
        self.lm_kv = self.ad_kv = None
        self._valid = {}


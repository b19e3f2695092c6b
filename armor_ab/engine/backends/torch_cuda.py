"""``torch-cuda``: the step protocol on the PyTorch model itself, gpt-fast style - a static KV cache written by
index, and one compiled decode step per row range (CUDA graphs on a GPU).

    TorchCudaBackend(model, *, dtype=None, compile=True, cuda_graphs=None)

No engine directory: it runs the model's own modules (``ArmorForInterleavedGeneration``), so it works for any
model PyTorch loads, as ``TorchBackend`` does, but with the decode path built for speed:

* **Static KV cache.** Per stack (LM, adapter) ``k`` and ``v`` of shape ``(layers, rows, kv_heads, S, head_dim)``
  and a ``(rows, S)`` validity mask, allocated once by ``allocate(rows, max_len)`` (``S`` = ``max_len``
  rounded up to a multiple of ``LEN_BUCKET``, so requests of similar length share one allocation and its
  compiled steps). Keys/values are written by index (``index_copy_`` at a position tensor); attention always
  reads the whole ``S`` slots, the mask hiding unwritten, stale and padded ones, so shapes never change from
  one step to the next (``FixedKVCache`` trims to the written length instead: fine eagerly, a recompile per
  step under ``torch.compile``).
* **Compiled steps.** ``decode_step`` is the LM over one token fused with the embedding and the text head (the
  engines' ``decode`` graph); the following ``text_head`` call returns the logits the step already computed
  for exactly that hidden state (``_Memo``). The adapter over one token is fused with the visual head the same
  way. Each is ``torch.compile(fullgraph=True, dynamic=False)``: ``mode="reduce-overhead"`` (CUDA graphs) on
  CUDA, the default mode on the CPU. Prefill and the adapter's catch-up chunk run eagerly, through the very
  same block code.
* **Rows.** The loop decodes all rows, the conditional half or the unconditional half (classifier-free
  guidance). A CUDA graph replays fixed addresses, so there is one compiled step per distinct ``(first row,
  rows)`` - three LM steps and one adapter step per allocation, compiled on first use (or by ``warmup``) -
  each a function with a code object of its own (``_own_code``), so that dynamo's per-code recompile limit
  never merges them. A step's inputs are views of its rows' blocks (per layer ``(n, H, S, D)``, strides
  independent of the batch), so its traced graph depends on the number of rows ``n`` only: inductor's cache
  compiles it once for every range of that size.
* **Static I/O.** Step inputs go through fixed device buffers (``_io``: ids, RoPE positions and the write
  slot; the validity masks; the adapter's input hidden state) filled by one host-to-device copy each from
  pinned memory, and every step input is marked a static address: CUDA graphs copy nothing and allocate
  nothing per step, and nothing in the compiled region synchronises with the host. The one wait per step is
  the loop reading the hidden state back (it samples on the host); text logits are copied to the host only
  when the loop asks for them.

The generation loop keeps its buffers on the CPU (``device``), as with the engines: the loop samples with
per-row CPU generators. The weights and caches live on the model's device (``compute_device``), in ``dtype``
(bfloat16 by default on CUDA, float16 on request; float32 on the CPU); a model in another dtype is copied
once, converted - pass it in the target dtype to avoid the copy.

``warmup(rows, max_len)`` compiles (and, on CUDA, records the graphs of) every step a generation with ``rows``
rows up to ``max_len`` positions uses, so a benchmark can leave compile time out: a following generation with
the same rows and a ``max_len`` no larger reuses the allocation and its compiled steps.
"""

from __future__ import annotations

import copy
import itertools
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from armor_ab.model.cache import attention_mask
from armor_ab.model.configuration import ArmorConfig
from armor_ab.model.modeling import ArmorForInterleavedGeneration

from ..errors import UnsupportedModel
from ..graphs import rope_types
from .base import _Memo

LEN_BUCKET = 128  # cache lengths are rounded up to a multiple of this (fewer distinct compiled shapes)

_fresh_ids = itertools.count()


def _own_code(fn: Callable) -> Callable:
    """A copy of the closure ``fn`` with a code object of its own. Dynamo keeps compiled code, and counts
    recompilations against ``recompile_limit`` (8), per code object: every compiled step (one per row range and
    allocation) gets its own, so a long-running process with many batch sizes never hits the limit (which
    would silently fall back to eager) and no step's guards are checked on another's calls."""
    code = fn.__code__.replace(co_name=f"{fn.__name__}_{next(_fresh_ids)}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(rotary: nn.Module, position_ids: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (R, T, D): ``LlamaRotaryEmbedding.forward`` / Qwen2's (the same maths), from the module's own
    ``inv_freq`` and ``attention_scaling``, without its dynamic-RoPE hook (a host sync; ``_check_model``)."""
    freqs = position_ids[..., None].float() * rotary.inv_freq.float()  # (R, T, D/2)
    emb = torch.cat((freqs, freqs), dim=-1)  # (R, T, D)
    return (emb.cos() * rotary.attention_scaling).to(dtype), (emb.sin() * rotary.attention_scaling).to(dtype)


def _blocks(
    layers: nn.ModuleList,
    norm: nn.Module,
    rotary: nn.Module,
    x: torch.Tensor,  # (n, T, C)
    position_ids: torch.Tensor,  # (n, T) RoPE positions
    keys: Sequence[torch.Tensor],  # per layer (n, H, S, D): the rows' key cache, written in place
    values: Sequence[torch.Tensor],  # per layer (n, H, S, D)
    write_at: torch.Tensor,  # (T,) long: cache slots of the T tokens
    visible: torch.Tensor,  # (n, 1, T, S') bool: which of the first S' slots each query sees
) -> torch.Tensor:
    """The stack's decoder layers (``LlamaDecoderLayer`` / ``Qwen2DecoderLayer``: their own projections, Qwen2's
    q/k/v biases included, norms and MLP) over a static cache, then the final norm -> (n, T, C).

    Each layer writes its new keys/values into its cache block at ``write_at`` (``index_copy_``), then attends
    over the first S' slots as they lie: grouped-query heads read their KV head (query rows ``g * T + t``)
    without ``repeat_kv`` copies; scores and softmax in float32."""
    n, t, _ = x.shape
    s = visible.shape[-1]
    cos, sin = _rope(rotary, position_ids, x.dtype)
    cos, sin = cos[:, None], sin[:, None]  # (n, 1, T, D)
    attn0 = layers[0].self_attn
    d, g = attn0.head_dim, attn0.num_key_value_groups
    hidden = ~visible if t == 1 else ~visible.expand(-1, g, -1, -1).reshape(n, 1, g * t, s)
    for layer, k_cache, v_cache in zip(layers, keys, values, strict=True):
        attn = layer.self_attn
        h = layer.input_layernorm(x)
        q = attn.q_proj(h).view(n, t, -1, d).transpose(1, 2)  # (n, Hq, T, D)
        k = attn.k_proj(h).view(n, t, -1, d).transpose(1, 2)  # (n, H, T, D)
        v = attn.v_proj(h).view(n, t, -1, d).transpose(1, 2)  # (n, H, T, D)
        q = q * cos + _rotate_half(q) * sin
        k = k * cos + _rotate_half(k) * sin
        k_cache.index_copy_(2, write_at, k)
        v_cache.index_copy_(2, write_at, v)
        hkv = k.shape[1]
        q = q.reshape(n, hkv, g * t, d)  # query head kv * G + g reads KV head kv
        scores = torch.matmul(q, k_cache[:, :, :s].transpose(-1, -2)).float() * attn.scaling  # (n, H, G*T, S')
        scores = scores.masked_fill(hidden, float("-inf"))  # a finite max: every query sees itself
        probs = torch.softmax(scores, dim=-1).to(v_cache.dtype)
        o = torch.matmul(probs, v_cache[:, :, :s])  # (n, H, G*T, D)
        o = o.reshape(n, hkv * g, t, d).transpose(1, 2).reshape(n, t, hkv * g * d)  # (n, T, Hq*D)
        x = x + attn.o_proj(o)
        x = x + layer.mlp(layer.post_attention_layernorm(x))
    return norm(x)


def _step_visible(valid: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
    """(n, 1, 1, S) mask of a one-token step at slot ``start`` (1,): valid slots up to it, and always itself."""
    slots = torch.arange(valid.shape[1], device=valid.device)  # (S,)
    vis = ((slots <= start) & valid) | (slots == start)  # (n, S)
    return vis[:, None, None]


class _Stack:
    """One stack's static KV cache (LM or adapter): k, v (L, R, H, S, D) and the validity mask (R, S)."""

    def __init__(self, layers: int, rows: int, heads: int, length: int, head_dim: int, dtype, device) -> None:
        shape = (layers, rows, heads, length, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.valid = torch.zeros((rows, length), dtype=torch.bool, device=device)
        pin = torch.device(device).type == "cuda"
        self.valid_host = torch.zeros((rows, length), dtype=torch.bool, pin_memory=pin)  # staging for .valid

    def blocks(self, rows: slice) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per layer, the rows' key and value blocks (n, H, S, D): contiguous views."""
        return [k[rows] for k in self.k], [v[rows] for v in self.v]

    def set_valid(self, key_valid: torch.Tensor, rows: slice) -> None:
        """The mask of ``rows`` := ``key_valid`` (n, end) (one host-to-device copy of the rows' block)."""
        host = self.valid_host[rows]
        host[:, : key_valid.shape[1]] = key_valid
        self.valid[rows].copy_(host, non_blocking=True)

    def zero_(self) -> None:
        for t in (self.k, self.v, self.valid, self.valid_host):
            t.zero_()


@dataclass
class _Step:
    """A compiled one-token step bound to one row range: the function and its (static-address) inputs."""

    fn: Callable
    inputs: tuple[torch.Tensor, ...]

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fn(*self.inputs)


class TorchCudaBackend:
    """``StepBackend`` on the PyTorch model: static KV cache, compiled fused steps, CUDA graphs on CUDA."""

    kind = "torch-cuda"

    def __init__(
        self,
        model: ArmorForInterleavedGeneration,
        *,
        dtype: torch.dtype | None = None,
        compile: bool = True,  # noqa: A002 - the documented keyword
        cuda_graphs: bool | None = None,
    ) -> None:
        self.compute_device = model.device
        on_cuda = self.compute_device.type == "cuda"
        self.dtype = dtype or (torch.bfloat16 if on_cuda else torch.float32)
        if cuda_graphs is None:
            cuda_graphs = on_cuda and compile
        if cuda_graphs and not compile:
            raise ValueError("cuda_graphs=True needs compile=True (the graphs are torch.compile's)")
        if cuda_graphs and not on_cuda:
            raise ValueError("cuda_graphs=True needs the model on a CUDA device")
        _check_model(model)
        if model.dtype != self.dtype:  # a converted copy: the caller's model stays as it was
            model = copy.deepcopy(model).to(self.dtype)
        self.model = model.eval()
        self.config: ArmorConfig = model.config
        self.compile, self.cuda_graphs = compile, cuda_graphs
        self.mode = "reduce-overhead" if cuda_graphs else "default"
        self.device = torch.device("cpu")  # where the generation loop keeps its buffers
        self.lm: _Stack | None = None
        self.ad: _Stack | None = None
        self._io: torch.Tensor | None = None  # (R, 4) long on the device: id, RoPE position, write slot, -
        self._io_host: torch.Tensor | None = None
        self._h_in: torch.Tensor | None = None  # (R, C): the adapter step's input
        self._h_host: torch.Tensor | None = None
        self._steps: dict[tuple[str, int, int], _Step] = {}  # (stack, first row, rows) -> compiled step
        self._text_memo: _Memo | None = None
        self._visual_memo: _Memo | None = None
        self.compiled_steps = 0  # compiled step functions made (per stack and row range, per allocation)
        # Model calls by kind, as the engines count graph calls: a head answered from a fused step's logits is
        # not a call, so a text token costs one ("decode") and an image code two ("decode", "adapter_step").
        self.calls: dict[str, int] = dict.fromkeys(
            ("vision", "embed", "prefill", "decode", "text_head", "adapter", "adapter_step", "visual_head",
             "vq_decode"), 0)  # fmt: skip

    # --- allocation ---
    @property
    def rows(self) -> int:
        return 0 if self.lm is None else self.lm.valid.shape[0]

    @property
    def max_len(self) -> int:
        return 0 if self.lm is None else self.lm.valid.shape[1]

    def check_capacity(self, rows: int, max_len: int, tokens=None, images=None) -> None:
        """No fixed limits: the cache is sized per request (engines with fixed profiles refuse here)."""

    def allocate(self, rows: int, max_len: int) -> None:
        self._text_memo = self._visual_memo = None
        if self.lm is not None and self.rows == rows and self.max_len >= max_len:
            self.lm.zero_()  # same rows, enough room: keep the buffers and the steps compiled for them
            self.ad.zero_()
            return
        self.close()
        text = self.config.text_config
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
        length = -(-max_len // LEN_BUCKET) * LEN_BUCKET
        dev, dt, heads = self.compute_device, self.dtype, text.num_key_value_heads
        self.lm = _Stack(text.num_hidden_layers, rows, heads, length, head_dim, dt, dev)
        self.ad = _Stack(self.config.adapter_num_layers, rows, heads, length, head_dim, dt, dev)
        pin = dev.type == "cuda"
        self._io = torch.zeros((rows, 4), dtype=torch.long, device=dev)  # 4: rows stay 16-byte aligned
        self._io_host = torch.zeros((rows, 4), dtype=torch.long, pin_memory=pin)
        self._h_in = torch.zeros((rows, text.hidden_size), dtype=dt, device=dev)
        self._h_host = torch.zeros((rows, text.hidden_size), dtype=dt, pin_memory=pin)

    def close(self) -> None:
        """Drop the caches and the compiled steps bound to them."""
        self.lm = self.ad = None
        self._io = self._io_host = self._h_in = self._h_host = None
        self._steps.clear()
        self._text_memo = self._visual_memo = None

    @torch.inference_mode()
    def warmup(self, rows: int, max_len: int, guidance: bool = True) -> None:
        """Allocate for ``rows`` x ``max_len`` and compile (on CUDA: record the graphs of) every one-token step a
        generation of that size uses: the LM over all rows and, with ``guidance``, over each half (the
        conditional and the unconditional rows), the adapter over all rows. The cache is cleared afterwards;
        a generation whose ``allocate`` asks for the same rows and at most ``max_len`` (the loop asks for
        prompt + max_new_tokens + max_images x (codes + 1)) then compiles nothing. ``rows``: the prompts,
        twice that with guidance."""
        self.allocate(rows, max_len)
        halves = guidance and rows % 2 == 0
        ranges = [(0, rows)] + ([(0, rows // 2), (rows // 2, rows // 2)] if halves else [])
        hidden = torch.zeros((rows, 1, self.config.text_config.hidden_size), dtype=self.dtype)
        for _ in range(3):  # CUDA graph trees: a warm-up run, the recording, a replay
            for row0, n in ranges:
                zeros, valid = torch.zeros(n, dtype=torch.long), torch.ones((n, 1), dtype=torch.bool)
                self.decode_step(zeros, zeros, valid, slice(row0, row0 + n), 0)
            zeros, valid = torch.zeros((rows, 1), dtype=torch.long), torch.ones((rows, 1), dtype=torch.bool)
            self.adapter(hidden, zeros, valid, slice(0, rows), 0)
        if self.compute_device.type == "cuda":
            torch.cuda.synchronize(self.compute_device)
        self.allocate(rows, max_len)  # reused: zeroed

    # --- compiled steps ---
    def _step(self, stack: str, rows: slice) -> _Step:
        key = (stack, rows.start, rows.stop - rows.start)
        step = self._steps.get(key)
        if step is not None:
            return step
        # The step's inputs are views of the rows' blocks, with strides independent of the batch: the traced
        # graph depends on the number of rows only, so inductor's cache serves every row range of that size.
        if stack == "lm":
            fn = _decode_fn(self.model)
            keys, values = self.lm.blocks(rows)
            inputs = (self._io[rows], self.lm.valid[rows], *keys, *values)
        else:
            fn = _adapter_fn(self.model)
            keys, values = self.ad.blocks(rows)
            inputs = (self._io[rows], self.ad.valid[rows], self._h_in[rows], *keys, *values)
        if self.compile:
            for t in inputs:  # CUDA graphs read and write them where they lie: no copies in, no recompiles
                torch._dynamo.mark_static_address(t)
            fn = torch.compile(_own_code(fn), mode=self.mode, fullgraph=True, dynamic=False)
            self.compiled_steps += 1
        step = self._steps[key] = _Step(fn, inputs)
        return step

    def _run(self, step: _Step) -> tuple[torch.Tensor, torch.Tensor]:
        """One compiled step: (hidden state on the loop's device, logits left on the compute device)."""
        if self.cuda_graphs:
            torch.compiler.cudagraph_mark_step_begin()  # earlier outputs are dead: we copied what we keep
        h, logits = step()
        if self.cuda_graphs:
            logits = logits.clone()  # the graphs' output memory is reused by the next replay
        return h.to(self.device), logits  # the step's one wait for the device (a copy, off the graph's memory)

    def _stage(self, rows: slice, ids: torch.Tensor | None, position_ids: torch.Tensor, start: int) -> None:
        """Ids, RoPE positions and the write slot of ``rows`` into the step's input buffer (one copy)."""
        host = self._io_host
        if ids is not None:
            host[rows, 0] = ids.to("cpu")
        host[rows, 1] = position_ids.reshape(-1).to("cpu")
        host[rows, 2] = start
        self._io[rows].copy_(host[rows], non_blocking=True)

    def _rows(self, rows: slice, n: int, end: int) -> slice:
        if self.lm is None:
            raise RuntimeError("allocate(rows, max_len) first")
        row0 = rows.start or 0
        if (rows.stop is not None and rows.stop != row0 + n) or row0 + n > self.rows:
            raise ValueError(f"rows {rows} do not match {n} input rows of {self.rows} allocated")
        if end > self.max_len:
            raise RuntimeError(f"KV cache full: writing up to {end} > max_len {self.max_len}")
        return slice(row0, row0 + n)

    # --- StepBackend ---
    @torch.inference_mode()
    def image_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.calls["vision"] += 1
        out = self.model.image_features(pixel_values.to(self.compute_device, self.dtype))
        return out.to(self.device)  # (N, T_img, C)

    @torch.inference_mode()
    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        self.calls["embed"] += 1
        return self.model.embed_tokens(ids.to(self.compute_device)).to(self.device)  # (R, T, C)

    @torch.inference_mode()
    def prefill(
        self,
        embeds: torch.Tensor,
        position_ids: torch.Tensor,
        key_valid: torch.Tensor,
        rows: slice,
        start: int,
    ) -> torch.Tensor:
        self.calls["prefill"] += 1
        lm = self.model.model.language_model
        x = embeds.to(self.compute_device, self.dtype)
        h = self._chunk(self.lm, lm, x, position_ids, key_valid, rows, start)
        return h.to(self.device)  # (n, T, C)

    @torch.inference_mode()
    def decode_step(
        self, ids: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor:
        self.calls["decode"] += 1
        rows = self._rows(rows, ids.shape[0], start + 1)
        self.lm.set_valid(key_valid, rows)
        self._stage(rows, ids, position_ids, start)
        h, logits = self._run(self._step("lm", rows))  # (n, C), (n, V + 1)
        self._text_memo = _Memo(rows.start, h, logits)  # the logits stay on the device until asked for
        return h

    @torch.inference_mode()
    def text_head(self, h: torch.Tensor) -> torch.Tensor:
        if self._text_memo is not None and (logits := self._text_memo.lookup(h)) is not None:
            return logits.to(self.device)  # computed by the compiled decode step for exactly this h
        self.calls["text_head"] += 1
        return self.model.text_logits(h.to(self.compute_device, self.dtype)).to(self.device)  # (n, V + 1)

    @torch.inference_mode()
    def adapter(
        self, h: torch.Tensor, position_ids: torch.Tensor, key_valid: torch.Tensor, rows: slice, start: int
    ) -> torch.Tensor:
        if h.shape[1] != 1:  # the catch-up chunk: eagerly
            self.calls["adapter"] += 1
            x = h.to(self.compute_device, self.dtype)
            return self._chunk(self.ad, self.model.adapter, x, position_ids, key_valid, rows, start).to(self.device)
        self.calls["adapter_step"] += 1
        rows = self._rows(rows, h.shape[0], start + 1)
        self.ad.set_valid(key_valid, rows)
        self._stage(rows, None, position_ids, start)
        self._h_host[rows] = h[:, 0]
        self._h_in[rows].copy_(self._h_host[rows], non_blocking=True)
        a, logits = self._run(self._step("adapter", rows))  # (n, C), (n, N + 2)
        self._visual_memo = _Memo(rows.start, a, logits)
        return a[:, None]  # (n, 1, C)

    @torch.inference_mode()
    def visual_head(self, h: torch.Tensor) -> torch.Tensor:
        if self._visual_memo is not None and (logits := self._visual_memo.lookup(h)) is not None:
            return logits.to(self.device)  # computed by the compiled adapter step for exactly this h
        self.calls["visual_head"] += 1
        return self.model.visual_logits(h.to(self.compute_device, self.dtype)).to(self.device)  # (n, N + 2)

    @torch.inference_mode()
    def vq_decode(self, codes: torch.Tensor) -> torch.Tensor:
        self.calls["vq_decode"] += 1
        return self.model.decode_images(codes.to(self.compute_device)).to(self.device)  # (B, 3, H, W)

    def _chunk(self, stack: _Stack, blocks: nn.Module, x, position_ids, key_valid, rows, start) -> torch.Tensor:
        """A stack (the LM or the adapter: ``layers``, ``norm``, ``rotary_emb``) over T tokens at
        [start, start + T), eagerly, attending over [0, start + T) with the reference's own mask."""
        t = x.shape[1]
        rows = self._rows(rows, x.shape[0], start + t)
        stack.set_valid(key_valid, rows)  # for the compiled steps that follow
        dev = self.compute_device
        visible = attention_mask(key_valid.to(dev), start, t)  # (n, 1, T, start + T)
        keys, values = stack.blocks(rows)
        write_at = torch.arange(start, start + t, device=dev)
        return _blocks(blocks.layers, blocks.norm, blocks.rotary_emb, x, position_ids.to(dev), keys, values,
                       write_at, visible)  # fmt: skip


def _decode_fn(model: ArmorForInterleavedGeneration) -> Callable:
    """The LM over one token, fused with the embedding and the text head (compiled once per row range)."""
    lm = model.model.language_model
    n_layers = len(lm.layers)

    def decode(io: torch.Tensor, valid: torch.Tensor, *kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # io (n, 4): id, RoPE position, write slot; valid (n, S); kv: keys then values, (n, H, S, D) per layer
        start = io[:1, 2]  # (1,)
        x = model.embed_tokens(io[:, 0:1])  # (n, 1, C)
        visible = _step_visible(valid, start)
        h = _blocks(lm.layers, lm.norm, lm.rotary_emb, x, io[:, 1:2], kv[:n_layers], kv[n_layers:], start, visible)
        h = h[:, 0]
        return h, model.text_logits(h)  # (n, C), (n, V + 1)

    return decode


def _adapter_fn(model: ArmorForInterleavedGeneration) -> Callable:
    """The adapter over one position, fused with the visual head (compiled once per row range)."""
    ad = model.adapter
    n_layers = len(ad.layers)

    def adapter_step(
        io: torch.Tensor, valid: torch.Tensor, h: torch.Tensor, *kv: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        start = io[:1, 2]
        visible = _step_visible(valid, start)
        a = _blocks(ad.layers, ad.norm, ad.rotary_emb, h[:, None], io[:, 1:2], kv[:n_layers], kv[n_layers:], start,
                    visible)[:, 0]  # fmt: skip
        return a, model.visual_logits(a)  # (n, C), (n, N + 2)

    return adapter_step


def _check_model(model: ArmorForInterleavedGeneration) -> None:
    """Refuse what the static-cache blocks would compute differently from the eager model."""
    text = model.config.text_config
    problems = []
    for name, layers in (("language model", model.model.language_model.layers), ("adapter", model.adapter.layers)):
        if any(getattr(layer.self_attn, "sliding_window", None) for layer in layers):
            problems.append(f"{name}: sliding-window attention")
    # ``dynamic`` RoPE only changes its frequencies past max_position_embeddings, which the loop never reaches;
    # ``longrope`` switches at original_max_position_embeddings, inside it.
    if "longrope" in rope_types(text):
        problems.append("RoPE type 'longrope' changes its frequencies with the sequence length")
    if problems:
        raise UnsupportedModel(f"{model.config.model_name}: the torch-cuda backend cannot run it: " + "; ".join(problems))

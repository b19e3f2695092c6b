"""ARMOR (arXiv 2503.06542) in PyTorch on transformers' InternVL: model, presets, generation, the interleaved page format."""

from importlib import import_module
from typing import TYPE_CHECKING

# Names resolve on first use (PEP 562), so ``armor_ab.model.interleaved`` can be imported without
# torch: the API process serves InterleavedContent and must stay small.
_EXPORTS = {
    "get_config": "presets",
    "ArmorConfig": "configuration",
    "ArmorVQConfig": "configuration",
    "ContentMetadata": "interleaved",
    "ImageSegment": "interleaved",
    "InterleavedContent": "interleaved",
    "TextSegment": "interleaved",
    "GenerationResult": "generate",
    "InterleavedGenerator": "generate",
    "SamplingConfig": "generate",
    "LoadedModel": "loading",
    "load_model": "loading",
    "save_model": "loading",
    "ArmorForInterleavedGeneration": "modeling",
    "StepBackend": "steps",
    "TorchBackend": "steps",
    "ByteTokenizer": "tokenizer",
    "TextTokenizer": "tokenizer",
    "HFTokenizer": "hf_tokenizer",
    "init_from_base": "from_base",
}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .configuration import ArmorConfig, ArmorVQConfig
    from .from_base import init_from_base
    from .generate import GenerationResult, InterleavedGenerator, SamplingConfig
    from .hf_tokenizer import HFTokenizer
    from .interleaved import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
    from .loading import LoadedModel, load_model, save_model
    from .modeling import ArmorForInterleavedGeneration
    from .presets import get_config
    from .steps import StepBackend, TorchBackend
    from .tokenizer import ByteTokenizer, TextTokenizer

__all__ = [
    "ArmorConfig",
    "ArmorForInterleavedGeneration",
    "ArmorVQConfig",
    "ByteTokenizer",
    "ContentMetadata",
    "GenerationResult",
    "HFTokenizer",
    "ImageSegment",
    "InterleavedContent",
    "InterleavedGenerator",
    "LoadedModel",
    "SamplingConfig",
    "StepBackend",
    "TextSegment",
    "TextTokenizer",
    "TorchBackend",
    "get_config",
    "init_from_base",
    "load_model",
    "save_model",
]

"""ARMOR (arXiv 2503.06542) in PyTorch on transformers' InternVL: model, named configs, generation, content."""

from .configs import get_config
from .configuration import ArmorConfig, ArmorVQConfig
from .content import ContentMetadata, ImageSegment, InterleavedContent, TextSegment
from .generate import GenerationResult, InterleavedGenerator, SamplingConfig
from .loading import LoadedModel, load_model, save_model
from .modeling import ArmorForInterleavedGeneration
from .steps import StepBackend, TorchBackend
from .tokenizer import ByteTokenizer

__all__ = [
    "ArmorConfig",
    "ArmorForInterleavedGeneration",
    "ArmorVQConfig",
    "ByteTokenizer",
    "ContentMetadata",
    "GenerationResult",
    "ImageSegment",
    "InterleavedContent",
    "InterleavedGenerator",
    "LoadedModel",
    "SamplingConfig",
    "StepBackend",
    "TextSegment",
    "TorchBackend",
    "get_config",
    "load_model",
    "save_model",
]

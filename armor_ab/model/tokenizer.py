"""A self-contained byte-level text tokenizer for the small ARMOR models (no hub download, no training).

Ids 0..255 are raw UTF-8 bytes; the specials follow. Every string is encodable and decoding is lossless for
valid UTF-8, which is all the tiny/demo models need. Special tokens are never parsed out of user text (a
prompt containing ``"<eos>"`` is just bytes), so prompts cannot inject control tokens.

The image tokens of ARMOR (codes, <imgbos>, <imgend>, <imgpad>) are not text: they live above the text
vocabulary in the model's extended vocabulary (see ``configuration.py``); ``decode`` drops them.

A model built from a user's own InternVL checkpoint (``armor-ab model init``) carries that base's Hugging Face
tokenizer instead: ``hf_tokenizer.HFTokenizer``, behind the same ``TextTokenizer`` interface. ``load_tokenizer``
picks whichever a model directory holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol, runtime_checkable

TOKENIZER_FILE = "armor_tokenizer.json"

SPECIAL_TOKENS = (
    "<pad>",
    "<bos>",
    "<eos>",
    "<img>",  # InternVL wraps input-image features in <img> ... </img>
    "</img>",
    "<IMG_CONTEXT>",  # placeholder replaced by projected ViT features (InternVL's image_token_id)
    "<|user|>",
    "<|assistant|>",
)


@runtime_checkable
class TextTokenizer(Protocol):
    """What generation, the engines, content and evaluation need from a tokenizer (byte or Hugging Face).

    ``encode`` never turns user text into control tokens; ``chat_prompt`` is the only way control tokens
    (roles, BOS, the input-image block) enter a prompt.
    """

    kind: str

    @property
    def vocab_size(self) -> int: ...  # text ids only; ARMOR's image tokens live above them

    @property
    def eos_id(self) -> int: ...

    @property
    def pad_id(self) -> int: ...

    @property
    def image_context_id(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str: ...

    def chat_prompt(self, text: str, image_seq_length: int | None = None) -> list[int]: ...

    def save_pretrained(self, directory: str | Path) -> Path: ...


class ByteTokenizer:
    """encode(str) -> ids, decode(ids) -> str, and the special ids by name."""

    kind = "byte"

    def __init__(self, specials: Iterable[str] = SPECIAL_TOKENS) -> None:
        self.specials: tuple[str, ...] = tuple(specials)
        self.special_ids: dict[str, int] = {tok: 256 + i for i, tok in enumerate(self.specials)}

    @property
    def vocab_size(self) -> int:
        return 256 + len(self.specials)

    pad_id = property(lambda self: self.special_ids["<pad>"])
    bos_id = property(lambda self: self.special_ids["<bos>"])
    eos_id = property(lambda self: self.special_ids["<eos>"])
    img_start_id = property(lambda self: self.special_ids["<img>"])
    img_end_id = property(lambda self: self.special_ids["</img>"])
    image_context_id = property(lambda self: self.special_ids["<IMG_CONTEXT>"])
    user_id = property(lambda self: self.special_ids["<|user|>"])
    assistant_id = property(lambda self: self.special_ids["<|assistant|>"])

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        out = bytearray()
        for i in ids:
            i = int(i)
            if i < 256:
                out.append(i)
            elif i < self.vocab_size and not skip_special:
                out += self.specials[i - 256].encode()
            # ids >= vocab_size are image tokens of the extended vocabulary: not text
        return out.decode("utf-8", errors="replace")

    def chat_prompt(self, text: str, image_seq_length: int | None = None) -> list[int]:
        """The prompt layout the model is trained on (InternVL-style image block before the question):

        ``<bos><|user|>[<img><IMG_CONTEXT>*n</img>\\n]{text}<|assistant|>``
        """
        ids = [self.bos_id, self.user_id]
        if image_seq_length:
            ids += [self.img_start_id] + [self.image_context_id] * image_seq_length + [self.img_end_id]
            ids += self.encode("\n")
        return ids + self.encode(text) + [self.assistant_id]

    def save_pretrained(self, directory: str | Path) -> Path:
        path = Path(directory) / TOKENIZER_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"kind": self.kind, "specials": list(self.specials)}, indent=2))
        return path

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> ByteTokenizer:
        data = json.loads((Path(directory) / TOKENIZER_FILE).read_text())
        if data.get("kind") != cls.kind:
            raise ValueError(f"{directory}: tokenizer kind {data.get('kind')!r} is not {cls.kind!r}")
        return cls(data["specials"])


def load_tokenizer(directory: str | Path | None, kind: str = "byte") -> TextTokenizer:
    """The tokenizer saved next to a model (byte or Hugging Face), or a fresh byte tokenizer without one."""
    if directory is not None and (Path(directory) / TOKENIZER_FILE).exists():
        return ByteTokenizer.from_pretrained(directory)
    if kind == "hf":
        from .hf_tokenizer import HFTokenizer

        if directory is None:
            raise ValueError("a Hugging Face tokenizer is loaded from a model directory; none was given")
        return HFTokenizer.from_pretrained(directory)
    if kind == "byte":
        return ByteTokenizer()
    raise ValueError(
        f"tokenizer kind {kind!r} is unknown: 'byte' (armor-tiny, armor-demo) or 'hf' (a model directory "
        "with tokenizer.json, as `armor-ab model init` writes it)"
    )

"""A base model's own Hugging Face tokenizer behind ARMOR's ``TextTokenizer`` interface.

``armor-ab model init`` extends the base's tokenizer so that its ids *are* the model's extended vocabulary
(``configuration.py``), one for one:

    [0, V)            the base's text tokens (InternVL's <img>, </img>, <IMG_CONTEXT> among them; added
                      when the base tokenizer lacks them, which needs unused embedding rows)
    [V, V + N)        <imgcode_0> ... <imgcode_{N-1}>: the VQGAN's codes
    V + N, +1, +2     <imgend>, <imgpad>, <imgbos>

so ``decode(..., skip_special=False)`` of a generated sequence shows exactly what the model produced, and no
id means one thing to the tokenizer and another to the model. All of them are *special* tokens: decoding
skips them, and ``encode`` never produces one from user text (``split_special_tokens``), so a catalog
description that contains ``<imgbos>`` or ``<|im_end|>`` stays text.

Prompts use the base's own chat template. The user's text is encoded on its own and spliced into the
rendered template; only the template itself may contain control tokens.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INTERNVL_IMAGE_TOKENS = ("<img>", "</img>", "<IMG_CONTEXT>")
IMAGE_SPECIALS = ("<imgend>", "<imgpad>", "<imgbos>")  # the model's order: V + N, V + N + 1, V + N + 2
CODE_TOKEN = "<imgcode_{}>"
UNUSED_TOKEN = "<|armor_unused_{}|>"  # fills embedding rows the base's tokenizer never uses
# The chat stop token of InternVL2.5's conversation template (ChatML), when the tokenizer has it.
CHAT_STOP = "<|im_end|>"
# Used only when a base tokenizer has no chat template of its own: InternVL2.5's ChatML layout.
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_SLOT = "\ue000armor-user-text\ue000"  # a private-use marker where the user's text goes


class TokenizerSetupError(ValueError):
    """The base tokenizer cannot be made to fit the model (ids past the embedding, a template without text)."""


class HFTokenizer:
    """``TextTokenizer`` over a transformers tokenizer loaded from local files only."""

    kind = "hf"

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        ids = tokenizer.convert_tokens_to_ids
        unk = tokenizer.unk_token_id
        self._ids = {t: ids(t) for t in (*INTERNVL_IMAGE_TOKENS, *IMAGE_SPECIALS, CODE_TOKEN.format(0), CHAT_STOP)}
        self._ids = {t: i for t, i in self._ids.items() if i is not None and i != unk}
        self._prompt_parts: tuple[list[int], list[int]] | None = None

    @classmethod
    def from_pretrained(cls, directory: str | Path) -> HFTokenizer:
        from transformers import AutoTokenizer

        from .configuration import ArmorConfig  # noqa: F401 - registers "armor", whose config.json AutoTokenizer reads

        try:
            tok = AutoTokenizer.from_pretrained(str(directory), local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{directory}: cannot load its Hugging Face tokenizer ({exc})") from exc
        return cls(tok)

    # --- ids ---
    @property
    def vocab_size(self) -> int:
        """Text ids: everything below the first image code (the whole tokenizer before ``model init``)."""
        return self._ids.get(CODE_TOKEN.format(0), len(self.tok))

    @property
    def eos_id(self) -> int:
        return chat_stop_id(self.tok)

    @property
    def bos_id(self) -> int | None:
        return self.tok.bos_token_id

    @property
    def pad_id(self) -> int:
        return pad_id_for(self.tok)

    def _special(self, token: str) -> int:
        if token not in self._ids:
            raise ValueError(f"the tokenizer has no {token} token (run `armor-ab model init` on the base)")
        return self._ids[token]

    img_start_id = property(lambda self: self._special("<img>"))
    img_end_id = property(lambda self: self._special("</img>"))
    image_context_id = property(lambda self: self._special("<IMG_CONTEXT>"))

    # --- text ---
    def encode(self, text: str) -> list[int]:
        """User text -> ids; special-token strings in it stay text (never control tokens)."""
        return list(self.tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"])

    def decode(self, ids: Iterable[int], skip_special: bool = True) -> str:
        known = [int(i) for i in ids if 0 <= int(i) < len(self.tok)]
        return self.tok.decode(known, skip_special_tokens=skip_special)

    def chat_prompt(self, text: str, image_seq_length: int | None = None) -> list[int]:
        """The base's chat template around one user turn, then the assistant's turn opened:
        ``template-prefix [<img><IMG_CONTEXT>*n</img>\\n] {text} template-suffix``."""
        if self._prompt_parts is None:
            self._prompt_parts = template_parts(self.tok)
        prefix, suffix = self._prompt_parts
        ids = list(prefix)
        if image_seq_length:
            ids += [self.img_start_id] + [self.image_context_id] * image_seq_length + [self.img_end_id]
            ids += self.encode("\n")
        return ids + self.encode(text) + suffix

    def save_pretrained(self, directory: str | Path) -> Path:
        out = Path(directory)
        self.tok.save_pretrained(str(out))
        return out / "tokenizer.json"


def template_parts(tok: Any) -> tuple[list[int], list[int]]:
    """The ids before and after the user's text in the chat template's rendering of one user turn."""
    rendered = tok.apply_chat_template(
        [{"role": "user", "content": _SLOT}], tokenize=False, add_generation_prompt=True
    )
    if rendered.count(_SLOT) != 1:
        raise TokenizerSetupError("the chat template does not place the user's message exactly once")
    prefix, suffix = rendered.split(_SLOT)
    return _encode_control(tok, prefix), _encode_control(tok, suffix)


def _encode_control(tok: Any, text: str) -> list[int]:
    """Template text -> ids, its special tokens parsed (they come from the template, not from a user)."""
    return list(tok(text, add_special_tokens=False)["input_ids"]) if text else []


def chat_stop_id(tok: Any) -> int:
    """The token that ends the assistant's turn: ChatML's <|im_end|> when the tokenizer has it (InternVL2.5
    stops there, whatever the LM's own eos is), else the tokenizer's eos."""
    im_end = tok.convert_tokens_to_ids(CHAT_STOP)
    if im_end is not None and im_end != tok.unk_token_id:
        return im_end
    if tok.eos_token_id is None:
        raise TokenizerSetupError(f"the tokenizer has neither {CHAT_STOP} nor an eos token")
    return tok.eos_token_id


def pad_id_for(tok: Any) -> int:
    """Padding: the tokenizer's pad token, else its unk or eos (when that is not the chat stop token)."""
    stop = chat_stop_id(tok)
    for candidate in (tok.pad_token_id, tok.unk_token_id, tok.eos_token_id):
        if candidate is not None and candidate != stop:
            return candidate
    raise TokenizerSetupError("the tokenizer has no pad, unk or eos token distinct from its chat stop token")


@dataclass(frozen=True)
class TokenizerExtension:
    """What ``extend_for_armor`` did, for the init report."""

    text_vocab_size: int
    added_internvl: tuple[str, ...]  # InternVL's image tokens the base tokenizer lacked
    unused_rows: int  # embedding rows the base tokenizer never used, now <|armor_unused_i|>
    chat_template: str  # "base" or "chatml (the base tokenizer had none)"


def extend_for_armor(tok: Any, text_vocab_size: int, num_codes: int) -> TokenizerExtension:
    """Add InternVL's image tokens (when missing), fillers up to the text vocabulary, the N code tokens and
    ARMOR's three, so that tokenizer ids equal the model's extended-vocabulary ids. Mutates ``tok``."""
    missing = tuple(t for t in INTERNVL_IMAGE_TOKENS if t not in tok.get_vocab())
    if missing:
        tok.add_tokens(list(missing), special_tokens=True)
    n = len(tok)
    if n > text_vocab_size:
        raise TokenizerSetupError(
            f"the tokenizer has {n} ids but the language model only {text_vocab_size} embedding rows"
            + (f" (after adding the missing {', '.join(missing)})" if missing else "")
        )
    unused = [UNUSED_TOKEN.format(i) for i in range(text_vocab_size - n)]
    codes = [CODE_TOKEN.format(i) for i in range(num_codes)]
    tok.add_tokens(unused + codes + list(IMAGE_SPECIALS), special_tokens=True)
    expected = {CODE_TOKEN.format(0): text_vocab_size, "<imgbos>": text_vocab_size + num_codes + 2}
    got = {t: tok.convert_tokens_to_ids(t) for t in expected}
    if got != expected:
        raise TokenizerSetupError(f"added tokens landed at {got}, expected {expected}")
    template = "base"
    if not tok.chat_template:
        tok.chat_template = CHATML_TEMPLATE
        template = "chatml (the base tokenizer had none)"
    template_parts(tok)  # fails now, not at the first prompt, if the template cannot take a user turn
    return TokenizerExtension(text_vocab_size, missing, len(unused), template)

"""A generated page as the checks see it: its text, its pictures, the catalog item it is about,
and what its template asked for. Built from freshly generated content or from a stored page."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from PIL import Image

from armor_ab.catalog.items import CatalogItem
from armor_ab.experiments.content_checks import Expects
from armor_ab.model.interleaved import InterleavedContent


@dataclass(frozen=True)
class PageImage:
    sha256: str
    png: bytes = field(repr=False)

    @cached_property
    def pil(self) -> Image.Image | None:
        """The decoded picture (RGB), or None when the bytes do not decode."""
        try:
            with Image.open(io.BytesIO(self.png)) as img:
                img.load()
                return img.convert("RGB")
        except Exception:  # noqa: BLE001 - any decoder error means "does not decode": image_sanity reports it
            return None


@dataclass(frozen=True)
class Page:
    """``text``: the text segments joined as ``InterleavedContent.text`` joins them (evidence
    offsets point into it); ``images``: the pictures in page order."""

    item: CatalogItem
    text: str
    images: tuple[PageImage, ...]
    prompt: str
    expects: Expects
    variant: str = ""

    @classmethod
    def from_content(cls, content: InterleavedContent, item: CatalogItem, prompt: str, expects: Expects,
                     variant: str = "") -> Page:
        return cls(item, content.text, tuple(PageImage(i.sha256, i.png) for i in content.images), prompt, expects,
                   variant)

    @classmethod
    def from_json(cls, data: dict[str, Any], images_dir: Path, item: CatalogItem, prompt: str, expects: Expects,
                  variant: str = "") -> Page:
        """A stored page (``content.content``): its pictures are read from the image store; a missing
        file reads as empty bytes, which image_sanity reports as not decoding."""
        text = "".join(s["text"] for s in data["segments"] if s["type"] == "text")
        images = []
        for seg in data["segments"]:
            if seg["type"] == "image":
                path = Path(images_dir) / f"{seg['sha256']}.png"
                images.append(PageImage(seg["sha256"], path.read_bytes() if path.is_file() else b""))
        return cls(item, text, tuple(images), prompt, expects, variant)

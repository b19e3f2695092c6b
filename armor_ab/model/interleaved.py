"""``InterleavedContent``: the one format for ARMOR output used by the engine, the API, dashboards and the web.

An ordered list of segments, each text or an image, plus metadata saying what made it. On disk (``save``):

    DIR/content.json        {"format": "armor-interleaved/1", "metadata": {...}, "segments": [...]}
    DIR/<sha256>.png        one file per distinct image, named by the SHA-256 of its PNG bytes

An image segment in JSON carries its file name, SHA-256, size and VQ codes; the PNG bytes themselves stay out
of the JSON. ``to_json()`` is deterministic (no timestamps), so equal generations give byte-equal files.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from PIL import Image

FORMAT = "armor-interleaved/1"
CONTENT_FILE = "content.json"


@dataclass(frozen=True)
class TextSegment:
    text: str
    type: Literal["text"] = "text"

    def to_json(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(frozen=True)
class ImageSegment:
    png: bytes = field(repr=False)
    codes: tuple[int, ...]
    sha256: str
    width: int
    height: int
    type: Literal["image"] = "image"

    @classmethod
    def from_png(cls, png: bytes, codes: list[int] | tuple[int, ...] = ()) -> ImageSegment:
        with Image.open(io.BytesIO(png)) as img:
            width, height = img.size
        return cls(
            png=png, codes=tuple(int(c) for c in codes), sha256=sha256_hex(png), width=width, height=height
        )

    @classmethod
    def from_pil(cls, image: Image.Image, codes: list[int] | tuple[int, ...] = ()) -> ImageSegment:
        return cls.from_png(png_bytes(image), codes)

    @property
    def filename(self) -> str:
        return f"{self.sha256}.png"

    def to_pil(self) -> Image.Image:
        return Image.open(io.BytesIO(self.png))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": "image",
            "file": self.filename,
            "sha256": self.sha256,
            "width": self.width,
            "height": self.height,
            "codes": list(self.codes),
        }


Segment = TextSegment | ImageSegment


@dataclass(frozen=True)
class ContentMetadata:
    """What made the content: enough to reproduce it with the same weights."""

    model: str  # named configuration or model directory
    config_hash: str  # ArmorConfig.config_hash()
    seed: int  # the seed of this row's sampler
    prompt: str
    sampling: dict[str, Any] = field(default_factory=dict)  # SamplingConfig.to_dict()
    input_image_sha256: str | None = None  # SHA-256 of the input image's PNG, for the understanding path
    extra: dict[str, Any] = field(default_factory=dict)  # free-form (engine version, experiment arm, ...)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContentMetadata:
        return cls(**data)


@dataclass
class InterleavedContent:
    segments: list[Segment]
    metadata: ContentMetadata

    @property
    def text(self) -> str:
        """All text segments joined, images left out."""
        return "".join(s.text for s in self.segments if isinstance(s, TextSegment))

    @property
    def images(self) -> list[ImageSegment]:
        return [s for s in self.segments if isinstance(s, ImageSegment)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "metadata": asdict(self.metadata),
            "segments": [s.to_json() for s in self.segments],
        }

    def to_json_str(self) -> str:
        return json.dumps(self.to_json(), indent=2, sort_keys=True, ensure_ascii=False)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON (which names images by hash, so it covers the pixels too)."""
        return sha256_hex(self.to_json_str().encode())

    def save(self, directory: str | Path) -> Path:
        """Write content.json and one <sha256>.png per image; returns the content.json path."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        for image in self.images:
            path = out / image.filename
            if not path.exists():  # content-addressed: an existing file already holds these bytes
                path.write_bytes(image.png)
        path = out / CONTENT_FILE
        path.write_text(self.to_json_str() + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, data: dict[str, Any], directory: str | Path) -> InterleavedContent:
        """Rebuild from ``to_json()`` output, reading the PNGs from ``directory`` (hashes verified)."""
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown content format {data.get('format')!r}, expected {FORMAT!r}")
        segments: list[Segment] = []
        for seg in data["segments"]:
            if seg["type"] == "text":
                segments.append(TextSegment(seg["text"]))
            elif seg["type"] == "image":
                png = (Path(directory) / seg["file"]).read_bytes()
                if sha256_hex(png) != seg["sha256"]:
                    raise ValueError(f"{seg['file']}: SHA-256 does not match content.json")
                segments.append(ImageSegment.from_png(png, seg.get("codes", ())))
            else:
                raise ValueError(f"unknown segment type {seg['type']!r}")
        return cls(segments, ContentMetadata.from_json(data["metadata"]))

    @classmethod
    def load(cls, directory: str | Path) -> InterleavedContent:
        data = json.loads((Path(directory) / CONTENT_FILE).read_text(encoding="utf-8"))
        return cls.from_json(data, directory)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def png_bytes(image: Image.Image) -> bytes:
    """Deterministic PNG encoding (no metadata chunks, fixed compression)."""
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()

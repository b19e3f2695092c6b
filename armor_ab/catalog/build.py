"""Write the demo catalog: ``python -m armor_ab.catalog.build [--out armor_ab/assets/catalog] [--seed 2025]``.

Output (small enough to commit, ~100 KB):

    OUT/catalog.json        products (id, name, category, specs, price band, control copy, picture seed)
                            plus what made it (generator, seed, Pillow version) and the pictures' SHA-256
    OUT/images/<id>.png     64 x 64 product pictures drawn by ``draw.py``

Running it twice with the same seed rewrites byte-identical files.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import PIL

from armor_ab.assets import DEMO_CATALOG

from .products import CATALOG_FILE, CATALOG_FORMAT, build_products, product_picture

DEFAULT_OUT = DEMO_CATALOG
DEFAULT_SEED = 2025
PICTURE_SIZE = 64


def png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")  # default settings: deterministic for equal pixels
    return buffer.getvalue()


def build_catalog(out: Path = DEFAULT_OUT, seed: int = DEFAULT_SEED) -> dict:
    """Write catalog.json and the pictures; returns the catalog document."""
    products = build_products(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    hashes: dict[str, str] = {}
    for product in products:
        data = png_bytes(product_picture(product, size=PICTURE_SIZE))
        (out / product.picture).write_bytes(data)
        hashes[product.id] = hashlib.sha256(data).hexdigest()
    document = {
        "format": CATALOG_FORMAT,
        "generator": "python -m armor_ab.catalog.build",
        "seed": seed,
        "picture_size": PICTURE_SIZE,
        "versions": {"pillow": PIL.__version__},
        "categories": sorted({p.category for p in products}, key=[p.category for p in products].index),
        "picture_sha256": hashes,
        "products": [p.to_json() for p in products],
    }
    (out / CATALOG_FILE).write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n")
    return document


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    document = build_catalog(args.out, args.seed)
    print(f"wrote {len(document['products'])} products to {args.out / CATALOG_FILE}")


if __name__ == "__main__":
    main()

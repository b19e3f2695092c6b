"""Write the demo catalog: ``python -m armor_ab.catalog.build [--out armor_ab/assets/catalog] [--seed 2025]``.

Output (small enough to commit, ~100 KB):

    OUT/catalog.json        products (id, name, category, specs, price band, control copy, picture seed)
                            plus what made it (generator, seed, Pillow version) and the pictures' SHA-256
    OUT/catalog.csv         the same products as a catalog file ``armor-ab catalog import`` reads
                            (``--images OUT``): id, name, category, description, spec_<label>...,
                            the demo's other fields, image
    OUT/images/<id>.png     64 x 64 product pictures drawn by ``draw.py``

Running it twice with the same seed rewrites byte-identical files.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
from pathlib import Path

import PIL

from armor_ab.assets import DEMO_CATALOG

from .demo import DEMO_FIELDS
from .products import CATALOG_FILE, CATALOG_FORMAT, Product, build_products, product_picture

DEFAULT_OUT = DEMO_CATALOG
DEFAULT_SEED = 2025
PICTURE_SIZE = 64
CSV_FILE = "catalog.csv"


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
    (out / CSV_FILE).write_bytes(catalog_csv(products))
    return document


def catalog_csv(products: list[Product]) -> bytes:
    """The products as an importable CSV (UTF-8, ``\\n`` line ends: the same bytes on every OS).

    One ``spec_<label>`` column per label in order of first use; a product leaves the other
    categories' spec cells empty (the importer skips them). A product's specs read back in column
    order, which is its own order as long as no two categories share labels in opposite orders
    (``tests/test_catalog_import.py`` imports this file and compares every item with ``demo_items``).
    """
    labels = list(dict.fromkeys(label for p in products for label in p.specs))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "name", "category", "description", *(f"spec_{label}" for label in labels),
                     *DEMO_FIELDS, "image"])
    for p in products:
        writer.writerow([p.id, p.name, p.category, p.description, *(p.specs.get(label, "") for label in labels),
                         *(str(getattr(p, name)) for name in DEMO_FIELDS), p.picture])
    return buffer.getvalue().encode("utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    document = build_catalog(args.out, args.seed)
    print(f"wrote {len(document['products'])} products to {args.out / CATALOG_FILE}")


if __name__ == "__main__":
    main()

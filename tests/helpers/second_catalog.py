"""The second catalog of issue 16 (tests/test_catalog_second.py), shared with the own-catalog training test
(tests/test_training_catalog.py): twelve kitchen products in three categories the demo lacks (kettles, grinders,
scales), ``spec_<label>`` columns, an extra column (``material``) and photos drawn here (PNG and JPEG).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from PIL import Image, ImageDraw

CATEGORIES = {
    # category: (id prefix, names, capacities, materials, the category's own spec: (label, values) or None)
    "kettles": ("kettle", ["Aurora", "Brook", "Cinder", "Delta"], ["1.7 l", "1.5 l", "1.2 l", "0.8 l"],
                ["stainless steel", "borosilicate glass", "enamelled steel", "copper"], None),
    "grinders": ("grinder", ["Ember", "Flint", "Garnet", "Heron"], ["250 g", "300 g", "120 g", "500 g"],
                 ["aluminium", "stainless steel", "walnut", "cast iron"],
                 ("burr", ["conical 40 mm", "flat 64 mm", "conical 38 mm", "flat 83 mm"])),
    "scales": ("scale", ["Iris", "Juniper", "Kestrel", "Linden"], ["2 kg", "5 kg", "500 g", "10 kg"],
               ["tempered glass", "bamboo", "stainless steel", "ABS"],
               ("resolution", ["0.1 g", "1 g", "0.01 g", "2 g"])),
}


def products() -> list[dict[str, str]]:
    """The twelve rows of the catalog file, in file order."""
    rows = []
    for category, (prefix, names, capacities, materials, own) in CATEGORIES.items():
        for n, (name, capacity, material) in enumerate(zip(names, capacities, materials, strict=True), start=1):
            item_id = f"{prefix}-{n:02d}"
            row = {
                "id": item_id, "name": f"{name} {prefix}", "category": category,
                "description": f"The {name} {prefix} holds {capacity}. Made of {material}, built to last.",
                "spec_capacity": capacity, "spec_burr": "", "spec_resolution": "", "material": material,
                # Even rows PNG, odd rows JPEG, under a folder per category below --images.
                "image": f"{category}/{item_id}.{'png' if len(rows) % 2 == 0 else 'jpg'}",
            }
            if own is not None:
                row[f"spec_{own[0]}"] = own[1][n - 1]
            rows.append(row)
    return rows


def draw_photo(path: Path, index: int) -> bytes:
    """A product photo of its own: a coloured body on a light ground, as PNG or JPEG by the suffix."""
    image = Image.new("RGB", (96, 96), (240, 240, 235))
    draw = ImageDraw.Draw(image)
    colour = ((37 * index) % 256, (91 * index + 60) % 256, (53 * index + 120) % 256)
    draw.rounded_rectangle((18 + index, 20, 78, 84 - index), radius=10, fill=colour)
    draw.ellipse((30, 8 + index, 66, 30 + index), outline=(20, 20, 20), width=3)
    buf = io.BytesIO()
    image.save(buf, format="PNG" if path.suffix == ".png" else "JPEG", quality=90)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def write_catalog(directory: Path) -> tuple[Path, Path, list[dict[str, str]], dict[str, bytes]]:
    """The catalog file (CSV) and its photos under ``directory``: (csv, photos dir, rows, photo bytes by id)."""
    rows = products()
    photos_dir = directory / "photos"
    photos = {row["id"]: draw_photo(photos_dir / row["image"], i) for i, row in enumerate(rows)}
    path = directory / "kitchen.csv"
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, photos_dir, rows, photos

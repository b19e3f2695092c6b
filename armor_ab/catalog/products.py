"""The demo catalog's products: id, name, category, key specs, price band and the control copy.

Ids follow the traffic simulator's ``<category>-NN`` (``pumps-01`` ... ``gearboxes-07``). Everything is drawn
from one seeded ``random.Random`` so that ``build_products(seed)`` is a pure function; the committed
``armor_ab/assets/catalog/catalog.json`` is its output (see ``build.py``).

Texts are deliberately short and templated: the demo model reads and writes bytes, so "Pump P-01: 5.5 kW,
120 m3/h." is about all a 45-minute CPU training can learn to write reliably. The longer ``description`` is the
control copy (what the catalog shows without ARMOR) and is never a training target.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image

from .draw import CATEGORIES, draw_product, picture_attributes

CATALOG_FILE = "catalog.json"
CATALOG_FORMAT = "armor-catalog/1"
PRODUCTS_PER_CATEGORY = 7

# Per category: singular noun, code letter, the two key specs (label, unit, values) and control-copy phrases.
CATEGORY_INFO: dict[str, dict] = {
    "pumps": {
        "noun": "pump",
        "letter": "P",
        "specs": [
            ("power", "kW", ["0.75", "1.5", "2.2", "3", "4", "5.5", "7.5", "11", "15", "22"]),
            ("flow", "m3/h", ["10", "25", "40", "60", "80", "120", "160", "200", "250"]),
        ],
        "kinds": ["Centrifugal pump", "Inline pump", "End-suction pump"],
        "uses": ["clean water transfer", "cooling circuits", "irrigation", "process water"],
    },
    "valves": {
        "noun": "valve",
        "letter": "V",
        "specs": [
            ("size", "", ["DN15", "DN20", "DN25", "DN32", "DN40", "DN50", "DN65", "DN80", "DN100"]),
            ("pressure", "bar", ["6", "10", "16", "25", "40", "63"]),
        ],
        "kinds": ["Gate valve", "Globe valve", "Ball valve"],
        "uses": ["water mains", "steam lines", "chemical dosing", "district heating"],
    },
    "motors": {
        "noun": "motor",
        "letter": "M",
        "specs": [
            ("power", "kW", ["0.55", "1.1", "2.2", "4", "7.5", "11", "18.5", "30", "45"]),
            ("speed", "rpm", ["750", "1000", "1450", "2900", "3000"]),
        ],
        "kinds": ["Induction motor", "IE3 motor", "Flameproof motor"],
        "uses": ["fans", "conveyors", "compressors", "pumps and mixers"],
    },
    "bearings": {
        "noun": "bearing",
        "letter": "B",
        "specs": [
            ("bore", "mm", ["10", "15", "20", "25", "30", "35", "40", "50", "60"]),
            ("load", "kN", ["5", "8", "12", "18", "25", "32", "45", "60"]),
        ],
        "kinds": ["Deep groove ball bearing", "Angular contact bearing", "Sealed ball bearing"],
        "uses": ["electric motors", "gear units", "pump shafts", "conveyor rollers"],
    },
    "sensors": {
        "noun": "sensor",
        "letter": "S",
        "specs": [
            ("range", "bar", ["0-1", "0-6", "0-10", "0-16", "0-25", "0-100"]),
            ("output", "", ["4-20 mA", "0-10 V", "0-5 V", "IO-Link"]),
        ],
        "kinds": ["Pressure sensor", "Pressure transmitter", "Compact pressure sensor"],
        "uses": ["hydraulics", "pump control", "compressed air", "process monitoring"],
    },
    "gearboxes": {
        "noun": "gearbox",
        "letter": "G",
        "specs": [
            ("ratio", "", ["1:5", "1:10", "1:15", "1:20", "1:30", "1:40", "1:50", "1:80"]),
            ("torque", "Nm", ["120", "250", "400", "600", "900", "1500", "2500"]),
        ],
        "kinds": ["Helical gearbox", "Worm gearbox", "Bevel gearbox"],
        "uses": ["conveyors", "mixers", "hoists", "packaging lines"],
    },
}
PRICE_BANDS = ("low", "mid", "high")


@dataclass(frozen=True)
class Product:
    id: str  # "pumps-01"
    code: str  # "P-01"
    name: str  # "Pump P-01"
    category: str  # "pumps"
    noun: str  # "pump"
    specs: dict[str, str]  # {"power": "5.5 kW", "flow": "120 m3/h"}: the key specs, in order
    price_band: str
    description: str  # control copy: the text-only catalog entry
    picture_seed: int
    colour: str  # the catalog picture's body colour (from the seed)
    picture: str = ""  # file name of the catalog picture, relative to the catalog directory
    extra: dict = field(default_factory=dict)

    @property
    def spec_values(self) -> list[str]:
        return list(self.specs.values())

    def spec_line(self) -> str:
        """The short text the model writes about the product: ``"Pump P-01: 5.5 kW, 120 m3/h."``."""
        return f"{self.name}: {', '.join(self.spec_values)}."

    def to_json(self) -> dict:
        return asdict(self)


def _spec(value: str, unit: str) -> str:
    return f"{value} {unit}".strip()


def build_products(seed: int = 2025) -> list[Product]:
    """All demo products, deterministically from ``seed`` (same seed, same catalog)."""
    rng = random.Random(seed)
    products: list[Product] = []
    for c_index, category in enumerate(CATEGORIES):
        info = CATEGORY_INFO[category]
        (label_a, unit_a, values_a), (label_b, unit_b, values_b) = info["specs"]
        # Distinct spec pairs inside a category, so every product's text is its own.
        pairs = [(a, b) for a in values_a for b in values_b]
        chosen = rng.sample(pairs, PRODUCTS_PER_CATEGORY)
        for i, (a, b) in enumerate(chosen, start=1):
            code = f"{info['letter']}-{i:02d}"
            name = f"{info['noun'].capitalize()} {code}"
            specs = {label_a: _spec(a, unit_a), label_b: _spec(b, unit_b)}
            kind, use = rng.choice(info["kinds"]), rng.choice(info["uses"])
            description = (
                f"{name}. {kind} for {use}. {label_a.capitalize()} {specs[label_a]}, "
                f"{label_b} {specs[label_b]}. Ships in {rng.choice(['2', '3', '5', '10'])} working days."
            )
            picture_seed = seed * 1000 + c_index * 100 + i
            products.append(
                Product(
                    id=f"{category}-{i:02d}",
                    code=code,
                    name=name,
                    category=category,
                    noun=info["noun"],
                    specs=specs,
                    price_band=rng.choice(PRICE_BANDS),
                    description=description,
                    picture_seed=picture_seed,
                    colour=picture_attributes(picture_seed)["colour"],
                    picture=f"images/{category}-{i:02d}.png",
                )
            )
    return products


def product_picture(product: Product, variant: int = 0, size: int = 64) -> Image.Image:
    """The catalog picture (variant 0) or a re-draw of the same category with a derived seed (variant > 0)."""
    seed = product.picture_seed if variant == 0 else redraw_seed(product.picture_seed, variant)
    return draw_product(product.category, seed, size=size)


def redraw_seed(picture_seed: int, variant: int) -> int:
    """A fresh seed for re-draw ``variant`` of a picture (stable, and far from every catalog seed)."""
    return (picture_seed * 7919 + variant * 104729) % 2_147_483_647 + 10**9


def load_catalog(directory: str | Path) -> list[Product]:
    """The products of a catalog directory written by ``armor_ab.catalog.build``."""
    data = json.loads((Path(directory) / CATALOG_FILE).read_text())
    if data.get("format") != CATALOG_FORMAT:
        raise ValueError(f"{directory}: not an {CATALOG_FORMAT} catalog")
    return [Product(**p) for p in data["products"]]

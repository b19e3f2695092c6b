"""A catalog item as armor-ab keeps it, whoever's catalog it is: the contract of ``catalog_items``.

A manufacturer's file (``armor-ab catalog import``, ``armor_ab.catalog.importer``) and the shipped
demo catalog arrive through the same door and become ``CatalogItem``s: an id, a name, a category, the
control copy (``description``), the key specs in the file's order, an optional photo (by its SHA-256
in the content-addressed image store beside the database) and every other column of the file as
text (``fields``). Content generation, the control copy, the ``/demo/`` site, the simulator and the
dashboards read these, from the database.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field

MAX_SPECS = 64
MAX_ID = 128
MAX_NAME = 200
MAX_CATEGORY = 100
MAX_DESCRIPTION = 20_000
MAX_VALUE = 2_000  # a spec value or another field's text
# An id is used in URLs, file names and event rows: printable, no slash, no whitespace at the ends.
ITEM_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:+\-]{0,127}$")
# A spec label or field name is a template placeholder: ``{spec_power}``, ``{price_band}``.
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
CORE_FIELDS = ("id", "name", "category", "description")
IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}


@dataclass(frozen=True)
class CatalogItem:
    id: str
    name: str
    category: str
    description: str  # the control copy: what the catalog page shows today
    specs: dict[str, str] = field(default_factory=dict)  # label -> value, in the file's order
    image: str | None = None  # SHA-256 of the photo in the image store, or None
    image_type: str | None = None  # its media type: image/png, image/jpeg or image/webp
    fields: dict[str, str] = field(default_factory=dict)  # every other column of the file, as text

    def template_fields(self) -> dict[str, str]:
        """What a prompt template may name: ``{id}``, ``{name}``, ``{category}``, ``{description}``,
        ``{specs}`` (the values, comma-separated), ``{spec_<label>}`` and the bare ``{<label>}`` of each
        spec, and every other imported column by its name."""
        out = {**self.fields}
        for label, value in self.specs.items():
            out.setdefault(label, value)
            out[f"spec_{label}"] = value
        out.update(id=self.id, name=self.name, category=self.category, description=self.description,
                   specs=", ".join(self.specs.values()))
        return out

    def spec_line(self) -> str:
        """The item's short text: ``"Pump P-01: 5.5 kW, 120 m3/h."`` (its name and spec values)."""
        values = ", ".join(self.specs.values())
        return f"{self.name}: {values}." if values else f"{self.name}."

    def digest(self) -> str:
        """SHA-256 of everything the item holds: a re-import changes an item exactly when this changes."""
        # Key order counts: {specs} renders the values in the order of the file.
        canonical = json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def to_json(self) -> dict:
        return asdict(self)

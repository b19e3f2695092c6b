"""Procedural product pictures: one silhouette per category, colour / size / position from a seed.

The category is carried by the *shape* (a pump's round volute with its outlet, a valve's bow-tie body and
handwheel, a motor's finned body and shaft, a bearing's rings and balls, a sensor's slim probe with its hex
nut, a gearbox's box with meshing gears), so a classifier - or the model - has to read the shape, not the
colour. Everything comes from ``random.Random(seed)``: the same seed gives the same pixels and, with PIL's
default PNG settings, the same PNG bytes.

Drawing happens on a 4x canvas that is then downsampled (Lanczos), which gives anti-aliased edges at 64 px.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

from PIL import Image, ImageDraw

CATEGORIES = ("pumps", "valves", "motors", "bearings", "sensors", "gearboxes")

# Named body colours (RGB); the product's colour is one of these, slightly jittered.
COLOURS: dict[str, tuple[int, int, int]] = {
    "blue": (40, 90, 200),
    "red": (200, 45, 40),
    "green": (40, 150, 70),
    "orange": (235, 130, 30),
    "grey": (110, 115, 125),
    "yellow": (220, 190, 30),
    "teal": (20, 140, 150),
    "purple": (120, 60, 170),
}

SUPERSAMPLE = 4
Painter = Callable[[ImageDraw.ImageDraw, float, float, float, tuple, tuple], None]


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    """Darker (factor < 1) or lighter (factor > 1) version of a colour: details stay visible on the body."""
    if factor < 1:
        return tuple(int(c * factor) for c in colour)
    return tuple(int(c + (255 - c) * (factor - 1)) for c in colour)


def _circle(d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, **kw) -> None:
    d.ellipse([cx - r, cy - r, cx + r, cy + r], **kw)


# Each painter draws on a canvas of side S = 64 * SUPERSAMPLE, centred on (cx, cy), with unit size u (the
# product's scale): geometry is in multiples of u so that size varies while proportions stay.


def _pump(d: ImageDraw.ImageDraw, cx: float, cy: float, u: float, body: tuple, dark: tuple) -> None:
    d.rectangle([cx - 26 * u, cy + 18 * u, cx + 26 * u, cy + 24 * u], fill=dark)  # base plate
    d.rectangle([cx + 6 * u, cy - 28 * u, cx + 20 * u, cy - 6 * u], fill=body, outline=dark, width=int(2 * u))
    d.rectangle([cx + 2 * u, cy - 31 * u, cx + 24 * u, cy - 26 * u], fill=dark)  # outlet flange
    _circle(d, cx - 2 * u, cy + 2 * u, 20 * u, fill=body, outline=dark, width=int(3 * u))  # volute
    _circle(d, cx - 2 * u, cy + 2 * u, 8 * u, fill=dark)  # impeller eye
    _circle(d, cx - 2 * u, cy + 2 * u, 3 * u, fill=_shade(body, 1.5))


def _valve(d: ImageDraw.ImageDraw, cx: float, cy: float, u: float, body: tuple, dark: tuple) -> None:
    d.polygon([(cx - 24 * u, cy - 12 * u), (cx, cy + 6 * u), (cx - 24 * u, cy + 24 * u)], fill=body)
    d.polygon([(cx + 24 * u, cy - 12 * u), (cx, cy + 6 * u), (cx + 24 * u, cy + 24 * u)], fill=body)
    d.rectangle([cx - 28 * u, cy - 14 * u, cx - 22 * u, cy + 26 * u], fill=dark)  # flanges
    d.rectangle([cx + 22 * u, cy - 14 * u, cx + 28 * u, cy + 26 * u], fill=dark)
    d.rectangle([cx - 2.5 * u, cy - 22 * u, cx + 2.5 * u, cy + 6 * u], fill=dark)  # stem
    d.ellipse([cx - 18 * u, cy - 28 * u, cx + 18 * u, cy - 18 * u], outline=dark, width=int(4 * u))  # wheel


def _motor(d: ImageDraw.ImageDraw, cx: float, cy: float, u: float, body: tuple, dark: tuple) -> None:
    d.rectangle([cx + 20 * u, cy - 4 * u, cx + 30 * u, cy + 4 * u], fill=dark)  # shaft
    d.rectangle([cx - 22 * u, cy + 14 * u, cx - 14 * u, cy + 22 * u], fill=dark)  # feet
    d.rectangle([cx + 6 * u, cy + 14 * u, cx + 14 * u, cy + 22 * u], fill=dark)
    d.rounded_rectangle([cx - 28 * u, cy - 16 * u, cx + 20 * u, cy + 16 * u], radius=6 * u, fill=body)
    for i in range(6):  # cooling fins
        x = cx - 22 * u + i * 7 * u
        d.rectangle([x, cy - 14 * u, x + 2.5 * u, cy + 14 * u], fill=dark)


def _bearing(d: ImageDraw.ImageDraw, cx: float, cy: float, u: float, body: tuple, dark: tuple) -> None:
    _circle(d, cx, cy, 28 * u, fill=body, outline=dark, width=int(2 * u))  # outer ring
    _circle(d, cx, cy, 21 * u, fill=dark)  # raceway
    for i in range(8):  # balls
        a = 2 * math.pi * i / 8
        _circle(d, cx + 17 * u * math.cos(a), cy + 17 * u * math.sin(a), 4.5 * u, fill=_shade(body, 1.6))
    _circle(d, cx, cy, 12 * u, fill=body)  # inner ring
    _circle(d, cx, cy, 7 * u, fill=(250, 250, 250))  # bore


def _sensor(d: ImageDraw.ImageDraw, cx: float, cy: float, u: float, body: tuple, dark: tuple) -> None:
    cable = [(cx, cy - 20 * u), (cx + 8 * u, cy - 28 * u), (cx + 22 * u, cy - 30 * u)]
    d.line(cable, fill=dark, width=int(3 * u))
    d.rounded_rectangle([cx - 7 * u, cy - 22 * u, cx + 7 * u, cy + 12 * u], radius=6 * u, fill=body)
    d.rectangle([cx - 12 * u, cy + 12 * u, cx + 12 * u, cy + 20 * u], fill=dark)  # hex nut, side view
    d.rectangle([cx - 4 * u, cy + 20 * u, cx + 4 * u, cy + 30 * u], fill=_shade(dark, 1.4))  # thread
    for i in range(3):
        y = cy + 22 * u + i * 3 * u
        d.line([(cx - 4 * u, y), (cx + 4 * u, y)], fill=dark, width=int(1 * u))


def _gear(
    d: ImageDraw.ImageDraw, cx: float, cy: float, r: float, teeth: int, fill: tuple, phase: float
) -> None:
    points = []
    for i in range(teeth * 2):
        a = phase + math.pi * i / teeth
        rr = r if i % 2 == 0 else r * 0.78
        points.append((cx + rr * math.cos(a), cy + rr * math.sin(a)))
    d.polygon(points, fill=fill)


def _gearbox(d: ImageDraw.ImageDraw, cx: float, cy: float, u: float, body: tuple, dark: tuple) -> None:
    d.rectangle([cx - 32 * u, cy - 3 * u, cx - 24 * u, cy + 3 * u], fill=dark)  # input / output shafts
    d.rectangle([cx + 24 * u, cy - 3 * u, cx + 32 * u, cy + 3 * u], fill=dark)
    d.rectangle(
        [cx - 25 * u, cy - 22 * u, cx + 25 * u, cy + 22 * u], fill=body, outline=dark, width=int(2 * u)
    )
    light = _shade(body, 1.6)
    _gear(d, cx - 9 * u, cy, 13 * u, 10, light, 0.0)
    _gear(d, cx + 12 * u, cy, 9 * u, 7, light, 0.3)
    _circle(d, cx - 9 * u, cy, 3 * u, fill=dark)
    _circle(d, cx + 12 * u, cy, 2.5 * u, fill=dark)


PAINTERS: dict[str, Painter] = {
    "pumps": _pump,
    "valves": _valve,
    "motors": _motor,
    "bearings": _bearing,
    "sensors": _sensor,
    "gearboxes": _gearbox,
}


def draw_picture(
    category: str,
    colour: str,
    scale: float,
    offset: tuple[float, float] = (0.0, 0.0),
    background: tuple[int, int, int] = (245, 245, 242),
    size: int = 64,
) -> Image.Image:
    """One product picture from explicit attributes (``draw_product`` picks them from a seed)."""
    if category not in PAINTERS:
        raise ValueError(f"unknown category {category!r}; known: {', '.join(CATEGORIES)}")
    big = size * SUPERSAMPLE
    image = Image.new("RGB", (big, big), background)
    d = ImageDraw.Draw(image)
    u = big / 64 * scale * 0.95  # painters use a 64-unit frame around the centre
    cx = big / 2 + offset[0] * big / 64
    cy = big / 2 + offset[1] * big / 64
    body = COLOURS[colour]
    PAINTERS[category](d, cx, cy, u, body, _shade(body, 0.45))
    return image.resize((size, size), Image.Resampling.LANCZOS)


def picture_attributes(seed: int) -> dict:
    """Colour, scale, offset and background tint for a seed (what varies between pictures)."""
    rng = random.Random(seed)
    colour = rng.choice(sorted(COLOURS))
    scale = round(rng.uniform(0.72, 1.0), 3)
    offset = (round(rng.uniform(-3.5, 3.5), 2), round(rng.uniform(-3.5, 3.5), 2))
    tint = rng.randint(232, 250)
    background = (tint, tint, min(255, tint + rng.randint(-6, 6)))
    return {"colour": colour, "scale": scale, "offset": offset, "background": background}


def draw_product(category: str, seed: int, size: int = 64) -> Image.Image:
    """A picture of a ``category`` product, everything but the shape chosen by ``seed``."""
    return draw_picture(category, size=size, **picture_attributes(seed))

"""Exports of the ROI view: a CSV of every figure, and a one-page PNG summary for a meeting (PIL).

matplotlib is not a dependency: the PNG is drawn with PIL (text, a key-figure table and a small
bar chart of the ROI distribution), 1600 x 1000 px, legible on a projector and in a slide deck.
"""

from __future__ import annotations

import csv
import io
import textwrap
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from dashboards.lib import figures, fmt

W, H = 1600, 1000
MARGIN = 60
COLORS = {"ship": (46, 125, 50), "keep_running": (21, 101, 192), "stop": (230, 81, 0), None: (97, 97, 97)}
INK, GREY, LIGHT = (33, 33, 33), (117, 117, 117), (238, 238, 238)
WIN, LOSS = (46, 125, 50), (198, 40, 40)
_FONT_DIRS = (Path("/usr/share/fonts/truetype/dejavu"), Path("/usr/share/fonts/dejavu"))


@cache
def _font(size: int, bold: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    name = "DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf"
    for d in _FONT_DIRS:
        if (d / name).is_file():
            return ImageFont.truetype(str(d / name), size)
    return ImageFont.load_default(size=size)


def roi_csv(experiment: str, roi: dict, *, verdict: dict | None = None, whatif: bool = False) -> bytes:
    """Every ROI figure as CSV rows: section, name, value, 95% interval low/high."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "name", "value", "ci_low", "ci_high"])
    w.writerow(["experiment", "key", experiment, "", ""])
    w.writerow(["experiment", "assumptions", "what-if (not saved)" if whatif else "experiment's", "", ""])
    if verdict:
        w.writerow(["verdict", "decision", verdict.get("decision", ""), "", ""])
        w.writerow(["verdict", "headline", verdict.get("headline", ""), "", ""])
    point = roi.get("point") or {}
    for name in ("roi_pct", "npv", "payback_months", "incremental_profit_per_month", "incremental_inquiries_per_month"):
        ci = (roi.get(name) or {}).get("ci") or [None, None]
        w.writerow(["figure", name, _cell(point.get(name)), _cell(ci[0]), _cell(ci[1])])
    w.writerow(["figure", "prob_roi_positive", _cell(figures.roi_prob(roi)), "", ""])
    w.writerow(["figure", "break_even_lift_rel", _cell(roi.get("break_even_lift_rel")), "", ""])
    for name, value in (roi.get("effect") or {}).items():
        w.writerow(["effect", name, _cell(value), "", ""])
    for name, value in (roi.get("assumptions") or {}).items():
        w.writerow(["assumption", name, _cell(value), "", ""])
    sens = roi.get("sensitivity") or {}
    metric = sens.get("metric", "roi_pct")
    for item in sens.get("items") or []:
        w.writerow([f"sensitivity ({metric})", item["name"], _cell(item.get("base_value")),
                    _cell(item.get(f"{metric}_low")), _cell(item.get(f"{metric}_high"))])
    return out.getvalue().encode("utf-8")


def _cell(x: Any) -> str:
    return "" if x is None else (repr(x) if isinstance(x, float) else str(x))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Any, width: int) -> list[str]:
    """Greedy word wrap to a pixel width."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in para.split():
            trial = f"{line} {word}".strip()
            if draw.textlength(trial, font=font) <= width or not line:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def summary_png(name: str, experiment: str, roi: dict, verdict: dict | None, *, primary: dict | None = None,
                alpha: float = 0.05, whatif_changes: list[str] | None = None, now: datetime | None = None) -> bytes:
    """The one-page meeting summary: verdict, key figures with 95% intervals, and the ROI distribution."""
    now = now or datetime.now(UTC)
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    # Title and date.
    d.text((MARGIN, 40), textwrap.shorten(f"{name}: does it pay?", 70), font=_font(44, True), fill=INK)
    sub = f"experiment {experiment} · {now.strftime('%Y-%m-%d %H:%M UTC')}"
    if whatif_changes:
        sub += f" · what-if: {len(whatif_changes)} assumption(s) changed, not saved"
    d.text((MARGIN, 98), sub, font=_font(22), fill=GREY)
    # Verdict band.
    decision = (verdict or {}).get("decision")
    d.rounded_rectangle((MARGIN, 140, W - MARGIN, 262), radius=14, fill=COLORS.get(decision, COLORS[None]))
    d.text((MARGIN + 24, 152), fmt.decision(decision).upper(), font=_font(30, True), fill="white")
    lines = _wrap(d, (verdict or {}).get("headline", "No verdict yet."), _font(24), W - 2 * MARGIN - 48)
    for i, line in enumerate(lines[:2]):
        d.text((MARGIN + 24, 194 + 30 * i), line, font=_font(24), fill="white")
    # Key figures (left).
    y = 300
    d.text((MARGIN, y), "Key figures", font=_font(24, True), fill=INK)
    d.text((MARGIN + 160, y + 4), "with 95% intervals over the measured effect", font=_font(18), fill=GREY)
    y += 48
    rows = [(f.label, f.value, f.interval) for f in figures.roi_figures(roi)]
    if primary:
        rows.insert(0, (f"{fmt.metric_label(primary['metric'])} (lift)", fmt.pct(primary.get("lift_rel")),
                        fmt.interval(primary.get("ci_rel"))))
    for label, value, ci in rows:
        d.text((MARGIN, y), label, font=_font(22), fill=GREY)
        d.text((MARGIN + 330, y - 4), value, font=_font(28, True), fill=INK)
        if ci:
            d.text((MARGIN + 330, y + 30), ci, font=_font(18), fill=GREY)
        y += 78
        d.line((MARGIN, y - 14, 780, y - 14), fill=LIGHT, width=2)
    # ROI distribution (right).
    _histogram(d, figures.histogram_rows(roi), (840, 300, W - MARGIN, 700),
               "ROI distribution (%)" if (roi.get("roi_histogram") or {}).get("of") == "roi_pct" else "NPV distribution ($)")
    # Assumptions and sensitivity (bottom right).
    top = figures.tornado_rows(roi, top=3)
    y = 730
    d.text((840, y), "Biggest sensitivities (one at a time)", font=_font(22, True), fill=INK)
    unit = fmt.roi_pct if (roi.get("sensitivity") or {}).get("metric", "roi_pct") == "roi_pct" else fmt.money_short
    for r in top:
        y += 34
        d.text((840, y), f"{r['label']}: {unit(r['at_low'])} to {unit(r['at_high'])}", font=_font(19), fill=INK)
    a = roi.get("assumptions") or {}
    foot = (f"Assumptions: {fmt.count(a.get('monthly_visitors'))} visitors/month, inquiry-to-order "
            f"{fmt.pct(a.get('inquiry_to_order'), 0, signed=False)}, margin {fmt.money(a.get('margin_per_order'))}/order, "
            f"horizon {a.get('horizon_months')} months, discount {fmt.pct(a.get('annual_discount_rate'), 0, signed=False)}"
            " a year. Only the effect is uncertain in the simulation.")
    for i, line in enumerate(_wrap(d, foot, _font(18), W - 2 * MARGIN)[:2]):
        d.text((MARGIN, H - 78 + 24 * i), line, font=_font(18), fill=GREY)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def _histogram(d: ImageDraw.ImageDraw, rows: list[dict], box: tuple[int, int, int, int], title: str) -> None:
    x0, y0, x1, y1 = box
    d.text((x0, y0), title, font=_font(22, True), fill=INK)
    top, bottom = y0 + 44, y1 - 40
    if not rows:
        d.text((x0, top), "no distribution", font=_font(20), fill=GREY)
        return
    lo, hi = rows[0]["start"], rows[-1]["end"]
    span = (hi - lo) or 1.0
    peak = max(r["count"] for r in rows) or 1

    def sx(v: float) -> float:
        return x0 + (v - lo) / span * (x1 - x0)

    for r in rows:
        h = (bottom - top) * r["count"] / peak
        d.rectangle((sx(r["start"]) + 1, bottom - h, max(sx(r["end"]) - 1, sx(r["start"]) + 1), bottom),
                    fill=WIN if r["positive"] else LOSS)
    d.line((x0, bottom, x1, bottom), fill=INK, width=2)
    if lo < 0 < hi:
        d.line((sx(0), top - 6, sx(0), bottom + 6), fill=INK, width=2)
        d.text((sx(0) + 4, top - 8), "0", font=_font(18), fill=INK)
    d.text((x0, bottom + 8), f"{lo:,.0f}", font=_font(18), fill=GREY)
    label = f"{hi:,.0f}"
    d.text((x1 - d.textlength(label, font=_font(18)), bottom + 8), label, font=_font(18), fill=GREY)

"""Exports of the ROI view: a CSV of every figure, and a one-page PNG summary for a meeting (PIL).

matplotlib is not a dependency: the PNG is drawn with PIL (text, a key-figure table and a small
bar chart of the NPV distribution), 1600 x 1000 px, legible on a projector and in a slide deck.
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

from armor_ab.dashboards.lib import figures, fmt

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
    """Every ROI figure as CSV rows: section, name, value, 95% interval low/high (or a range's low/high)."""
    out = io.StringIO()
    w = csv.writer(out)
    w.writerow(["section", "name", "value", "ci_low", "ci_high"])
    w.writerow(["experiment", "key", experiment, "", ""])
    w.writerow(["experiment", "assumptions", "what-if (not saved)" if whatif else "experiment's", "", ""])
    if verdict:
        w.writerow(["verdict", "decision", verdict.get("decision", ""), "", ""])
        w.writerow(["verdict", "headline", verdict.get("headline", ""), "", ""])
    for name in ("npv", "incremental_profit_per_month", "incremental_inquiries_per_month"):
        block = roi.get(name) or {}
        ci = block.get("ci") or [None, None]
        w.writerow(["figure", name, _cell(block.get("expected")), _cell(ci[0]), _cell(ci[1])])
    for name in ("prob_npv_positive", "expected_loss", "max_expected_loss", "break_even_lift_abs",
                 "break_even_lift_rel", "horizon_months"):
        w.writerow(["figure", name, _cell(roi.get(name)), "", ""])
    pay = roi.get("payback") or {}
    w.writerow(["figure", "payback_median_months", _cell(pay.get("median_months")), "", ""])
    w.writerow(["figure", "payback_prob_within_horizon", _cell(pay.get("prob_within_horizon")), "", ""])
    w.writerow(["figure", "payback_text", pay.get("text", ""), "", ""])
    r = roi.get("roi_pct") or {}
    if r.get("shown"):
        ci = r.get("ci") or [None, None]
        w.writerow(["figure", "roi_pct", _cell(r.get("expected")), _cell(ci[0]), _cell(ci[1])])
    else:
        w.writerow(["figure", "roi_pct", f"not shown: {r.get('reason', '')}", "", ""])
    c = roi.get("costs") or {}
    for kind in ("one_off", "monthly"):
        for name, value in (c.get(kind) or {}).items():
            w.writerow([f"cost ({kind.replace('_', '-')})", name, _cell(value), "", ""])
    for name in ("one_off_total", "monthly_total", "pv_costs"):
        w.writerow(["cost", name, _cell(c.get(name)), "", ""])
    for name, value in (roi.get("effect") or {}).items():
        if isinstance(value, dict):
            for k, v in value.items():
                w.writerow(["effect", f"{name}.{k}", _cell(v), "", ""])
        elif isinstance(value, list):
            w.writerow(["effect", name, "", _cell(value[0]), _cell(value[1])])
        else:
            w.writerow(["effect", name, _cell(value), "", ""])
    for name, value in (roi.get("assumptions") or {}).items():
        if isinstance(value, dict):
            w.writerow(["assumption", name, _cell(value.get("likely")), _cell(value.get("low")),
                        _cell(value.get("high"))])
        else:
            w.writerow(["assumption", name, _cell(value), "", ""])
    for item in (roi.get("sensitivity") or {}).get("items") or []:
        w.writerow(["sensitivity (npv)", item["name"], _cell(item.get("base_value")), _cell(item.get("npv_low")),
                    _cell(item.get("npv_high"))])
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
    """The one-page meeting summary: verdict, key figures with 95% intervals, and the NPV distribution."""
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
    d.text((MARGIN + 160, y + 4), "95% intervals over the shrunk effect and the ranged assumptions", font=_font(18), fill=GREY)
    y += 48
    rows = [(f.label, f.value, f.caption) for f in figures.roi_figures(roi)]
    if primary:
        rows.insert(0, (f"{fmt.metric_label(primary['metric'])} (lift)", fmt.pct(primary.get("lift_rel")),
                        fmt.interval(primary.get("ci_rel"))))
    for label, value, ci in rows[:8]:
        d.text((MARGIN, y), label, font=_font(20), fill=GREY)
        d.text((MARGIN + 300, y - 4), textwrap.shorten(value, 32), font=_font(26 if len(value) <= 20 else 21, True),
               fill=INK)
        if ci:
            d.text((MARGIN + 300, y + 26), textwrap.shorten(ci, 48), font=_font(16), fill=GREY)
        y += 66
        d.line((MARGIN, y - 12, 780, y - 12), fill=LIGHT, width=2)
    # NPV distribution (right).
    _histogram(d, figures.histogram_rows(roi), (840, 300, W - MARGIN, 700), "NPV distribution ($)")
    # Assumptions and sensitivity (bottom right).
    top = figures.tornado_rows(roi, top=3)
    y = 730
    d.text((840, y), "Biggest sensitivities (one at a time)", font=_font(22, True), fill=INK)
    for r in top:
        y += 34
        d.text((840, y), f"NPV {fmt.money_short(r['at_low'])} to {fmt.money_short(r['at_high'])}: {r['label']}",
               font=_font(19), fill=INK)
    note = figures.roi_pct_note(roi)
    foot = figures.assumptions_text(roi) + (f" {note}" if note else "")
    for i, line in enumerate(_wrap(d, foot, _font(17), W - 2 * MARGIN)[:3]):
        d.text((MARGIN, H - 88 + 22 * i), line, font=_font(17), fill=GREY)
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
    d.text((x0, bottom + 8), fmt.money_short(lo), font=_font(18), fill=GREY)
    label = fmt.money_short(hi)
    d.text((x1 - d.textlength(label, font=_font(18)), bottom + 8), label, font=_font(18), fill=GREY)

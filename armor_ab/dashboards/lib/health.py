"""An experiment's live health (``GET /v1/experiments/{key}/health``, ``ExperimentHealthPublic``) in words:
pure functions, no Streamlit here. The API decides the status and the problems; this only writes them
for people (``readable``: thousands separators, timestamps as the dashboards write them)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from armor_ab.dashboards.lib import fmt
from armor_ab.dashboards.lib.figures import as_json

STATUS_COLORS = {"ok": "green", "warn": "orange", "critical": "red"}
PAGE_STATUSES = ("pending", "approved", "rejected", "stale")

_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:\d\d)?")
_BARE_INT = re.compile(r"(?<![\w.,:/+-])(\d{4,})(?![\w,:/-]|\.\d)")


def readable(text: str) -> str:
    """An API message for people: ISO timestamps as "2026-11-14 14:58 UTC", whole numbers of 1,000 and
    more with separators ("9164 events" -> "9,164 events"); figures already written stay as they are."""
    text = _ISO.sub(lambda m: fmt.timestamp(m.group(0).replace("Z", "+00:00")), text)
    return _BARE_INT.sub(lambda m: f"{int(m.group(1)):,}", text)


@dataclass(frozen=True)
class HealthBox:
    """What the health box shows: ``level`` is the Streamlit alert (error, warning, success); ``text`` is
    markdown (escaped), ``problems`` plain text."""

    level: str
    text: str
    problems: tuple[str, ...]


def status_label(health: Any) -> str:
    """``ok``, ``warn``, ``critical``, with ``paused`` when it is: the Experiments table's Health column."""
    h = as_json(health)
    return f"{h.get('status')} · paused" if h.get("paused") else str(h.get("status"))


def problem_lines(health: Any) -> list[str]:
    """One line per problem, worst first (critical ones say so, then warnings); the pause is left out (the box
    and ``pause_text`` say it)."""
    h = as_json(health)
    order = {"critical": 0, "warn": 1}
    problems = sorted(h.get("problems") or [], key=lambda p: (p.get("code") == "paused", order.get(p.get("severity"), 2)))
    return [("critical: " if p.get("severity") == "critical" else "") + readable(str(p.get("message", "")))
            for p in problems if p.get("code") != "paused"]


def pause_text(health: Any) -> str | None:
    """"Paused since …: cause" or None when it is not paused."""
    h = as_json(health)
    if not h.get("paused"):
        return None
    return (f"paused since {fmt.timestamp(h.get('paused_at'))}: its ARMOR arms serve control's copy until someone "
            f"resumes it (cause: {readable(str(h.get('pause_cause') or 'not given'))})")


def box(health: Any, *, name: str | None = None) -> HealthBox:
    """The health box of one experiment: an error when it is critical or paused, a warning when it warns,
    else a success. ``name`` (the experiment's key) leads the text, for lists of experiments."""
    h = as_json(health)
    status = h.get("status")
    problems = tuple(problem_lines(h))
    paused = pause_text(h)
    n = len(problems)
    parts = [f"health: {status}" + (f", {n} problem{'' if n == 1 else 's'}" if n else ", no problems" if status == "ok"
                                    else "")]
    if paused:
        parts.append(paused)
    text = fmt.md_escape("; ".join(parts))  # the pause cause is anyone's text
    text = f"`{name}`: {text}" if name else text[0].upper() + text[1:]
    level = "error" if status == "critical" or paused else "warning" if status == "warn" else "success"
    return HealthBox(level, text, problems)


def markdown(b: HealthBox) -> str:
    """The box's text with its problems as a list (escaped: API text)."""
    head = b.text
    if not b.problems:
        return head + "."
    return head + ":\n" + "\n".join(f"- {fmt.md_escape(p)}" for p in b.problems)


def page_counts(health: Any) -> dict[str, int]:
    """Pages per review status, and ``Blocked``: pages whose verdict is fail (never served, never approved)."""
    content = as_json(health).get("content") or {}
    by_status = content.get("by_status") or {}
    counts = {s.capitalize(): int(by_status.get(s, 0)) for s in PAGE_STATUSES}
    counts["Blocked"] = int((content.get("by_verdict") or {}).get("fail", 0))
    return counts


def overview_columns(health: Any | None, problem: str | None = None) -> dict[str, Any]:
    """The Experiments table's health columns of one experiment (``health`` None: not available, why in
    ``problem``)."""
    if health is None:
        return {"Health": fmt.DASH, **{s.capitalize(): None for s in PAGE_STATUSES}, "Blocked": None,
                "Problems": problem or ""}
    h = as_json(health)
    lines = problem_lines(h)
    if pause := pause_text(h):
        lines.append(pause)
    return {"Health": status_label(h), **page_counts(h), "Problems": "; ".join(lines)}


def with_health(row: dict[str, Any], health: Any | None, problem: str | None = None) -> dict[str, Any]:
    """An Experiments-table row (``figures.overview_row``) with the health columns: Health after Status, the
    page counts after Total visitors, Problems last."""
    cols = overview_columns(health, problem)
    out: dict[str, Any] = {}
    for k, v in row.items():
        out[k] = v
        if k == "Status":
            out["Health"] = cols["Health"]
        elif k == "Total visitors":
            out.update({c: cols[c] for c in (*(s.capitalize() for s in PAGE_STATUSES), "Blocked")})
    for k, v in cols.items():
        out.setdefault(k, v)
    return out


def paused_text(state: Any) -> str:
    """The answer of ``POST …/pause`` (``PauseStatePublic``) in words."""
    s = as_json(state)
    cause = fmt.md_escape(str(s.get("pause_cause") or ""))
    if not s.get("changed"):
        return f"`{s.get('key')}` was already paused (cause: {cause}); nothing changed."
    return (f"Paused `{s.get('key')}` at {fmt.timestamp(s.get('paused_at'))}: its ARMOR arms serve control's copy "
            f"until someone resumes it (cause: {cause}).")


def resumed_text(state: Any) -> str:
    """The answer of ``POST …/resume`` (``PauseStatePublic``) in words."""
    s = as_json(state)
    if not s.get("changed"):
        return f"`{s.get('key')}` was not paused; nothing changed."
    return f"Resumed `{s.get('key')}`: its ARMOR arms serve their approved generated pages again."

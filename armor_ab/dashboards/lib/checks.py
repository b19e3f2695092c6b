"""A generated page's guardrail checks as a reviewer reads them: pure functions over the rows of
``GET /v1/experiments/{key}/content/review`` (``StoredContentPublic`` JSON), no Streamlit here.

* ``highlighted_segments``: the page's segments with the evidence spans of its checks marked
  (``:red-background[…]`` for a failing check, orange for a warning), the rest escaped: offsets are
  into the page's text, its text segments joined with "" (``armor_ab.guardrails.page.Page.text``).
* ``picture_notes``: picture evidence by picture (1-based, as the checks name them).
* ``check_lines``: one markdown line per check: status, what its failure does, reason, evidence.
* ``row_matches`` and ``filter_options``: the Content page's filters (status, verdict, failing check).
* ``bulk_message``: what "Approve all that pass" did, in words.

Every text of the API (reasons, evidence, generated copy) goes through ``fmt.md_escape``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from armor_ab.dashboards.lib import fmt

VERDICT_COLORS = {"pass": "green", "warn": "orange", "fail": "red", None: "gray"}
_SEVERITY = {"orange": 1, "red": 2}
STATUSES = ("pending", "approved", "rejected", "stale")
GUARDRAILS_REVIEWER = "guardrails"  # reviewed_by of a page the guardrails approved (auto_approve)

ANY = "any"
VERDICT_FILTERS = {ANY: "any verdict", "verdict:fail": "blocked (verdict fail)", "verdict:warn": "warn",
                   "verdict:pass": "pass", "verdict:none": "not checked"}


def effect_color(result: dict) -> str | None:
    """The colour of a check that did not pass: red when its failure blocks the page, orange when it only
    warns (a ``warn`` status, or a ``fail`` of a check whose action is ``warn``); None when it passed."""
    status = result.get("status")
    if status == "pass":
        return None
    return "red" if status == "fail" and result.get("action", "block") == "block" else "orange"


def verdict_label(verdict: str | None) -> str:
    """The badge of a page's verdict."""
    if verdict == "fail":
        return "checks: fail (blocked)"
    return f"checks: {verdict}" if verdict else "checks: not run"


def results(row: dict) -> list[dict]:
    """The check results of a stored page (none when it was never checked)."""
    return list(((row.get("checks") or {}).get("results")) or [])


# ---- evidence in the text ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Span:
    start: int
    end: int
    color: str  # a Streamlit colour: red (a failing check), orange (a warning)


def text_spans(check_results: Iterable[dict]) -> list[Span]:
    """The text evidence (``start``/``end``) of every check that did not pass, coloured by what its failure
    does (``effect_color``)."""
    spans = []
    for r in check_results:
        color = effect_color(r)
        if color is None:
            continue
        for e in r.get("evidence") or ():
            start, end = e.get("start"), e.get("end")
            if isinstance(start, int) and isinstance(end, int) and end > start:
                spans.append(Span(start, end, color))
    return spans


def _colors(length: int, spans: Sequence[Span], offset: int = 0) -> list[str | None]:
    """The highlight colour of each character of a text that starts at ``offset`` (worst wins)."""
    out: list[str | None] = [None] * length
    for s in spans:
        for i in range(max(s.start - offset, 0), min(s.end - offset, length)):
            if out[i] is None or _SEVERITY[s.color] > _SEVERITY[out[i]]:  # type: ignore[index]
                out[i] = s.color
    return out


def highlight(text: str, spans: Sequence[Span], offset: int = 0) -> str:
    """``text`` (which starts at ``offset`` of the page's text) as markdown, the spans inside it wrapped in
    ``:red-background[…]`` / ``:orange-background[…]`` and everything escaped. A span that crosses a line
    break is wrapped line by line (a directive cannot span lines)."""
    colors = _colors(len(text), spans, offset)
    out: list[str] = []
    i = 0
    while i < len(text):
        color = colors[i]
        j = i
        while j < len(text) and colors[j] == color:
            j += 1
        piece = text[i:j]
        if color is None:
            out.append(fmt.md_escape(piece))
        else:
            if out and out[-1].endswith(":"):  # "::red-background[" is no directive: escape the colon before it
                out[-1] = out[-1][:-1] + "\\:"
            lines = piece.split("\n")
            out.append("\n".join(f":{color}-background[{fmt.md_escape(line)}]" if line.strip() else line
                                 for line in lines))
        i = j
    return "".join(out)


def highlighted_segments(segments: Sequence[dict], check_results: Iterable[dict]) -> list[dict[str, Any]]:
    """The page in order: ``{"type": "text", "markdown"}`` with the evidence spans marked, and
    ``{"type": "image", "number": n (1-based), "segment"}``."""
    spans = text_spans(check_results)
    out: list[dict[str, Any]] = []
    offset = 0
    number = 0
    for seg in segments:
        if seg.get("type") == "text":
            text = seg.get("text", "")
            out.append({"type": "text", "markdown": highlight(text, spans, offset)})
            offset += len(text)
        elif seg.get("type") == "image":
            number += 1
            out.append({"type": "image", "number": number, "segment": seg})
    return out


def unplaced_spans(segments: Sequence[dict], check_results: Iterable[dict]) -> list[str]:
    """Text evidence whose offsets fall outside the page's text (checked against another version of it)."""
    length = sum(len(s.get("text", "")) for s in segments if s.get("type") == "text")
    out = []
    for r in check_results:
        for e in r.get("evidence") or ():
            end = e.get("end")
            if isinstance(end, int) and end > length:
                out.append(f"{r.get('check')}: {e.get('text', '')}")
    return out


def picture_notes(check_results: Iterable[dict]) -> dict[int, list[str]]:
    """Picture number (1-based) -> markdown notes of the checks that did not pass on it."""
    notes: dict[int, list[str]] = {}
    for r in check_results:
        color = effect_color(r)
        if color is None:
            continue
        for e in r.get("evidence") or ():
            index = e.get("image")
            if not isinstance(index, int):
                continue
            score = f" (score {fmt.number(e['score'], 2)})" if isinstance(e.get("score"), (int, float)) else ""
            notes.setdefault(index + 1, []).append(
                f":{color}-background[Picture {index + 1}] **{fmt.md_escape(str(r.get('check')))}** "
                f"({r.get('status')}): {fmt.md_escape(str(e.get('text', '')))}{fmt.md_escape(score)}")
    return notes


# ---- the check list ----------------------------------------------------------------------------------


def action_words(result: dict) -> str:
    """What the check's failure does, by the policy's action."""
    return "blocks the page" if result.get("action", "block") == "block" else "warns only"


def evidence_text(e: dict) -> str:
    """One piece of evidence in words (escaped)."""
    where = []
    if isinstance(e.get("image"), int):
        where.append(f"picture {e['image'] + 1}")
    if isinstance(e.get("start"), int) and isinstance(e.get("end"), int):
        where.append(f"characters {fmt.count(e['start'])} to {fmt.count(e['end'])}")
    if isinstance(e.get("score"), (int, float)):
        where.append(f"score {fmt.number(e['score'], 2)}")
    text = fmt.md_escape(str(e.get("text", "")))
    return f"“{text}”" + (f" ({fmt.md_escape(', '.join(where))})" if where else "")


def check_lines(check_results: Iterable[dict]) -> list[str]:
    """One markdown line per check: a status badge, the check, what its failure does, the reason and the
    evidence (failing checks first, as they matter most)."""
    order = {"fail": 0, "warn": 1, "pass": 2}
    out = []
    for r in sorted(check_results, key=lambda r: order.get(r.get("status"), 3)):
        status = r.get("status", "?")
        line = (f":{effect_color(r) or 'green'}-badge[{status}] **{fmt.md_escape(str(r.get('check')))}** · "
                f"{action_words(r)} · {fmt.md_escape(str(r.get('reason', '')))}")
        evidence = [evidence_text(e) for e in r.get("evidence") or ()]
        if evidence:
            line += "  \nEvidence: " + "; ".join(evidence)
        out.append(line)
    return out


def checked_caption(row: dict) -> str:
    """When and under what the checks ran."""
    checks = row.get("checks") or {}
    if not checks:
        return "The guardrails have not checked this page (`armor-ab content check` runs them)."
    made_by = checks.get("made_by") or {}
    by = ", ".join(f"{k} {v}" for k, v in made_by.items())
    policy = str(checks.get("policy_hash") or "")[:12]
    return fmt.md_escape(f"Checked {fmt.timestamp(checks.get('checked_at'))}" + (f" by {by}" if by else "")
                         + (f" · policy {policy}" if policy else ""))


def block_reason(row: dict) -> str | None:
    """Why a page cannot be approved (its verdict is fail), or None."""
    if row.get("verdict") != "fail":
        return None
    blocking = [r.get("check") for r in results(row) if r.get("status") == "fail" and r.get("action", "block") == "block"]
    names = ", ".join(str(b) for b in blocking) or "a blocking check"
    return f"Cannot be approved: it fails {names}, so it is never served. Regenerate it or change the policy."


def review_text(row: dict) -> str:
    """Who set the page's status, and when."""
    by, key, at = row.get("reviewed_by"), row.get("reviewed_key"), row.get("reviewed_at")
    when = f" · {fmt.timestamp(at)}" if at else ""
    if not by:
        return f"{row.get('status', '').capitalize() or 'Not'} · not reviewed yet{when}"
    if by == GUARDRAILS_REVIEWER:
        return f"{row.get('status', '').capitalize()} automatically by the guardrails (every check passed){when}"
    via = " from the command line" if key == "cli" else (f" (key {key})" if key and key != by else "")
    return f"{row.get('status', '').capitalize()} by {by}{via}{when}"


# ---- filters ------------------------------------------------------------------------------------------


def failing_names(rows: Iterable[dict]) -> list[str]:
    """Every check some page did not pass, sorted."""
    return sorted({name for r in rows for name in r.get("failing") or ()})


def filter_options(rows: Sequence[dict]) -> dict[str, str]:
    """The check filter's options (value -> label): any, each verdict, and ``failing:<check>`` per check
    that some page did not pass (with how many pages)."""
    options = dict(VERDICT_FILTERS)
    counts = Counter(name for r in rows for name in r.get("failing") or ())
    for name in failing_names(rows):
        options[f"failing:{name}"] = f"failing: {name} ({fmt.count(counts[name])})"
    return options


def row_matches(row: dict, status: str = "all", check: str = ANY) -> bool:
    """Whether a stored page passes the Content page's filters: ``status`` (a review status or ``all``) and
    ``check`` (``any``, ``verdict:<pass|warn|fail|none>`` or ``failing:<check>``)."""
    if status != "all" and row.get("status") != status:
        return False
    if check == ANY:
        return True
    kind, _, value = check.partition(":")
    if kind == "verdict":
        return (row.get("verdict") or "none") == value
    if kind == "failing":
        return value in (row.get("failing") or ())
    return True


# ---- counts and the bulk approve --------------------------------------------------------------------


def status_counts(rows: Iterable[dict]) -> dict[str, int]:
    """Pages per review status, and ``blocked``: pending or approved pages whose verdict is fail."""
    rows = list(rows)
    counts = {s: 0 for s in STATUSES}
    counts.update(Counter(r.get("status") for r in rows))
    counts["blocked"] = sum(r.get("verdict") == "fail" and r.get("status") in ("pending", "approved") for r in rows)
    return counts


def passing_to_approve(rows: Iterable[dict]) -> int:
    """Pages the bulk approve would newly approve: verdict pass, not approved yet."""
    return sum(r.get("verdict") == "pass" and r.get("status") != "approved" for r in rows)


def bulk_message(answer: dict, before: Sequence[dict]) -> str:
    """What ``{"status": "approved", "all": true, "verdict": "pass"}`` did (``answer``: ``{changed, status,
    skipped}``), read against the pages as they were (``before``): how many it approved, and how many
    pending pages it skipped because they do not pass (blocked, warn, not checked)."""
    changed = int(answer.get("changed") or 0)
    passing = [r for r in before if r.get("verdict") == "pass"]
    already = sum(r.get("status") == "approved" for r in passing)
    rejected = sum(r.get("status") == "rejected" for r in passing)
    left = Counter(r.get("verdict") or "none" for r in before if r.get("status") == "pending" and r.get("verdict") != "pass")
    skipped = max(int(answer.get("skipped") or 0), sum(left.values()))
    text = f"Approved {fmt.count(changed)} page{'' if changed == 1 else 's'} that pass every check"
    notes = []
    if already:
        notes.append(f"{fmt.count(already)} already approved")
    if rejected:  # a human's rejection stands: the bulk approve changes pending pages only
        notes.append(f"{fmt.count(rejected)} rejected by a reviewer, left rejected")
    if notes:
        text += f" ({', '.join(notes)})"
    text += f"; skipped {fmt.count(skipped)} pending page{'' if skipped == 1 else 's'} that do not pass"
    words = {"fail": "blocked (fail)", "warn": "warn", "none": "not checked"}
    parts = [f"{fmt.count(left[v])} {words[v]}" for v in ("fail", "warn", "none") if left.get(v)]
    if parts:
        text += f" ({', '.join(parts)})"
    return text + (": review those one by one." if skipped else ".")

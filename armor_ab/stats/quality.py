"""Data quality before statistics: every check a typed status, one line each on the Results page.

Each check is ``ok``, ``warn`` (reported, the verdict still stands) or ``fail`` (the verdict can't
say "ship"). What the checks cover:

* ``srm``: the sequential sample-ratio test over the configured variants (``armor_ab.stats.srm``);
  fail when its anytime-valid p-value is below ``analysis.srm_alpha``.
* ``unknown_variants``: visitors whose exposure names a variant the spec does not have. They are
  excluded from every metric and from the SRM test; warn when there are any.
* ``multiple_variants``: visitors exposed to more than one variant (GrowthBook's ``__multiple__``),
  excluded from every metric; warn above ``analysis.multi_exposure_warn_share``.
* ``bots``: visitors excluded as bots (a known bot User-Agent flagged when the request arrived, or
  more page views in a day than ``analysis.bots.max_views_per_day``); warn above 10%.
* ``paused``: visitors first exposed while the experiment was paused (its ARMOR arms served control's
  copy, so they saw no treatment), excluded from every metric in every arm; warn above 10%.
* ``page_changes``: items whose served page changed during the test in an ARMOR variant (more than
  one page digest, or the ARMOR page and a fallback: ``armor_ab.stats.pages``); warn when any, naming
  the first few items, the variants and the visitors of each version.
* ``fallbacks``: the share of ARMOR-arm visitors first served control's copy instead of the ARMOR
  page (they dilute its lift); warn above 5%.
* ``capping``: the per-visitor caps in force, for the record; always ok.
* ``min_runtime`` and ``min_sample``: ok once met, else ``warn``: the verdict stays "keep running".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # annotations only: the checks need no database
    from armor_ab.stats.pages import ChangedItem, PageVersion, ServedPages

BOT_WARN_SHARE = 0.10
PAUSED_WARN_SHARE = 0.10
FALLBACK_WARN_SHARE = 0.05
CHANGED_ITEMS_NAMED = 5  # items a page_changes message names (the report's data block lists more)
DIGEST_CHARS = 12  # a page digest's prefix in messages


class CheckStatus(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True)
class QualityCheck:
    name: str
    status: CheckStatus
    message: str
    value: float | int | None = None  # the count or share the check is about

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status.value, "message": self.message, "value": self.value}


def _share(part: int, whole: int) -> float:
    return part / whole if whole > 0 else 0.0


def _fmt_count(n: int) -> str:
    return f"{n:,}"


def _visitors(n: int) -> str:
    return f"{n:,} visitor{'' if n == 1 else 's'}"


def _cap_words(variable: str, value: float) -> str:
    """A per-visitor cap in the variable's own unit, for people."""
    if variable == "dwell":
        seconds = value / 1000.0
        return f"dwell {seconds / 60:,.1f} min" if seconds >= 120 else f"dwell {seconds:,.0f} s"
    if variable == "views":
        return f"{value:,.0f} page views"
    if variable == "inq":
        return f"{value:,.0f} inquir{'y' if value == 1 else 'ies'}"
    if variable == "inqv":
        return f"inquiry value ${value:,.0f}"
    return f"{variable} {value:,.4g}"


def _version_words(v: PageVersion) -> str:
    digest = v.page[:DIGEST_CHARS] if v.page else "no digest"
    what = f"page {digest}" if v.fallback is None else f"control's copy {digest} (fallback {v.fallback!r})"
    return f"{what}: {_visitors(v.visitors)}"


def _item_words(item: ChangedItem) -> str:
    more = f", and {item.omitted_pages} more version{'s' if item.omitted_pages != 1 else ''}" if item.omitted_pages else ""
    return f"{item.item_id!r} in {item.variant} (" + "; ".join(_version_words(v) for v in item.pages) + more + ")"


def _page_checks(pages: ServedPages | None) -> list[QualityCheck]:
    """``page_changes`` and ``fallbacks``: what the ARMOR variants' visitors were first served."""
    if pages is None or not pages.variants:
        return [QualityCheck("page_changes", CheckStatus.OK, "No ARMOR variant: no generated page to check.", 0),
                QualityCheck("fallbacks", CheckStatus.OK, "No ARMOR variant: no fallback to count.", 0)]
    total = sum(pages.visitors.values())
    if total == 0:
        words = "No exposure of an ARMOR variant records the page served"
        return [QualityCheck("page_changes", CheckStatus.OK, words + ": nothing to check.", 0),
                QualityCheck("fallbacks", CheckStatus.OK, words + ": no fallback to count.", 0)]
    checks = []
    k = pages.changed_items
    if k == 0:
        checks.append(QualityCheck(
            "page_changes", CheckStatus.OK,
            f"Every item kept one page per ARMOR variant throughout ({_visitors(total)} checked).", 0))
    else:
        named = pages.items[:CHANGED_ITEMS_NAMED]
        variants = sorted({i.variant for i in pages.items}) or list(pages.variants)
        rest = k - len(named)
        checks.append(QualityCheck(
            "page_changes", CheckStatus.WARN,
            f"The served page changed during the test for {k:,} item{'' if k == 1 else 's'} in "
            f"{', '.join(variants)}: " + ", ".join(_item_words(i) for i in named)
            + (f", and {rest:,} more" if rest > 0 else "")
            + ". Visitors before and after a change saw different treatments, so the lift mixes them: "
            "restart the test once the pages are final.", k))
    n_fb = sum(pages.fallback_visitors.values())
    share = _share(n_fb, total)
    status = CheckStatus.WARN if share > FALLBACK_WARN_SHARE else CheckStatus.OK
    why = ", ".join(f"{reason} {_fmt_count(n)}" for reason, n in pages.fallback_reasons.items())
    checks.append(QualityCheck(
        "fallbacks", status,
        f"{_visitors(n_fb)} of {_fmt_count(total)} in the ARMOR variants ({share:.2%}) first served control's copy"
        + (f" ({why})" if why else "")
        + (f"; above the {FALLBACK_WARN_SHARE:.0%} threshold: they dilute the ARMOR pages' lift." if status == "warn"
           else "."), n_fb))
    return checks


def quality_checks(
    *,
    srm: dict,
    included_visitors: int,
    unknown: dict[str, int],
    multi: int,
    bots: dict[str, int],
    caps: dict[str, float | None],
    multi_warn_share: float,
    days_elapsed: float,
    min_runtime_days: float,
    visitors_per_variant: dict[str, int],
    min_visitors_per_variant: int,
    paused: Mapping[str, int] | None = None,
    pages: ServedPages | None = None,
) -> list[QualityCheck]:
    """Every data-quality check of one report, in the order the Results page lists them.

    ``paused``: visitors excluded as first exposed while paused, per variant; ``pages``: the ARMOR
    variants' served pages (``armor_ab.stats.pages.load_served_pages``; None: not checked).
    """
    paused = dict(paused or {})
    checks: list[QualityCheck] = []
    p = srm.get("p_value")
    if srm.get("flag"):
        checks.append(QualityCheck(
            "srm", CheckStatus.FAIL,
            f"Sample ratio mismatch: the split between the configured variants differs from the plan "
            f"(always-valid p = {p:.2g} < {srm.get('threshold')}). Investigate assignment and tracking.", p))
    else:
        checks.append(QualityCheck("srm", CheckStatus.OK, "Traffic split matches the plan (sequential SRM test).", p))

    stray = sum(unknown.values())
    n_paused = sum(paused.values())
    seen = included_visitors + stray + multi + sum(bots.values()) + n_paused
    if stray:
        names = ", ".join(f"{k!r} ({_fmt_count(v)})" for k, v in sorted(unknown.items()))
        checks.append(QualityCheck(
            "unknown_variants", CheckStatus.WARN,
            f"{_visitors(stray)} exposed to variants the experiment does not have: {names}. "
            "Excluded from every metric and from the SRM test.", stray))
    else:
        checks.append(QualityCheck("unknown_variants", CheckStatus.OK, "No exposures to unknown variants.", 0))

    share = _share(multi, seen)
    status = CheckStatus.WARN if share > multi_warn_share else CheckStatus.OK
    checks.append(QualityCheck(
        "multiple_variants", status,
        f"{_visitors(multi)} ({share:.2%}) exposed to more than one variant, excluded from every metric"
        + (f"; above the {multi_warn_share:.0%} threshold: check that assignment is sticky." if status == "warn" else "."),
        multi))

    n_bots = sum(bots.values())
    share = _share(n_bots, seen)
    how = ", ".join(f"{v:,} by {k.replace('_', ' ')}" for k, v in sorted(bots.items()) if v)
    checks.append(QualityCheck(
        "bots", CheckStatus.WARN if share > BOT_WARN_SHARE else CheckStatus.OK,
        f"{_visitors(n_bots)} ({share:.2%}) excluded as bots" + (f" ({how})." if how else "."), n_bots))

    share = _share(n_paused, seen)
    if n_paused:
        where = ", ".join(f"{k} {_fmt_count(v)}" for k, v in sorted(paused.items()) if v)
        status = CheckStatus.WARN if share > PAUSED_WARN_SHARE else CheckStatus.OK
        checks.append(QualityCheck(
            "paused", status,
            f"{_visitors(n_paused)} ({share:.2%}) first exposed while the experiment was paused (its ARMOR arms "
            f"served control's copy): excluded from every metric in every arm ({where})"
            + (f"; above the {PAUSED_WARN_SHARE:.0%} threshold: the test lost that much traffic." if status == "warn"
               else "."), n_paused))
    else:
        checks.append(QualityCheck("paused", CheckStatus.OK, "No visitor first exposed while the experiment was paused.", 0))
    checks.extend(_page_checks(pages))

    capped = ", ".join(_cap_words(k, v) for k, v in caps.items() if v is not None)
    checks.append(QualityCheck(
        "capping", CheckStatus.OK,
        f"Each visitor's totals capped at: {capped}." if capped else "No per-visitor capping.", None))

    if days_elapsed < min_runtime_days:
        checks.append(QualityCheck(
            "min_runtime", CheckStatus.WARN,
            f"Ran {days_elapsed:.1f} of the minimum {min_runtime_days:g} days: no verdict before then.", days_elapsed))
    else:
        checks.append(QualityCheck(
            "min_runtime", CheckStatus.OK, f"Minimum runtime of {min_runtime_days:g} days met.", days_elapsed))
    short = {k: n for k, n in visitors_per_variant.items() if n < min_visitors_per_variant}
    if short:
        names = ", ".join(f"{k} {_fmt_count(n)}" for k, n in sorted(short.items()))
        checks.append(QualityCheck(
            "min_sample", CheckStatus.WARN,
            f"Fewer than {_fmt_count(min_visitors_per_variant)} visitors in: {names}.", min(short.values())))
    else:
        checks.append(QualityCheck(
            "min_sample", CheckStatus.OK,
            f"Every variant has at least {_fmt_count(min_visitors_per_variant)} visitors.",
            min(visitors_per_variant.values()) if visitors_per_variant else 0))
    return checks

"""Which page each ARMOR-arm visitor was first served: one small query over the exposures (any dialect).

A visitor's first exposure carries, in its ``properties``, ``page`` (the SHA-256 digest of the page it
was first served: for an ARMOR arm the generated page, for control or a fallback the control copy's)
and ``fallback`` (why an ARMOR-arm visitor got control's copy: missing, unapproved, generating,
guardrail, paused ...). Two things threaten the comparison and are reported:

* **a page that changed during the test**: for an ARMOR variant, the visitors of one ``item_id``
  were first served more than one distinct ``page`` digest, or some got the ARMOR page and others a
  fallback. The visitors before and after the change saw different treatments, so the lift mixes
  them. Control's copy is not checked.
* **fallbacks**: the share of ARMOR-arm visitors first served control's copy (they dilute the lift).

The visitors read are those the analysis counts as far as the exposures tell (``armor_ab.stats.sql``):
each visitor's first exposure naming a variant in the window, in one of the ARMOR variants, not
exposed to another variant, not first exposed while paused, not flagged ``bot`` (when
``bot_user_agents``), and with ``exposures="server"`` vouched for by an exposure no client key posted
(a client could write any ``page``). The page-view rate limit is not applied (it needs the page
views). Exposures with neither ``page`` nor ``fallback`` (written before the server recorded them)
are left out of every count.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb

from armor_ab.stats.dialects import Dialect, Query, SqlRunner, run_query
from armor_ab.stats.dialects import dialect as get_dialect
from armor_ab.stats.sql import (
    _FAR_PAST,
    EXPOSURE_SOURCES,
    Relation,
    _epoch_us,
    as_runner,
    check_source,
    union_all,
)

MAX_CHANGED_ITEMS = 20  # items listed (by visitors); the count of all of them comes with the list
MAX_PAGES_PER_ITEM = 10  # page versions listed per item (by visitors)


@dataclass(frozen=True)
class PageVersion:
    """Visitors of one item and variant first served one page."""

    page: str | None  # the SHA-256 digest (None: a fallback whose digest was not recorded)
    fallback: str | None  # why control's copy was served instead of the ARMOR page; None: the ARMOR page
    visitors: int

    def to_dict(self) -> dict:
        return {"page": self.page, "fallback": self.fallback, "visitors": self.visitors}


@dataclass(frozen=True)
class ChangedItem:
    """An item whose served page changed during the test in one ARMOR variant."""

    item_id: str
    variant: str
    visitors: int  # its visitors in that variant (every version)
    pages: tuple[PageVersion, ...]  # the versions, most visitors first (at most MAX_PAGES_PER_ITEM)
    omitted_pages: int = 0  # further versions not listed

    def to_dict(self) -> dict:
        return {"item_id": self.item_id, "variant": self.variant, "visitors": self.visitors,
                "pages": [p.to_dict() for p in self.pages], "omitted_pages": self.omitted_pages}


@dataclass(frozen=True)
class ServedPages:
    """The query's answer: served pages and fallbacks of the ARMOR variants."""

    variants: tuple[str, ...]  # the ARMOR variants checked
    visitors: dict[str, int] = field(default_factory=dict)  # variant -> visitors whose exposure records the page
    fallback_visitors: dict[str, int] = field(default_factory=dict)  # variant -> of those, served control's copy
    fallback_reasons: dict[str, int] = field(default_factory=dict)  # reason -> visitors (every ARMOR variant)
    changed_items: int = 0  # (item, variant) pairs whose page changed, all of them
    items: tuple[ChangedItem, ...] = ()  # the first MAX_CHANGED_ITEMS of them, most visitors first

    def to_dict(self) -> dict:
        return {
            "variants": list(self.variants),
            "visitors": dict(self.visitors),
            "fallback_visitors": dict(self.fallback_visitors),
            "fallback_reasons": dict(self.fallback_reasons),
            "changed_items": self.changed_items,
            "items": [i.to_dict() for i in self.items],
        }


def build_pages_query(*, source: str | Relation = "events", bot_user_agents: bool = True, exposures: str = "any",
                      dialect: str | Dialect = "duckdb", max_items: int = MAX_CHANGED_ITEMS,
                      max_pages: int = MAX_PAGES_PER_ITEM) -> str:
    """The SQL text of the query in ``dialect`` (parameters: exp, start, end in epoch µs, armor: the ARMOR
    variants; ``max_items`` and ``max_pages`` are written into the text as integers)."""
    d = get_dialect(dialect)
    return d.bind(_pages_text(source=source, bot_user_agents=bot_user_agents, exposures=exposures, d=d,
                              max_items=max_items, max_pages=max_pages).text(d))[0]


def _pages_text(*, source: str | Relation, bot_user_agents: bool, exposures: str, d: Dialect, max_items: int,
                max_pages: int) -> Query:
    check_source(source, d)
    if exposures not in EXPOSURE_SOURCES:
        raise ValueError(f"exposures must be one of {EXPOSURE_SOURCES}, got {exposures!r}")
    if max_items < 0 or max_pages < 1:
        raise ValueError(f"max_items must be >= 0 and max_pages >= 1, got {max_items!r}, {max_pages!r}")
    server_only = exposures == "server"
    source_col = ", source" if server_only else ""
    named = "variant IS NOT NULL"
    first = d.struct([("variant", "variant", "string"), ("item_id", "item_id", "string"),
                      ("props", "properties", "string")])
    f_variant, f_item, f_props = d.field("fx", "variant", 1), d.field("fx", "item_id", 2), d.field("fx", "props", 3)
    keep = ["NOT multi", d.in_list(f_variant, "$armor"), f"NOT coalesce({d.json_true(f_props, 'paused')}, false)"]
    extra = ""
    if bot_user_agents:
        extra += f",\n        coalesce({d.agg('bool_or', d.json_true('properties', 'bot'))}, false) AS bot"
        keep.append("NOT bot")
    if server_only:
        vouches = "coalesce(source, '') <> 'client'"
        extra += f",\n        coalesce({d.agg('bool_or', vouches, named)}, false) AS vouched"
        keep.append("vouched")
    epoch = d.epoch_us("ts")
    changed_versions = (f"count(DISTINCT page) > 1 OR ({d.agg('bool_or', 'fallback IS NULL')} "
                        f"AND {d.agg('bool_or', 'fallback IS NOT NULL')})")
    columns = [("part", "string"), ("variant", "string"), ("item_id", "string"), ("page", "string"),
               ("fallback", "string"), ("visitors", "int"), ("item_visitors", "int"), ("versions", "int")]
    answer = union_all(d, columns, [
        ({"part": "'served'", "variant": "variant", "fallback": "fallback", "visitors": "sum(visitors)"},
         "FROM g GROUP BY variant, fallback"),
        ({"part": "'changed'", "visitors": "count(*)"}, "FROM changed"),
        ({"part": "'version'", **{c: c for c, _ in columns[1:]}}, f"""FROM (
    SELECT g.variant, g.item_id, g.page, g.fallback, g.visitors, l.visitors AS item_visitors, l.versions,
        row_number() OVER (PARTITION BY g.variant, g.item_id
                           ORDER BY g.visitors DESC, g.page NULLS LAST, g.fallback NULLS FIRST) AS rank_in_item
    FROM g JOIN listed l ON g.variant = l.variant AND g.item_id = l.item_id
) ranked WHERE rank_in_item <= {int(max_pages)}"""),
    ])
    q = Query()
    q.add("x", f'''    SELECT user_id,
        {d.arg_min(first, "tu", named)} AS fx,
        min(variant) <> max(variant) AS multi{extra}
    FROM (
        SELECT user_id, variant, item_id, properties, {epoch} AS tu{source_col}
        FROM {source} WHERE experiment = $exp AND type = 'exposure' AND {epoch} BETWEEN $start AND $end
    ) ex
    GROUP BY user_id
    HAVING count(variant) > 0''')
    q.add("v", f'''    SELECT {f_variant} AS variant, {f_item} AS item_id,
        nullif({d.json_string(f_props, "page")}, '') AS page,
        nullif({d.json_string(f_props, "fallback")}, '') AS fallback
    FROM x WHERE {" AND ".join(keep)}''')
    q.add("g", '''    SELECT variant, item_id, page, fallback, count(*) AS visitors
    FROM v WHERE page IS NOT NULL OR fallback IS NOT NULL
    GROUP BY variant, item_id, page, fallback''')
    q.add("changed", f'''    SELECT variant, item_id, sum(visitors) AS visitors, count(*) AS versions
    FROM g WHERE item_id IS NOT NULL
    GROUP BY variant, item_id
    HAVING {changed_versions}''')
    q.add("listed", f"    SELECT * FROM changed ORDER BY visitors DESC, item_id, variant LIMIT {int(max_items)}")
    q.select = answer
    return q


def load_served_pages(
    con: duckdb.DuckDBPyConnection | SqlRunner,
    experiment: str,
    armor_variants: Sequence[str],
    *,
    start: datetime | None,
    end: datetime,
    source: str | Relation | None = None,
    bot_user_agents: bool = True,
    exposures: str = "any",
    max_items: int = MAX_CHANGED_ITEMS,
    max_pages: int = MAX_PAGES_PER_ITEM,
) -> ServedPages:
    """Run the query for one experiment's ARMOR variants over the window [start, end] (rules: the docstring)."""
    if isinstance(armor_variants, str):
        raise ValueError("armor_variants must be a sequence of variant keys, not one string")
    if max_items < 0 or max_pages < 1:
        raise ValueError(f"max_items must be >= 0 and max_pages >= 1, got {max_items!r}, {max_pages!r}")
    variants = tuple(dict.fromkeys(str(v) for v in armor_variants))
    if not variants:
        return ServedPages(variants=())
    start_us, end_us = _epoch_us(start or _FAR_PAST), _epoch_us(end)
    runner = as_runner(con)
    d = get_dialect(runner.dialect)
    query = _pages_text(source=source or getattr(runner, "table", "events"), bot_user_agents=bot_user_agents,
                        exposures=exposures, d=d, max_items=max_items, max_pages=max_pages)
    values = {"exp": experiment, "start": start_us, "end": end_us, "armor": list(variants)}
    names, rows = run_query(runner, d, query, values)
    col = {name: i for i, name in enumerate(names)}
    visitors: dict[str, int] = {}
    fallback_visitors: dict[str, int] = {}
    reasons: dict[str, int] = {}
    changed = 0
    versions: dict[tuple[str, str], list[tuple]] = {}
    for row in rows:
        part, n = row[col["part"]], int(row[col["visitors"]])
        if part == "served":
            variant, fallback = row[col["variant"]], row[col["fallback"]]
            visitors[variant] = visitors.get(variant, 0) + n
            if fallback is not None:
                fallback_visitors[variant] = fallback_visitors.get(variant, 0) + n
                reasons[fallback] = reasons.get(fallback, 0) + n
        elif part == "changed":
            changed = n
        else:
            versions.setdefault((row[col["variant"]], row[col["item_id"]]), []).append(row)
    items = []
    for (variant, item_id), rows in versions.items():
        pages = sorted(
            (PageVersion(r[col["page"]], r[col["fallback"]], int(r[col["visitors"]])) for r in rows),
            key=lambda p: (-p.visitors, p.page is None, p.page or "", p.fallback is not None, p.fallback or ""),
        )
        first = rows[0]
        items.append(ChangedItem(item_id=item_id, variant=variant, visitors=int(first[col["item_visitors"]]),
                                 pages=tuple(pages), omitted_pages=int(first[col["versions"]]) - len(pages)))
    items.sort(key=lambda i: (-i.visitors, i.item_id, i.variant))
    return ServedPages(
        variants=variants,
        visitors={v: visitors.get(v, 0) for v in variants},
        fallback_visitors={v: fallback_visitors.get(v, 0) for v in variants},
        fallback_reasons=dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        changed_items=changed,
        items=tuple(items),
    )

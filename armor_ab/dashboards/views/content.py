"""Content: a catalog item as imported beside its variants as a visitor sees them, each generated page with
its guardrail verdict and check results (the evidence highlighted in the text and named by picture), who
reviewed it, approve / reject, and "Approve all that pass"."""

from __future__ import annotations

import streamlit as st

from armor_ab.dashboards.lib import checks, fmt, ui
from armor_ab.dashboards.lib.api import ApiError, ApiUnavailable

STATUS_COLORS = {"pending": "orange", "approved": "green", "rejected": "red", "stale": "gray"}
FILTERS = {"pending": "pending review", "all": "all generated", "approved": "approved", "rejected": "rejected",
           "stale": "stale (item changed)"}

ctx = ui.page()
exp_key = ctx.experiment_key
spec = ctx.spec
variants = spec.get("variants") or []
st.title(f"Content · {spec.get('name', exp_key)}")

with ui.guard():
    rows = ui.content_review(ctx.api, ctx.key, exp_key)

if msg := st.session_state.pop("content_msg", None):
    (st.success if msg[0] == "ok" else st.error)(msg[1])

counts = checks.status_counts(rows)
st.caption(" · ".join(f"{fmt.count(counts[s])} {s}" for s in checks.STATUSES)
           + f" generated pages; {fmt.count(counts['blocked'])} blocked by the guardrails (a blocking check "
             "failed: never served, cannot be approved). Approved pages are served at once; pending, rejected "
             "and blocked ones fall back to the catalog copy.")
if not rows:
    st.info(f"No generated content yet: `armor-ab content generate --experiment {exp_key}` writes it as pending.")
    st.stop()


def _approve_passing(before: list[dict]) -> None:
    try:
        answer = ctx.client.review(exp_key, "approved", all_items=True, verdict="pass")
    except (ApiUnavailable, ApiError) as exc:
        st.session_state["content_msg"] = ("error", ui.review_error_text(exc))
        return
    ui.clear_cache()
    st.session_state["content_msg"] = ("ok", checks.bulk_message(answer.model_dump(mode="json"), before))


if ctx.admin:
    to_approve = checks.passing_to_approve(rows)
    st.button(f"Approve all that pass ({fmt.count(to_approve)})", key="content_approve_passing",
              on_click=_approve_passing, args=(rows,), disabled=to_approve == 0,
              help="Approves every page whose checks all pass (POST …/content/review with verdict pass); pages "
                   "that warn, fail or were never checked are left for a person.")

c1, c2, c3 = st.columns([1, 1, 2])
shown = c1.selectbox("Show", list(FILTERS), key="content_filter", format_func=FILTERS.get)
options = checks.filter_options(rows)
if st.session_state.get("content_check") not in options:
    st.session_state["content_check"] = checks.ANY
check_filter = c2.selectbox("Checks", list(options), key="content_check", format_func=options.get)
items = sorted({r["item_id"] for r in rows if checks.row_matches(r, shown, check_filter)})
current = st.session_state.get("content_item")
same_filters = st.session_state.get("content_filters_seen") == (shown, check_filter)
st.session_state["content_filters_seen"] = (shown, check_filter)
if same_filters and current and current not in items and any(r["item_id"] == current for r in rows):
    items = sorted({*items, current})  # keep the item just reviewed in view (until the filters change)
if not items:
    st.info(f"No items with {FILTERS[shown]} content ({options[check_filter]}).")
    st.stop()
item = c3.selectbox("Catalog item", items, key="content_item")
stored = {r["variant"]: r for r in rows if r["item_id"] == item}


def _review(status: str, variant: str) -> None:
    try:
        ctx.client.review(exp_key, status, item_id=item, variant=variant)
    except (ApiUnavailable, ApiError) as exc:
        st.session_state["content_msg"] = ("error", ui.review_error_text(exc))
        return
    ui.clear_cache()
    st.session_state["content_msg"] = ("ok", f"{item} · {variant}: {status}.")


def _stored_page(row: dict) -> None:
    """The generated page as stored, its evidence highlighted, picture evidence beside each picture."""
    results = checks.results(row)
    notes = checks.picture_notes(results)
    segments = row["content"].get("segments") or []
    with st.container(border=True):
        for part in checks.highlighted_segments(segments, results):
            if part["type"] == "text":
                st.markdown(part["markdown"])
            else:
                ui.render_image(ctx, part["segment"])
                for note in notes.get(part["number"], ()):
                    st.markdown(note)
    for lost in checks.unplaced_spans(segments, results):
        st.caption(f"Evidence outside this page's text (checked against another version?): {fmt.md_escape(lost)}")


with ui.guard():
    catalog_col, *variant_cols = st.columns(len(variants) + 1)
    with catalog_col, st.container(border=True):
        ui.render_catalog_item(ctx, item)  # what the generated pages are about, and today's copy
    for col, v in zip(variant_cols, variants, strict=True):
        with col, st.container(border=True):
            source = (v.get("content") or {}).get("source", "catalog")
            st.subheader(v.get("name") or v["key"])
            st.caption(f"variant `{v['key']}` · {'ARMOR-generated text and images' if source == 'armor' else 'catalog copy'}")
            served = None
            if ctx.admin:
                served = ui.served_content(ctx.api, ctx.key, exp_key, item, v["key"])
                if served["source"] == "armor":
                    st.markdown("**Visitors see:** the generated page")
                else:
                    why = f" (fallback: {served['fallback']})" if served.get("fallback") else ""
                    st.markdown(f"**Visitors see:** the catalog copy{fmt.md_escape(why)}")
                    ui.render_content(ctx, served.get("content"))
            elif source == "catalog":
                st.caption("Previewing what a visitor sees needs an admin key.")
            row = stored.get(v["key"])
            if row is None:
                if source == "armor":
                    st.caption("No generated page for this item yet.")
                continue
            st.divider()
            ui.badge(f"generated page: {row['status']}", STATUS_COLORS.get(row["status"], "gray"))
            ui.badge(checks.verdict_label(row.get("verdict")), checks.VERDICT_COLORS.get(row.get("verdict"), "gray"))
            st.caption(f"{row['model']} · generated {fmt.timestamp(row['generated_at'])} · prompt: "
                       f"{fmt.md_escape(row['prompt'] or '')}")
            st.caption(fmt.md_escape(checks.review_text(row)))
            _stored_page(row)
            results = checks.results(row)
            if results:
                failing = row.get("failing") or []
                label = (f"Checks: {fmt.count(len(failing))} of {fmt.count(len(results))} did not pass" if failing
                         else f"Checks: all {fmt.count(len(results))} passed")
                with st.expander(label, expanded=bool(failing)):
                    for line in checks.check_lines(results):
                        st.markdown(line)
                    st.caption(checks.checked_caption(row))
            else:
                st.caption(checks.checked_caption(row))
            blocked = checks.block_reason(row)
            if blocked:
                st.error(blocked)
            if ctx.admin:
                b1, b2 = st.columns(2)
                b1.button("Approve", key=f"content_approve_{v['key']}", type="primary", on_click=_review,
                          args=("approved", v["key"]), disabled=row["status"] == "approved" or blocked is not None,
                          help=blocked)
                b2.button("Reject", key=f"content_reject_{v['key']}", on_click=_review,
                          args=("rejected", v["key"]), disabled=row["status"] == "rejected")
            else:
                st.caption("Approving or rejecting needs an admin key.")

"""Content: a catalog item as imported beside its variants as a visitor sees them, with approve / reject."""

from __future__ import annotations

from collections import Counter

import streamlit as st

from armor_ab.dashboards.lib import fmt, ui
from armor_ab.dashboards.lib.api import ApiError, ApiUnavailable

STATUS_COLORS = {"pending": "orange", "approved": "green", "rejected": "red"}
FILTERS = {"pending": "pending review", "all": "all generated", "approved": "approved", "rejected": "rejected"}

ctx = ui.page()
exp_key = ctx.experiment_key
spec = ctx.spec
variants = spec.get("variants") or []
st.title(f"Content · {spec.get('name', exp_key)}")

with ui.guard():
    rows = ui.content_review(ctx.api, ctx.key, exp_key)

if msg := st.session_state.pop("content_msg", None):
    (st.success if msg[0] == "ok" else st.error)(msg[1])

counts = Counter(r["status"] for r in rows)
st.caption(" · ".join(f"{fmt.count(counts.get(s, 0))} {s}" for s in ("pending", "approved", "rejected"))
           + " generated pages. Approved pages are served at once; pending and rejected ones fall back to "
             "the catalog copy.")
if not rows:
    st.info(f"No generated content yet: `armor-ab content generate --experiment {exp_key}` writes it as pending.")
    st.stop()

c1, c2 = st.columns([1, 2])
shown = c1.selectbox("Show", list(FILTERS), key="content_filter", format_func=FILTERS.get)
items = sorted({r["item_id"] for r in rows if shown == "all" or r["status"] == shown})
current = st.session_state.get("content_item")
if current and current not in items and any(r["item_id"] == current for r in rows):
    items = sorted({*items, current})  # keep the item just reviewed in view
if not items:
    st.info(f"No items with {FILTERS[shown]} content.")
    st.stop()
item = c2.selectbox("Catalog item", items, key="content_item")
stored = {r["variant"]: r for r in rows if r["item_id"] == item}


def _review(status: str, variant: str) -> None:
    try:
        ctx.client.review(exp_key, status, item_id=item, variant=variant)
    except (ApiUnavailable, ApiError) as exc:
        st.session_state["content_msg"] = ("error", ui.error_text(exc))
        return
    ui.clear_cache()
    st.session_state["content_msg"] = ("ok", f"{item} · {variant}: {status}.")


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
            st.caption(f"{row['model']} · generated {fmt.timestamp(row['generated_at'])} · prompt: "
                       f"{fmt.md_escape(row['prompt'])}")
            if served is None or served["source"] != "armor":
                with st.container(border=True):
                    ui.render_content(ctx, row["content"])
            if ctx.admin:
                b1, b2 = st.columns(2)
                b1.button("Approve", key=f"content_approve_{v['key']}", type="primary", on_click=_review,
                          args=("approved", v["key"]), disabled=row["status"] == "approved")
                b2.button("Reject", key=f"content_reject_{v['key']}", on_click=_review,
                          args=("rejected", v["key"]), disabled=row["status"] == "rejected")
            else:
                st.caption("Approving or rejecting needs an admin key.")

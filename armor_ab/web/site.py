"""The example catalog site's pages: plain server-rendered HTML, every value escaped.

The products are the database's catalog items (``armor-ab catalog import``), whoever's catalog it
is; their photos are the API's ``/v1/images/<sha256>``. Each product page carries the item's control
copy in its HTML (it works without JavaScript) and uses armor-ab.js the way a customer's site
would: load the script, ``init``, ``render`` the description block, ``track("inquiry")`` on the button.
"""

from __future__ import annotations

import json
from html import escape
from urllib.parse import quote, urlencode

from armor_ab.catalog.items import CatalogItem
from armor_ab.config import DEMO_CLIENT_KEY_ENV

SNIPPET_URL = "/v1/sdk/armor-ab.js"
CSS_URL = "/demo/static/demo.css"


def script_json(value: object) -> str:
    """JSON that is safe inside an inline <script> (no ``</script>``, no HTML comment openers)."""
    return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))


def _layout(title: str, body: str, scripts: str = "") -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>"
        f'<link rel="stylesheet" href="{CSS_URL}"></head>\n'
        '<body><header><a href="/demo/">Demo industrial catalog</a></header>\n'
        f"<main>{body}</main>\n{scripts}</body></html>\n"
    )


def _missing_key_notice() -> str:
    return (f'<p class="notice" id="no-key">No client key configured: set <code>{DEMO_CLIENT_KEY_ENV}</code> '
            "to a client-scope key (<code>armor-ab keys create --scope client</code>) to run the experiment. "
            "This page shows the catalog copy only.</p>")


def _snippet_tags(config: dict, page_js: str) -> str:
    return (f'<script src="{SNIPPET_URL}"></script>\n'
            f"<script>(function (c) {{\n  if (!window.ArmorAB) return; // no snippet: the page's own copy stays\n"
            '  var u = new URLSearchParams(location.search).get("user_id"); // demo: a site-provided visitor id\n'
            "  ArmorAB.init({api: c.api, clientKey: c.key, userId: u || undefined});\n"
            f"{page_js}}})({script_json(config)});</script>\n")


def _user_query(user_id: str | None) -> str:
    return "?" + urlencode({"user_id": user_id}) if user_id else ""


def photo_url(item: CatalogItem, api: str = "") -> str | None:
    """The item's photo on the API at ``api`` (empty: this server), or None when it has none."""
    return f"{api}/v1/images/{item.image}" if item.image else None


def _photo(item: CatalogItem, api: str, css: str, alt: str = "") -> str:
    url = photo_url(item, api)
    if url is None:  # no photo: an empty frame of the same size keeps the layout
        return f'<span class="{css} no-photo"></span>'
    return f'<img class="{css}" src="{escape(url)}" width="64" height="64" alt="{escape(alt)}">'


def product_list(items: list[CatalogItem], config: dict | None, user_id: str | None = None, api: str = "") -> str:
    """Every item, grouped by category (in catalog order); ``api``: where the photos are (empty: here)."""
    sections: dict[str, list[str]] = {}
    q = _user_query(user_id)
    for p in items:
        href = f"/demo/products/{quote(p.id, safe='')}{q}"
        sections.setdefault(p.category, []).append(
            f'<li><a href="{escape(href)}" data-item="{escape(p.id)}">'
            + _photo(p, api, "thumb")
            + f"<span>{escape(p.name)}</span><small>{escape(', '.join(p.specs.values()))}</small></a></li>"
        )
    body = "" if config else _missing_key_notice()
    body += f"<h1>Products</h1><p>{len(items)} products in {len(sections)} categories.</p>"
    for category, cards in sections.items():
        body += f"<h2>{escape(category)}</h2><ul class=\"grid\">{''.join(cards)}</ul>"
    # The list page renders no experiment; the snippet still flushes what earlier pages queued.
    return _layout("Products · Demo catalog", body, _snippet_tags(config, "") if config else "")


def product_page(p: CatalogItem, config: dict | None, api: str = "") -> str:
    """One item: photo, specs, its control copy (the block the snippet renders) and an inquiry button."""
    specs = "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in p.specs.items())
    paragraphs = "".join(f"<p>{escape(t.strip())}</p>" for t in p.description.split("\n\n") if t.strip())
    body = "" if config else _missing_key_notice()
    body += (
        f'<p class="crumbs"><a href="/demo/">Products</a> › {escape(p.category)}</p>'
        f"<h1>{escape(p.name)}</h1>"
        '<div class="product-top">'
        + _photo(p, api, "picture", f"Catalog picture of {p.name}") +
        f'<div><table class="specs">{specs}</table>'
        '<button type="button" class="inquire" id="inquire">Send an inquiry</button>'
        '<p id="inquiry-sent" hidden>Thank you: our sales team will get back to you.</p></div></div>'
        f'<section class="description" id="description" data-item="{escape(p.id)}">{paragraphs}</section>'
    )
    page_js = (
        '  ArmorAB.render(document.getElementById("description"), {experiment: c.experiment, item: c.item, alt: c.alt});\n'
        '  var b = document.getElementById("inquire");\n'
        '  b.addEventListener("click", function () {\n'
        '    ArmorAB.track("inquiry");\n'
        '    b.disabled = true;\n'
        '    document.getElementById("inquiry-sent").hidden = false;\n'
        "  });\n"
    )
    scripts = ""
    if config:
        scripts = _snippet_tags({**config, "item": p.id, "alt": f"Illustration of {p.name}"}, page_js)
    return _layout(f"{p.name} · Demo catalog", body, scripts)


def not_found(item_id: str) -> str:
    return _layout("Not found · Demo catalog",
                   f'<h1>Not found</h1><p>No product {escape(item_id)} in this catalog. '
                   '<a href="/demo/">All products</a></p>')

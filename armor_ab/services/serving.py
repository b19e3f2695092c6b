"""The content a visitor's variant shows: its approved page, or control's copy, with the reason; and the
images pages and catalog items name."""

from __future__ import annotations

from datetime import UTC, datetime
from json.encoder import encode_basestring as _encode_string
from pathlib import Path

from armor_ab.services.assignment import Resolved, log_resolved
from armor_ab.services.state import AppState
from armor_ab.store.catalog import EXTENSIONS, image_path
from armor_ab.store.content import BLOCKED

# Generated pictures are PNGs; catalog photos keep the type they were imported in. PNG first: the
# pictures of generated pages are most of what is asked for.
IMAGE_MEDIA_TYPES = tuple(EXTENSIONS)


def find_image(images_dir: Path, sha256: str) -> tuple[Path, str] | None:
    """The file of the image ``sha256`` (a checked hex digest) in the image store and its media type:
    whichever of ``<sha>.png``, ``.jpg``, ``.webp`` exists; None when none does."""
    for media_type in IMAGE_MEDIA_TYPES:
        path = image_path(images_dir, sha256, media_type)
        if path.is_file():
            return path, media_type
    return None


async def content_answer(state: AppState, resolved: Resolved, item_id: str) -> bytes:
    """``content_body``, after waiting (up to the timeout) for a missing page the variant generates on demand."""
    exp, variant = resolved.experiment, resolved.variant
    reason = None
    if variant is not None and exp.record.paused_at is None and (exp.record.key, variant, item_id) not in state.content:
        # Checked before awaiting: a control visitor or a stored page costs no coroutine here.
        spec = state.on_demand.wanted(state, exp.record.spec, variant, item_id)
        if spec is not None:
            reason = await state.on_demand.ensure(state, (exp.record.key, variant, item_id), spec,
                                                  exp.record.spec.content_checks)
    return content_body(state, resolved, item_id, reason)


def content_body(state: AppState, resolved: Resolved, item_id: str, missing_reason: str | None = None) -> bytes:
    """The ``GET …/content`` answer (``ContentPublic``) as JSON bytes, from pre-serialised pieces.

    The visitor's variant gets its approved page; a variant whose page is missing, not approved, or
    failing a blocking check (``guardrail``) falls back to control's copy (counted by reason in
    /metrics), and so does a visitor outside the experiment. ``content`` is null when the item is
    not in the catalog either: the page then keeps its own copy.

    The visitor's first exposure, when ``assign_visitor`` left it unlogged, is logged here with the
    digest of the page served (``page``, from the caches: nothing is hashed here) and the fallback.
    """
    exp, variant = resolved.experiment, resolved.variant
    source, fallback, body, page = "catalog", None, None, None
    spec_variant = exp.record.spec.variant(variant) if variant else None
    if spec_variant is not None and spec_variant.content.source == "armor":
        cache_key = (exp.record.key, variant, item_id)
        # A paused experiment's ARMOR arms serve control's copy until a human resumes them.
        body = None if exp.record.paused_at is not None else state.content.get(cache_key)
        if body is not None:
            source = "armor"
            page = state.content_digests.get(cache_key)
        elif exp.record.paused_at is not None:
            fallback = "paused"
        else:
            status = state.content_status.get(cache_key)
            if status is None:
                fallback = missing_reason or "missing"
            else:  # stored: failing a blocking check (never served), or not approved
                fallback = "guardrail" if status == BLOCKED else "unapproved"
        state.metrics.count_armor_content(exp.record.key, fallback)
    if body is None:
        body = state.control.get(item_id)
        if body is None:
            fallback = fallback or "unknown_item"
        else:
            page = state.control_digests.get(item_id)
    if resolved.unlogged:
        log_resolved(state, resolved, item_id, page, fallback)
    # Assembled by hand, each value through the C string encoder: a dict through json costs more
    # than the rest of this function on the page-view path.
    head = (f'{{"experiment":{_q(exp.record.key)},"variant":{_q(variant)},'
            f'"in_experiment":{"true" if resolved.in_experiment else "false"},"exposure_id":{_q(resolved.exposure_id)},'
            f'"item_id":{_q(item_id)},"source":"{source}","fallback":{_q(fallback)},'
            f'"server_time":"{datetime.now(UTC).isoformat(timespec="milliseconds")}","content":')
    return head.encode() + (body if body is not None else b"null") + b"}"


def _q(value: str | None) -> str:
    return "null" if value is None else _encode_string(value)

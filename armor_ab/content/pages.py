"""What content generation needs from whoever serves pages: a small protocol owned by content/.

On-demand generation (``on_demand.py``) runs inside a server, but content/ sits below the server
in the layers: it names what it needs here, and the server's live state
(``armor_ab.services.state.AppState``) implements it.
"""

from __future__ import annotations

from typing import Any, Protocol

PageKey = tuple[str, str, str]  # (experiment, variant, item_id)


class PageStore(Protocol):
    def has_page(self, key: PageKey) -> bool:
        """A page is stored for ``key`` in some review state (pending, approved, rejected)."""
        ...

    async def store_generated(self, key: PageKey, page: Any, prompt: str, *, checks: Any = None,
                              status: str = "approved", reviewed_by: str | None = None) -> None:
        """Store a page generated on demand with its checks (``PageChecks``) and the status
        ``guardrails.pipeline.review_status`` gave it, never over an existing one. A page whose
        verdict is ``fail`` is stored but never served."""
        ...

    def served_pictures(self, experiment: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """(item id, picture SHA-256s) of each page of ``experiment`` served now: a new on-demand
        picture must not be a near-duplicate of another item's (``image_sanity``)."""
        ...

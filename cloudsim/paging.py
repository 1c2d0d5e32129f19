"""Listings that span pages: the first page computes the whole result, the next ones resume it.

A continuation token (Graph's `$skiptoken`, ARM's `$skipToken`) names a listing in progress and
an offset into it, so a page costs its own size, not another scan of the tenant: at 150,000
applications a listing of 1,500 pages would otherwise scan the tenant 1,500 times. The services'
tokens are opaque too, and what a listing already under way shows of later writes is not
documented; a snapshot taken at the first page is one of the behaviours they allow.
"""

from __future__ import annotations

import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

LISTINGS_KEPT = 256  # listings in progress at once; the oldest is forgotten first


class Listings:
    def __init__(self, kept: int = LISTINGS_KEPT) -> None:
        self._kept = kept
        self._listings: OrderedDict[str, Sequence[Any]] = OrderedDict()

    def page(
        self, token: str, compute: Callable[[], Sequence[Any]], size: int
    ) -> tuple[list[Any], str | None]:
        """The page `token` continues (the first page when it names no listing in progress), and
        the token of the next page (None at the end)."""
        listing_id, _, offset_text = token.partition(".")
        items = self._listings.get(listing_id)
        if items is None or not offset_text.isdigit():
            listing_id, items, offset = uuid.uuid4().hex, compute(), 0
        else:
            offset = int(offset_text)
        end = offset + size
        if end >= len(items):
            self._listings.pop(listing_id, None)
            return list(items[offset:end]), None
        self._listings[listing_id] = items
        self._listings.move_to_end(listing_id)
        while len(self._listings) > self._kept:
            self._listings.popitem(last=False)
        return list(items[offset:end]), f"{listing_id}.{end}"

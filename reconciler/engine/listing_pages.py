"""How many pages each subscription's full listing of role assignments took, last time it was listed.

A full listing costs one request per page; filtered listings cost about one request per principal.
The engine (one per worker process) lists a subscription in full when a pass has many principals
there (the sweep's bulk pass), and remembers the page count, so that a later pass (a reconcile
message with a few dozen applications) can tell which costs fewer requests. Until a subscription
has been listed, a constant threshold decides.
"""

from __future__ import annotations

# Below this many principals the filtered listings are cheaper whatever a subscription holds (a
# full listing is at least one page, and usually many): the rule while its page count is unknown.
PRINCIPALS_PER_SUBSCRIPTION_LISTING = 4
# Subscriptions remembered; past it the one listed longest ago is forgotten (it falls back to
# the constant until listed again). Far more than a tenant's subscriptions; an entry is a few bytes.
REMEMBERED_SUBSCRIPTIONS = 4096


class ListingPages:
    """The page count of each subscription's last full listing, bounded to the most recent ones."""

    def __init__(self, capacity: int = REMEMBERED_SUBSCRIPTIONS) -> None:
        self._capacity = capacity
        self._pages: dict[str, int] = {}

    def learn(self, root: str, pages: int) -> None:
        self._pages.pop(root, None)  # re-inserted last: the most recent
        self._pages[root] = pages
        if len(self._pages) > self._capacity:
            del self._pages[next(iter(self._pages))]

    def of(self, root: str) -> int | None:
        return self._pages.get(root)

    def per_principal_is_cheaper(self, root: str, principals: int) -> bool:
        return per_principal_is_cheaper(principals, self.of(root))


def per_principal_is_cheaper(principals: int, listing_pages: int | None) -> bool:
    """Whether one filtered listing per principal costs fewer requests than listing everything.

    A principal's filtered listing is one page (a pipeline identity holds a handful of assignments),
    the full listing `listing_pages`; when that is unknown, the constant threshold decides.
    """
    if listing_pages is None:
        return principals < PRINCIPALS_PER_SUBSCRIPTION_LISTING
    return principals < listing_pages

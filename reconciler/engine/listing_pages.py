"""How many pages each subscription's full listing of role assignments took, last time it was listed.

A full listing costs one request per page; filtered listings cost about one request per principal.
The engine (one per worker process) lists a subscription in full when a pass has many principals
there (the sweep's bulk pass), and remembers the page count, so that a later pass (a reconcile
message with a few dozen applications) can tell which costs fewer requests. Until a subscription
has been listed, a constant threshold decides.

It also remembers, for a while, that ARM refused a subscription's listing (403: the reconciler's
role is on resource groups only, docs/deploy.md), so that the next passes go straight to the
resource groups instead of sending the refused request again.
"""

from __future__ import annotations

from reconciler.failures import Failure

# Below this many principals the filtered listings are cheaper whatever a subscription holds (a
# full listing is at least one page, and usually many): the rule while its page count is unknown.
PRINCIPALS_PER_SUBSCRIPTION_LISTING = 4
# Subscriptions remembered; past it the one listed longest ago is forgotten (it falls back to
# the constant until listed again). Far more than a tenant's subscriptions; an entry is a few bytes.
REMEMBERED_SUBSCRIPTIONS = 4096
# How long a refused subscription listing is not tried again: rights granted there later (a
# subscription-level grant needs them) are seen within this time.
REFUSAL_MEMORY_S = 600.0


class ListingPages:
    """The page count of each subscription's last full listing, bounded to the most recent ones."""

    def __init__(self, capacity: int = REMEMBERED_SUBSCRIPTIONS) -> None:
        self._capacity = capacity
        self._pages: dict[str, int] = {}
        self._refused: dict[str, tuple[Failure, float]] = {}

    def learn(self, root: str, pages: int) -> None:
        self._pages.pop(root, None)  # re-inserted last: the most recent
        self._pages[root] = pages
        if len(self._pages) > self._capacity:
            del self._pages[next(iter(self._pages))]

    def learn_refusal(self, root: str, failure: Failure, now: float) -> None:
        """Remember ARM's refusal; one still remembered keeps its time (it was not asked again)."""
        if self.refusal(root, now) is not None:
            return
        self._refused[root] = (failure, now)
        if len(self._refused) > self._capacity:
            del self._refused[next(iter(self._refused))]

    def refusal(self, root: str, now: float) -> Failure | None:
        """ARM's refusal of the subscription's listing, if it came less than REFUSAL_MEMORY_S ago."""
        remembered = self._refused.get(root)
        if remembered is None:
            return None
        failure, at = remembered
        if now - at >= REFUSAL_MEMORY_S:
            del self._refused[root]
            return None
        return failure

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

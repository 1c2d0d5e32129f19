"""Role assignments of a subscription: one full listing or one filtered listing per principal,
chosen by the pages the subscription's last full listing took on the same engine (issue 12)."""

from __future__ import annotations

import pytest

from cloudsim.state import RoleAssignment, new_id
from cloudsim.testing import SAMPLE_SUBSCRIPTION
from reconciler.core.model import FederationConfig
from reconciler.engine.listing_pages import REFUSAL_MEMORY_S, ListingPages, per_principal_is_cheaper
from reconciler.engine.run import Reconciler, connect
from reconciler.failures import Failure
from tests.core.builders import policy
from tests.engine.conftest import FAST, KEY_VAULT_READER, Tenant

PAGE_SIZE = 2
SUBSCRIPTION = f"/subscriptions/{SAMPLE_SUBSCRIPTION}"


async def configs(tenant: Tenant, count: int) -> list[FederationConfig]:
    """`count` configs adopting existing apps, every grant in the one sample subscription."""
    return [tenant.config(f"c{n}", (await tenant.app(f"sc-{n}"))["appId"]) for n in range(count)]


def fill_subscription(tenant: Tenant, pages: int) -> None:
    """Someone else's assignments, until listing the subscription takes `pages` pages (the sample
    world already holds the reconciler's own RBAC administrator assignment there)."""
    world = tenant.sim.world
    held = sum(1 for a in world.role_assignments if a.scope.lower().startswith(SUBSCRIPTION.lower()))
    for _ in range(pages * PAGE_SIZE - held):
        world.role_assignments.append(RoleAssignment(new_id(), SUBSCRIPTION, KEY_VAULT_READER, new_id()))


async def assignment_listings(tenant: Tenant, engine: Reconciler, batch: list[FederationConfig]) -> int:
    """The assignment listing requests one dry run of `batch` sent, at the simulator's counters."""
    await tenant.sim.admin.reset_counters()
    report = await engine.run(batch, dry_run=True)
    assert not report.plan.errors
    counters = await tenant.sim.admin.counters()
    listed: int = counters["arm"]["operations"]["roleAssignments.list"]["reads"]
    return listed


async def test_after_a_full_listing_fewer_principals_than_its_pages_are_read_one_by_one(
    tenant: Tenant,
) -> None:
    await tenant.sim.admin.update_settings(arm_page_size=PAGE_SIZE)
    fill_subscription(tenant, pages=10)
    batch = await configs(tenant, 12)
    async with connect(tenant.cloud, policy(), options=FAST) as engine:
        # Nothing known yet: 9 principals are past the threshold of 4, so the subscription is listed.
        assert await assignment_listings(tenant, engine, batch[:9]) == 10
        # The engine now knows the listing takes 10 pages: 9 principals cost 9 filtered listings.
        assert await assignment_listings(tenant, engine, batch[:9]) == 9
        # 11 principals would cost 11: the 10 pages are cheaper.
        assert await assignment_listings(tenant, engine, batch[:11]) == 10
        # The subscription grew to 20 pages; the listing above could not know it, the next one does.
        fill_subscription(tenant, pages=20)
        assert await assignment_listings(tenant, engine, batch[:11]) == 20
        assert await assignment_listings(tenant, engine, batch) == 12
    # A new engine (another worker) knows nothing and falls back to the threshold.
    async with connect(tenant.cloud, policy(), options=FAST) as engine:
        assert await assignment_listings(tenant, engine, batch[:3]) == 3
        assert await assignment_listings(tenant, engine, batch[:4]) == 20


@pytest.mark.parametrize(
    ("principals", "listing_pages", "per_principal"),
    [
        (3, None, True),  # unknown: under the threshold of 4
        (4, None, False),
        (25, 15, False),  # a reconcile message of 25 apps in a subscription of 15 pages
        (14, 15, True),
        (15, 15, False),  # a tie: the listing, which also refreshes the page count
        (2, 1, False),  # a small subscription: one page beats two filtered listings
    ],
)
def test_per_principal_listings_are_chosen_when_there_are_fewer_principals_than_pages(
    principals: int, listing_pages: int | None, per_principal: bool
) -> None:
    assert per_principal_is_cheaper(principals, listing_pages) is per_principal


def test_the_page_counts_are_bounded_and_the_oldest_forgotten() -> None:
    pages = ListingPages(capacity=2)
    pages.learn("/subscriptions/a", 10)
    pages.learn("/subscriptions/b", 20)
    pages.learn("/subscriptions/a", 11)  # listed again: now the most recent
    pages.learn("/subscriptions/c", 30)
    assert (pages.of("/subscriptions/a"), pages.of("/subscriptions/b"), pages.of("/subscriptions/c")) == (
        11,
        None,
        30,
    )
    assert pages.per_principal_is_cheaper("/subscriptions/b", 5) is False  # forgotten: the threshold


def test_a_refusal_is_remembered_for_a_while_from_when_arm_gave_it() -> None:
    pages = ListingPages()
    refused = Failure("AuthorizationFailed", status=403)
    pages.learn_refusal(SUBSCRIPTION, refused, now=100.0)
    assert pages.refusal(SUBSCRIPTION, now=100.0 + REFUSAL_MEMORY_S - 1) is refused
    pages.learn_refusal(SUBSCRIPTION, refused, now=150.0)  # the remembered one, seen again: no renewal
    assert pages.refusal(SUBSCRIPTION, now=100.0 + REFUSAL_MEMORY_S) is None
    assert pages.refusal("/subscriptions/other", now=100.0) is None

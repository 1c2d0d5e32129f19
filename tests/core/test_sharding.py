"""Shards keep an application's configs together and put every application in one session."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.core.model import FederationConfig
from reconciler.core.sharding import SESSION_COUNT, Shard, session_for, shard
from tests.core.builders import config


def fleet(apps: int, per_app: int) -> list[FederationConfig]:
    return [
        config(f"sc-{a}-{c}", app_id=f"aaaaaaaa-0000-0000-0000-{a:012d}")
        for a in range(apps)
        for c in range(per_app)
    ]


def test_session_for_is_a_stable_hash_bucket() -> None:
    # Stable across runs, processes and hosts: a fixed value, not Python's salted hash().
    assert session_for("app:0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0") == session_for(
        "app:0f1e2d3c-4b5a-4968-8776-a5b4c3d2e1f0"
    )
    assert session_for("app:x") == "apps-22"
    sessions = {session_for(f"app:{i}") for i in range(2000)}
    assert sessions == {f"apps-{n:02d}" for n in range(SESSION_COUNT)}


def test_a_sweep_of_5000_configs_makes_few_messages_and_keeps_every_app_whole() -> None:
    configs = fleet(apps=1000, per_app=5)
    shards = shard(configs)
    assert len(shards) < 5000 / 100
    assert all(len(s.config_ids) <= 300 for s in shards)
    assert sorted(i for s in shards for i in s.config_ids) == sorted(c.id for c in configs)
    owner = {app: s for s in shards for app in s.app_keys}
    assert len(owner) == 1000  # each app in exactly one shard
    for c in configs:
        s = owner[c.application.key]
        assert c.id in s.config_ids
        assert s.session_id == session_for(c.application.key)


def test_shards_are_deterministic_whatever_the_input_order() -> None:
    configs = fleet(apps=50, per_app=3)
    shuffled = list(configs)
    random.Random(7).shuffle(shuffled)
    assert shard(configs, max_configs=10) == shard(shuffled, max_configs=10)


def test_a_shard_is_split_by_size_but_never_splits_an_application() -> None:
    configs = fleet(apps=200, per_app=4)
    for s in shard(configs, max_configs=10):
        assert len(s.config_ids) <= 10
        assert len(s.config_ids) == 4 * len(s.app_keys)


def test_an_application_larger_than_max_configs_gets_a_shard_of_its_own() -> None:
    assert shard(fleet(apps=1, per_app=5), max_configs=2) == [
        Shard(
            app_keys=("app:aaaaaaaa-0000-0000-0000-000000000000",),
            config_ids=tuple(sorted(c.id for c in fleet(1, 5))),
            session_id=session_for("app:aaaaaaaa-0000-0000-0000-000000000000"),
        )
    ]


def test_nothing_to_shard_and_bad_sizes() -> None:
    assert shard([]) == []
    with pytest.raises(ValueError, match="at least 1"):
        shard(fleet(1, 1), max_configs=0)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 5)), unique=True), st.integers(1, 40))
def test_properties(pairs: list[tuple[int, int]], max_configs: int) -> None:
    configs = [config(f"c-{a}-{n}", app_id=f"aaaaaaaa-0000-0000-0000-{a:012d}") for a, n in pairs]
    shards = shard(configs, max_configs)
    assert sorted(i for s in shards for i in s.config_ids) == sorted(c.id for c in configs)
    apps = [a for s in shards for a in s.app_keys]
    assert len(apps) == len(set(apps))
    for s in shards:
        assert all(session_for(a) == s.session_id for a in s.app_keys)
        assert len(s.config_ids) <= max_configs or len(s.app_keys) == 1

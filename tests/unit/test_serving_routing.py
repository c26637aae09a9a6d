"""The prediction service's traffic split: shares, stickiness, monotone migration, shadow, bad weights."""

from __future__ import annotations

from collections import Counter

import pytest

from airflow_mlops_provider.serving.routing import Router, RoutingError, key_point

KEYS = [f"caller-{i}" for i in range(100_000)]


def shares(router: Router) -> dict[str, float]:
    counts = Counter(router.choose(key) for key in KEYS)
    return {alias: count / len(KEYS) for alias, count in counts.items()}


@pytest.mark.parametrize("canary", [5, 25, 50])
def test_keyed_shares_follow_the_weights(canary: int) -> None:
    got = shares(Router({"champion": 100 - canary, "canary": canary}))
    assert got["canary"] == pytest.approx(canary / 100, abs=0.005)
    assert got["champion"] == pytest.approx(1 - canary / 100, abs=0.005)


def test_unkeyed_shares_follow_the_weights_and_the_seed_repeats_them() -> None:
    router = Router({"champion": 95, "canary": 5}, seed=7)
    picks = [router.choose() for _ in range(100_000)]
    assert picks.count("canary") / len(picks) == pytest.approx(0.05, abs=0.005)
    again = Router({"champion": 95, "canary": 5}, seed=7)
    assert [again.choose(None) for _ in range(1000)] == picks[:1000]


def test_a_key_keeps_its_alias_whatever_the_mapping_order() -> None:
    first = Router({"champion": 80, "canary": 20})
    second = Router({"canary": 20, "champion": 80}, seed=1)
    assert [first.choose(k) for k in KEYS[:5000]] == [first.choose(k) for k in KEYS[:5000]]
    assert [first.choose(k) for k in KEYS[:5000]] == [second.choose(k) for k in KEYS[:5000]]
    assert 0.0 <= key_point("anyone") < 1.0
    assert key_point("anyone") == key_point("anyone")


def test_raising_the_canary_weight_only_moves_callers_to_the_canary() -> None:
    router = Router({"champion": 95, "canary": 5})
    before = {key: router.choose(key) for key in KEYS}
    for canary in (25, 50, 100):
        router = router.with_weights({"champion": 100 - canary, "canary": canary})
        after = {key: router.choose(key) for key in KEYS}
        moved_back = [k for k in KEYS if before[k] == "canary" and after[k] != "canary"]
        assert moved_back == []
        assert sum(1 for k in KEYS if before[k] != after[k]) > 0
        before = after
    assert set(before.values()) == {"canary"}


def test_a_zero_weight_is_never_chosen() -> None:
    router = Router({"champion": 1, "canary": 0, "shadow-only": 0.0}, seed=3)
    assert {router.choose(key) for key in KEYS[:20_000]} == {"champion"}
    assert {router.choose() for _ in range(20_000)} == {"champion"}


def test_with_weights_returns_a_new_router_and_keeps_the_old_one() -> None:
    old = Router({"champion": 100, "canary": 0}, shadow="canary")
    new = old.with_weights({"champion": 0, "canary": 1})
    assert old.weights == {"champion": 100.0, "canary": 0.0}
    assert {old.choose(k) for k in KEYS[:1000]} == {"champion"}
    assert {new.choose(k) for k in KEYS[:1000]} == {"canary"}
    assert new.shadow == "canary"
    assert new.with_shadow(None).shadow is None
    assert new.shadow == "canary"


def test_the_shadow_scores_a_copy_unless_it_answered_itself() -> None:
    router = Router({"champion": 1}, shadow="challenger")
    assert router.choose("k") == "champion"
    assert router.shadow_for("champion") == "challenger"
    assert router.shadow_for("challenger") is None
    assert Router({"champion": 1}).shadow_for("champion") is None


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ({}, "non-empty mapping"),
        ([("champion", 1)], "non-empty mapping"),
        ({"champion": 0, "canary": 0}, "At least one routing weight must be above 0"),
        ({"champion": -1, "canary": 5}, "Weight of alias 'champion' must be finite and >= 0, got -1"),
        ({"champion": float("nan")}, "Weight of alias 'champion' must be finite"),
        ({"champion": float("inf")}, "Weight of alias 'champion' must be finite"),
        ({"champion": "95"}, "Weight of alias 'champion' must be a number, got '95'"),
        ({"champion": True}, "Weight of alias 'champion' must be a number, got True"),
        ({"": 1}, "Routing alias '' must be a non-empty string"),
    ],
)
def test_bad_weights_are_refused_with_the_reason(weights: object, message: str) -> None:
    with pytest.raises(RoutingError, match=message.replace("(", r"\(")):
        Router(weights)  # type: ignore[arg-type]


def test_a_bad_shadow_is_refused() -> None:
    with pytest.raises(RoutingError, match="Shadow alias must be a non-empty string or None, got ''"):
        Router({"champion": 1}, shadow="")

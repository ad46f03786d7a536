"""The P/D warm-up's decisions (pure functions): which pairs to warm, when to try again, when
a pair's warmth is lost, and which prefill pods a request may use."""

from __future__ import annotations

from wharf_router.gateway.endpoints import Role
from wharf_router.gateway.pd_warmup import (
    BACKOFF_MAX_S,
    WARMUP_PROMPT,
    PairState,
    PodSide,
    backoff_s,
    gate,
    pair_model,
    pair_of,
    plan,
    usable_prefills,
    wanted_pairs,
)

M = frozenset({"m"})


def pod(
    name: str,
    role: Role,
    incarnation: int = 1,
    healthy: bool = True,
    models: frozenset[str] | None = M,
) -> PodSide:
    return PodSide(name, incarnation, role, healthy, models)


def test_the_prompt_fills_more_than_two_cpu_kv_blocks_with_plain_words() -> None:
    words = WARMUP_PROMPT.split()
    assert len(words) >= 300  # vLLM CPU's blocks hold 128 tokens; a plain word is one or more
    assert all(w.isalpha() and w.islower() for w in words)


def test_pairs_are_healthy_prefill_and_serving_pods_of_one_model() -> None:
    pods = [
        pod("p1", "prefill"),
        pod("p2", "prefill", healthy=False),
        pod("p3", "prefill", models=frozenset({"other"})),
        pod("d1", "decode"),
        pod("b1", "both", incarnation=7),
        pod("d2", "decode", healthy=False),
    ]
    assert wanted_pairs(pods) == {
        ("p1", 1, "d1", 1): "m",
        ("p1", 1, "b1", 7): "m",
    }


def test_the_model_is_one_both_serve_or_the_known_sides_while_the_other_is_unknown() -> None:
    assert pair_model(frozenset({"b", "a", "c"}), frozenset({"c", "b"})) == "b"
    assert pair_model(frozenset({"a"}), frozenset({"b"})) is None
    assert pair_model(None, frozenset({"x"})) == "x"
    assert pair_model(frozenset({"y"}), None) == "y"
    assert pair_model(None, None) is None
    assert pair_model(frozenset(), None) is None


def test_new_pairs_start_within_the_concurrency_bound_in_a_stable_order() -> None:
    wanted = {("p", 1, f"d{i}", 1): "m" for i in (3, 1, 2)}
    first = plan(wanted, {}, now=0.0, concurrency=2)
    assert first.start == [("p", 1, "d1", 1), ("p", 1, "d2", 1)] and first.drop == []
    states = {pair: PairState("m", running=True) for pair in first.start}
    assert plan(wanted, states, now=0.0, concurrency=2).start == []  # two run: none more
    states[("p", 1, "d1", 1)] = PairState("m", warm=True)
    assert plan(wanted, states, now=0.0, concurrency=2).start == [("p", 1, "d3", 1)]


def test_a_failed_pair_waits_its_backoff_and_a_refused_one_is_not_retried() -> None:
    pair = ("p", 1, "d", 1)
    failed = PairState("m", failures=1, retry_at=10.0)
    assert plan({pair: "m"}, {pair: failed}, now=9.9, concurrency=1).start == []
    assert plan({pair: "m"}, {pair: failed}, now=10.0, concurrency=1).start == [pair]
    refused = PairState("m", refused=True, failures=1, retry_at=0.0)
    assert plan({pair: "m"}, {pair: refused}, now=99.0, concurrency=1).start == []
    assert [backoff_s(n) for n in (1, 2, 3)] == [2.0, 4.0, 8.0]
    assert backoff_s(50) == BACKOFF_MAX_S


def test_a_pod_that_left_or_came_back_drops_its_pairs_and_the_new_pair_starts_cold() -> None:
    old = ("p", 1, "d", 1)
    states = {old: PairState("m", warm=True)}
    # the decode pod came back from an ejection: a new incarnation, so a new pair
    back = wanted_pairs([pod("p", "prefill"), pod("d", "decode", incarnation=2)])
    decided = plan(back, states, now=0.0, concurrency=1)
    assert decided.drop == [old] and decided.start == [("p", 1, "d", 2)]
    # the decode pod is ejected (or gone): its pairs are no longer wanted
    assert plan({}, states, now=0.0, concurrency=1).drop == [old]
    # the pair now serves another model: warmed for the old one, so warmed again
    decided = plan({old: "n"}, states, now=0.0, concurrency=1)
    assert decided.drop == [old] and decided.start == [old]


def test_a_request_uses_warm_and_ungated_pairs_only() -> None:
    p, d = pod("p", "prefill"), pod("d", "decode")
    assert gate(p, d, {}) == "cold"  # no warm-up ran yet
    assert gate(p, d, {pair_of(p, d): PairState("m", running=True)}) == "cold"
    assert gate(p, d, {pair_of(p, d): PairState("m", warm=True)}) == "warm"
    # a warm-up that cannot succeed (refused) does not hold the pair's requests back for good
    assert gate(p, d, {pair_of(p, d): PairState("m", refused=True)}) == "ungated"
    # a pair the gateway cannot warm (no model to ask for) hands off as without warm-up
    assert gate(pod("p", "prefill", models=None), pod("d", "decode", models=None), {}) == "ungated"
    # warmth is per incarnation: the same names after an ejection are cold again
    back = pod("d", "decode", incarnation=2)
    assert gate(p, back, {pair_of(p, d): PairState("m", warm=True)}) == "cold"

    usable, cold = usable_prefills({"a": "warm", "b": "cold", "c": "ungated"})
    assert usable == {"a", "c"} and cold == {"b"}
    usable, cold = usable_prefills({"a": "cold", "b": "cold"})
    assert usable == frozenset() and cold == {"a", "b"}

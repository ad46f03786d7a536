"""The gateway's pure decisions: scheduling, prefix hashing and its bounded index, engine
metrics parsing, endpoint lists, settings, API keys and token budgets."""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from wharf_router.gateway.app import _holds_done
from wharf_router.gateway.config import ConfigError, GatewayConfig, apply_settings
from wharf_router.gateway.endpoints import (
    EndpointError,
    load_endpoints_file,
    parse_endpoint_flag,
    parse_endpoints_document,
)
from wharf_router.gateway.engine_metrics import parse_engine_metrics
from wharf_router.gateway.limits import ApiKey, KeysError, TokenBuckets, parse_keys
from wharf_router.gateway.prefix import PrefixIndex, SessionTable, block_hashes, prompt_bytes
from wharf_router.gateway.scheduling import (
    PodView,
    Tuning,
    Weights,
    least_loaded,
    parse_weights,
    pick_default,
    pick_round_robin,
    scores,
)

RNG = random.Random(7)


# -- scheduling -------------------------------------------------------------------------------


def test_a_pod_holding_the_prefix_wins_at_equal_load() -> None:
    pods = [PodView("a"), PodView("b", prefix_blocks=10), PodView("c", prefix_blocks=3)]
    assert pick_default(pods, 10, Weights(), Tuning(), RNG).name == "b"


def test_a_small_load_difference_does_not_give_up_the_cache() -> None:
    pods = [PodView("a", in_flight=2), PodView("b", in_flight=5, prefix_blocks=10)]
    assert pick_default(pods, 10, Weights(), Tuning(), RNG).name == "b"


def test_a_queueing_cache_pod_loses_to_an_idle_one() -> None:
    pods = [PodView("a"), PodView("b", in_flight=12, waiting=10, running=8, prefix_blocks=10)]
    assert pick_default(pods, 10, Weights(), Tuning(), RNG).name == "a"


def test_the_prefill_a_cache_saves_is_weighed_against_the_prefill_queued_ahead() -> None:
    # a 10-block prompt: the cache pod saves computing 10 blocks, worth `prefix / pending` = 6
    # times as many blocks of other prompts queued ahead of it
    idle = [PodView(f"p{i}") for i in range(7)]
    queued = PodView("cache", in_flight=4, prefilling=4, pending_blocks=50, prefix_blocks=10)
    assert pick_default([*idle, queued], 10, Weights(), Tuning(), RNG).name == "cache"
    # past that, waiting behind the queue costs more than computing the prompt elsewhere
    longer = PodView("cache", in_flight=8, prefilling=8, pending_blocks=70, prefix_blocks=10)
    assert pick_default([*idle, longer], 10, Weights(), Tuning(), RNG).name != "cache"
    # near saturation every pod queues, and only the difference counts
    busy = [PodView(f"p{i}", in_flight=8, prefilling=8, pending_blocks=40) for i in range(7)]
    assert pick_default([*busy, longer], 10, Weights(), Tuning(), RNG).name == "cache"
    # without the pending scorer the queue is invisible to the pick
    assert pick_default([*idle, longer], 10, Weights(pending=0), Tuning(), RNG).name == "cache"


def test_the_skew_guard_sends_to_the_least_loaded_pod() -> None:
    # without the guard the session and prefix would keep it on "b"
    pods = [PodView("a", in_flight=1), PodView("b", in_flight=40, prefix_blocks=10, session=True)]
    weights = Weights(session=100)
    assert pick_default(pods, 10, weights, Tuning(), RNG).name == "a"
    assert pick_default(pods, 10, weights, Tuning(skew_abs=1000), RNG).name == "b"


def test_the_engines_own_counts_are_the_load_when_higher() -> None:
    # another gateway's requests show only in the scraped counts
    assert PodView("a", in_flight=1, waiting=5, running=10).load == 15
    assert PodView("a", in_flight=9, waiting=0, running=2).load == 9


def test_ties_are_broken_at_random() -> None:
    pods = [PodView("a"), PodView("b"), PodView("c")]
    picked = {
        pick_default(pods, 0, Weights(), Tuning(), random.Random(seed)).name for seed in range(40)
    }
    assert picked == {"a", "b", "c"}


def test_kv_usage_and_queue_scores() -> None:
    pods = [PodView("a", kv_usage=0.9), PodView("b", kv_usage=0.1)]
    only_kv = Weights(prefix=0, queue=0, active=0, kv=1, session=0)
    assert scores(pods, 0, only_kv, Tuning()) == pytest.approx([0.1, 0.9])
    queued = [PodView("a", waiting=0), PodView("b", waiting=20)]
    only_queue = Weights(prefix=0, queue=1, active=0, kv=0, session=0)
    assert scores(queued, 0, only_queue, Tuning(load_slack=4)) == pytest.approx([1.0, 0.0])
    # a spread under the slack is only part of the range
    near = [PodView("a", waiting=0), PodView("b", waiting=2)]
    assert scores(near, 0, only_queue, Tuning(load_slack=8)) == pytest.approx([1.0, 0.75])


def test_round_robin_and_least_loaded() -> None:
    pods = [PodView("b"), PodView("a"), PodView("c")]
    assert [pick_round_robin(pods, t).name for t in range(4)] == ["a", "b", "c", "a"]
    loaded = [
        PodView("a", in_flight=3),
        PodView("b", in_flight=1),
        PodView("c", waiting=2, running=2),
    ]
    assert least_loaded(loaded, RNG).name == "b"


def replay(pick: Callable[[list[PodView]], PodView], pods: int = 8, arrivals: int = 400) -> None:
    """Arrivals one time unit apart onto `pods` pods, each prompt's prefill taking 3 units
    (one prompt at a time per pod) and its answer 5 to 20 more, with every pick checked
    against the state it was made in: never a busy pod while one is idle, never a pod still
    computing a prompt while another is not. The picker sees what the gateway sees: its own
    requests in flight, those without a first token, and when it picked each pod last."""
    prefill, lengths = 3, random.Random(11)
    in_flight = dict.fromkeys(range(pods), 0)
    prefilling = dict.fromkeys(range(pods), 0)
    last_pick = dict.fromkeys(range(pods), 0)
    prefill_free_at = dict.fromkeys(range(pods), 0)
    events: list[tuple[int, int, str, int]] = []  # (time, order, what, pod)
    order = itertools.count()
    for t in range(arrivals):
        while events and events[0][0] <= t:
            _, _, what, pod = heapq.heappop(events)
            if what == "first-token":
                prefilling[pod] -= 1
            else:
                in_flight[pod] -= 1
        views = [
            PodView(f"p{i}", in_flight=in_flight[i], prefilling=prefilling[i],
                    last_pick=last_pick[i])
            for i in range(pods)
        ]  # fmt: skip
        chosen = int(pick(views).name[1:])
        if min(in_flight.values()) == 0:
            assert in_flight[chosen] == 0, f"t={t}: p{chosen} is busy while a pod is idle"
        if min(prefilling.values()) == 0:
            assert prefilling[chosen] == 0, f"t={t}: p{chosen} still computes a prompt"
        last_pick[chosen] = t + 1
        in_flight[chosen] += 1
        prefilling[chosen] += 1
        first = max(t, prefill_free_at[chosen]) + prefill
        prefill_free_at[chosen] = first
        heapq.heappush(events, (first, next(order), "first-token", chosen))
        end = first + lengths.randint(5, 20)
        heapq.heappush(events, (end, next(order), "end", chosen))


def test_least_load_never_stacks_a_prompt_on_a_pod_still_computing_one() -> None:
    rng = random.Random(3)
    replay(lambda views: least_loaded(views, rng))


def test_the_default_policy_never_stacks_prompts_that_share_nothing() -> None:
    rng = random.Random(3)
    replay(lambda views: pick_default(views, 0, Weights(), Tuning(), rng))


def test_ties_go_to_the_pod_picked_longest_ago() -> None:
    pods = [PodView("a", in_flight=1, last_pick=9), PodView("b", in_flight=1, last_pick=4),
            PodView("c", in_flight=1, last_pick=7)]  # fmt: skip
    for seed in range(20):
        assert least_loaded(pods, random.Random(seed)).name == "b"
        assert pick_default(pods, 0, Weights(), Tuning(), random.Random(seed)).name == "b"
    # the same load, but one of them is still computing its prompt: the others win
    pods[1] = PodView("b", in_flight=1, prefilling=1, pending_blocks=1, last_pick=4)
    assert least_loaded(pods, RNG).name == "c"
    assert pick_default(pods, 0, Weights(), Tuning(), RNG).name == "c"


def test_a_pending_prefill_outweighs_decoding_requests() -> None:
    decoding = PodView("decoding", in_flight=5, running=5)
    computing = PodView("computing", in_flight=1, prefilling=1)
    queued = PodView("queued", in_flight=0, waiting=2, running=3)  # other gateways' prompts
    assert least_loaded([computing, decoding, queued], RNG).name == "decoding"
    assert queued.pending == 2 and computing.pending == 1 and decoding.pending == 0


def test_weights_parse_and_refuse() -> None:
    w = parse_weights("prefix=5, kv=0")
    assert (w.prefix, w.kv, w.queue) == (5.0, 0.0, Weights().queue)
    with pytest.raises(ValueError, match="cache"):
        parse_weights("cache=1")
    with pytest.raises(ValueError, match="not a number"):
        parse_weights("prefix=lots")


# -- prefix hashing ---------------------------------------------------------------------------


def test_hashes_chain_so_a_shared_prefix_shares_its_leading_blocks() -> None:
    system = "s" * 1024
    a = block_hashes("m", (system + "question one" + "x" * 300).encode(), block_bytes=256)
    b = block_hashes("m", (system + "question two" + "y" * 300).encode(), block_bytes=256)
    assert a[:4] == b[:4] and a[4] != b[4]
    # the model seeds the chain: another model's cache is not this one's
    assert block_hashes("other", system.encode(), block_bytes=256)[0] != a[0]
    # only whole blocks, at most max_blocks
    assert len(block_hashes("m", b"z" * 1000, block_bytes=256)) == 3
    assert len(block_hashes("m", b"z" * 100_000, block_bytes=256, max_blocks=5)) == 5


def test_prompt_bytes_of_each_request_kind() -> None:
    assert prompt_bytes({"prompt": "hello"}) == b"hello"
    assert prompt_bytes({"prompt": ["first", "second"]}) == b"first"
    assert prompt_bytes({"prompt": [1, 2]}) == b"\x01\x00\x00\x00\x02\x00\x00\x00"
    assert prompt_bytes({"input": "embed me"}) == b"embed me"
    chat = prompt_bytes(
        {
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            ]
        }
    )
    assert chat is not None and chat.startswith(b"system\x00be brief\x01user\x00hi")
    assert prompt_bytes({"model": "m"}) is None


def test_prefix_index_matches_leading_blocks_and_stays_bounded() -> None:
    index = PrefixIndex(default_capacity=4)
    index.insert("a", [1, 2, 3])
    index.insert("b", [1, 9])
    assert index.match([1, 2, 3, 4], ["a", "b", "c"]) == {"a": 3, "b": 1}
    index.insert("a", [5, 6, 7])  # capacity 4: the least recently used go first
    assert index.size("a") == 4
    # a chain loses its tail first (as in vLLM): what is left is still a prefix
    assert index.match([1, 2, 3], ["a"]) == {"a": 1}
    assert index.match([5, 6, 7, 8], ["a"]) == {"a": 3}
    index.set_capacity("a", 2)
    assert index.size("a") == 2
    assert index.match([5, 6, 7], ["a"]) == {"a": 2}
    index.forget("b")
    assert index.match([1], ["b"]) == {}


def test_session_table_is_bounded() -> None:
    table = SessionTable(max_sessions=2)
    table.set("s1", "a")
    table.set("s2", "b")
    table.set("s3", "c")
    assert table.get("s1") is None and table.get("s3") == "c" and len(table) == 2


# -- engine metrics ---------------------------------------------------------------------------

VLLM_METRICS = b"""# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="m"} 3.0
vllm:num_requests_waiting{engine="1",model_name="m"} 2.0
vllm:num_requests_running{engine="0",model_name="m"} 7.0
vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5
vllm:kv_cache_usage_perc{engine="1",model_name="m"} 0.7
vllm:cache_config_info{block_size="16",cache_dtype="auto",num_gpu_blocks="2000",prefix_caching="True"} 1.0
vllm:prompt_tokens_total{model_name="m"} 123.0
http_requests_total{handler="/v1/completions"} 5.0
"""


def test_vllm_metrics_are_read() -> None:
    m = parse_engine_metrics(VLLM_METRICS)
    assert (m.waiting, m.running) == (5.0, 7.0)
    assert m.kv_usage == pytest.approx(0.6)
    assert m.kv_capacity_tokens == 32000


def test_sglang_metrics_and_garbage() -> None:
    text = b'sglang:num_queue_reqs{model_name="m"} 4\nsglang:token_usage{model_name="m"} 0.25\nvllm:broken{ 1\nvllm:x\n'
    m = parse_engine_metrics(text)
    assert (m.waiting, m.kv_usage, m.kv_capacity_tokens) == (4.0, 0.25, None)


def test_only_the_read_names_count_wherever_they_are_on_the_page() -> None:
    # the first line, CRLF endings, a longer name that starts with a read one, a HELP line,
    # and a page of histogram buckets around them (what most of vLLM's page is)
    buckets = b"".join(
        b'vllm:e2e_request_latency_seconds_bucket{le="%d",model_name="m"} %d\n' % (i, i)
        for i in range(300)
    )
    text = (
        b'vllm:num_requests_waiting{model_name="m"} 2\r\n'
        + buckets
        + b"# HELP vllm:num_requests_running Number of requests running.\n"
        + b'vllm:num_requests_waiting_by_reason{reason="x",model_name="m"} 40\n'
        + b'vllm:num_requests_running{model_name="m"} 3\n'
        + buckets
        + b"vllm:num_requests_waiting 1"
    )
    m = parse_engine_metrics(text)
    assert (m.waiting, m.running, m.kv_usage, m.kv_capacity_tokens) == (3.0, 3.0, 0.0, None)


# -- endpoints and settings -------------------------------------------------------------------


def test_endpoint_flags() -> None:
    ep = parse_endpoint_flag("http://10.0.0.5:8000=prefill")
    assert (ep.url, ep.role, ep.name, ep.address) == (
        "http://10.0.0.5:8000",
        "prefill",
        "10.0.0.5:8000",
        ("10.0.0.5", 8000),
    )
    assert parse_endpoint_flag("http://h:9/").role == "both"
    assert parse_endpoint_flag("http://h:9=prefill-decode").role == "both"
    with pytest.raises(EndpointError, match="role 'encode'"):
        parse_endpoint_flag("http://h:9=encode")
    with pytest.raises(EndpointError, match="http://"):
        parse_endpoint_flag("https://h:9")


def test_endpoints_file(tmp_path: Path) -> None:
    path = tmp_path / "eps.yaml"
    path.write_text("endpoints:\n- {url: 'http://a:1', role: decode, name: d0}\n- http://b:2\n")
    eps = load_endpoints_file(path)
    assert [(e.name, e.role) for e in eps] == [("d0", "decode"), ("b:2", "both")]
    with pytest.raises(EndpointError, match=r"endpoints\[0\]: unknown field\(s\) weight"):
        parse_endpoints_document([{"url": "http://a:1", "weight": 2}], "f")
    with pytest.raises(EndpointError, match="appears twice"):
        parse_endpoints_document(["http://a:1", "http://a:1"], "f")


def test_settings_from_a_file_mapping() -> None:
    config = apply_settings(
        GatewayConfig(),
        {
            "policy": "least-load",
            "weights": {"prefix": 5},
            "probing": {"scrape-interval": 1},
            "session_header": "X-Conv",
        },
        "f",
    )
    assert (
        config.policy == "least-load"
        and config.weights.prefix == 5
        and config.probing.scrape_interval == 1
    )
    assert config.session_header == b"x-conv"
    with pytest.raises(ConfigError, match="unknown setting 'speed'"):
        apply_settings(GatewayConfig(), {"speed": 1}, "f")
    with pytest.raises(ConfigError, match="max_attempts must be between"):
        apply_settings(GatewayConfig(), {"max_attempts": 99}, "f")
    with pytest.raises(ConfigError, match="policy must be one of"):
        apply_settings(GatewayConfig(), {"policy": "fastest"}, "f")


# -- keys and budgets -------------------------------------------------------------------------


def test_keys_are_looked_up_by_secret_and_named_in_errors_without_it() -> None:
    keys = parse_keys(
        [{"name": "team-a", "key": "sk-0123456789abcdef", "tokens_per_minute": 600}], "f"
    )
    found = keys.lookup("sk-0123456789abcdef")
    assert found is not None and found.name == "team-a"
    assert keys.lookup("sk-0123456789abcdeX") is None
    with pytest.raises(KeysError) as err:
        parse_keys([{"name": "x", "key": "short"}], "f")
    assert "short" not in str(err.value)


def test_token_bucket_refills_over_time() -> None:
    key = ApiKey("a", tokens_per_minute=60)  # one token a second
    buckets = TokenBuckets()
    assert buckets.allows(key, 0.0) is None
    buckets.spend(key, 100, 0.0)  # a large request takes the bucket below zero
    wait = buckets.allows(key, 0.0)
    assert wait is not None and wait == pytest.approx(41.0)
    assert buckets.allows(key, 30.0) is not None
    assert buckets.allows(key, 41.5) is None
    assert buckets.allows(ApiKey("free"), 0.0) is None


@pytest.mark.parametrize(
    ("chunk", "done"),
    [
        (b"data: [DONE]\n\n", True),
        (b"data:[DONE]\n\n", True),  # the space after the colon is optional
        (b'data: {"choices":[]}\n\ndata: [DONE]\n\n', True),
        (b'data: {"choices":[{"text":"[DONE]"}]}\n\n', False),  # a token that says [DONE]
        (b'data: {"choices":[{"text":"data: [DONE]"}]}\n\n', False),
        (b'data: {"choices":[]}\n\n', False),
    ],
)
def test_the_end_of_a_stream_is_its_done_event_not_a_token_that_says_so(
    chunk: bytes, done: bool
) -> None:
    assert _holds_done(chunk) is done

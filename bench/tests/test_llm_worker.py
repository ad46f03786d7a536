"""bench/llm_worker.py's decisions: how the bare vLLM row is launched (the worker's own launch
without Wharf's middleware), what a cell's engine figures are (from vLLM's /metrics) and its CPU
shares (by process role), and how rounds are ordered and summarized."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from wharf_e2e.tinyllm import SMALL, TINY
from wharf_llm_worker.cli import parse_command_line
from wharf_llm_worker.launch import MIDDLEWARE, EngineLaunch, build_launch


def _load_bench() -> ModuleType:
    # bench/ is a folder of scripts, not a package: the script is loaded from its path, with
    # bench/ on sys.path for its `tooling` import, as when it is run.
    folder = Path(__file__).resolve().parents[1]
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))
    path = folder / "llm_worker.py"
    spec = importlib.util.spec_from_file_location("wharf_bench_llm_worker", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_bench()
# What every cell measures.
FIGURES = (
    "output_tokens_per_s",
    "ttft_median_ms",
    "request_median_ms",
    *(key for key, _, _ in bench.ENGINE_MEANS),
)


def _worker_launch(port: int = 8000) -> EngineLaunch:
    options, dry_run = parse_command_line(bench.worker_arguments(Path("/models/tiny"), port))
    assert not dry_run
    return build_launch(options)


def test_the_bare_row_is_the_workers_launch_without_the_middleware_only() -> None:
    worker = _worker_launch()
    bare = bench.bare_vllm_launch(worker)

    at = worker.args.index("--middleware")
    assert worker.args[at + 1] == MIDDLEWARE
    assert bare.args == worker.args[:at] + worker.args[at + 2 :]
    assert MIDDLEWARE not in bare.args
    # Everything else the launcher decides is kept: the drain flag, the engine arguments,
    # the environment it adds.
    assert "--shutdown-timeout" in bare.args
    assert bare.args[-5:] == ("--dtype", "bfloat16", "--max-model-len", "1024", "--enforce-eager")
    assert bare.env == worker.env
    assert bare.kill_timeout_s == worker.kill_timeout_s


def test_a_launch_without_wharfs_middleware_is_refused() -> None:
    plain = EngineLaunch(
        args=("-m", "vllm", "--middleware", "other.Middleware"), env={}, kill_timeout_s=45
    )
    with pytest.raises(ValueError, match="no --middleware"):
        bench.bare_vllm_launch(plain)


def _exposition(tokens: tuple[float, float], ttft: tuple[float, float], e2e_count: float) -> str:
    labels = '{engine="0",model_name="tiny-llama"}'
    return "\n".join(
        [
            "# TYPE vllm:iteration_tokens_total histogram",
            f'vllm:iteration_tokens_total_bucket{{engine="0",le="1.0"}} {tokens[1]}',
            f"vllm:iteration_tokens_total_sum{labels} {tokens[0]}",
            f"vllm:iteration_tokens_total_count{labels} {tokens[1]}",
            f"vllm:time_to_first_token_seconds_sum{labels} {ttft[0]}",
            f"vllm:time_to_first_token_seconds_count{labels} {ttft[1]}",
            f"vllm:e2e_request_latency_seconds_sum{labels} 3.0",
            f"vllm:e2e_request_latency_seconds_count{labels} {e2e_count}",
            'wharf_llm_worker_requests_total{route="/v1/chat/completions",code="200"} 7.0',
            "",
        ]
    )


def test_engine_figures_are_the_cells_means_from_vllms_histograms() -> None:
    before = _exposition(tokens=(10.0, 5.0), ttft=(0.5, 2.0), e2e_count=2.0)
    after = _exposition(tokens=(50.0, 15.0), ttft=(0.9, 6.0), e2e_count=2.0)

    figures = bench.engine_figures(before, after)

    assert figures["tokens_per_step"] == pytest.approx(4.0)  # 40 tokens in 10 steps
    assert figures["engine_ttft_ms"] == pytest.approx(100.0)  # 0.4 s over 4 requests
    assert math.isnan(figures["engine_e2e_ms"])  # nothing finished in between
    assert math.isnan(figures["engine_queue_ms"])  # not reported at all


def test_costs_are_against_vllm_positive_when_wharf_is_slower() -> None:
    def rounds(tps: float, ttft: float) -> list[dict[str, float]]:
        return [
            {key: 1.0 for key in FIGURES} | {"output_tokens_per_s": tps, "ttft_median_ms": ttft}
        ]

    summary = bench.summarize(
        {
            "vllm": rounds(400.0, 40.0),
            "wharf": rounds(380.0, 42.0),
            "wharf+router": rounds(420.0, 40.0),
        }
    )

    assert summary["overhead_pct"]["wharf"] == pytest.approx(
        {"output_tokens_per_s": 5.0, "ttft_median_ms": 5.0}
    )
    assert summary["overhead_pct"]["wharf+router"]["output_tokens_per_s"] == pytest.approx(-5.0)
    assert summary["wharf"]["tokens_per_step"] == 1.0


def test_a_figure_missing_from_a_round_has_no_median() -> None:
    full = {key: 2.0 for key in FIGURES}
    results = {
        "vllm": [full | {"cpu_worker": 0.9}, full | {"cpu_worker": 1.0}],
        "wharf": [full | {"cpu_worker": 0.8}, dict(full)],
        "wharf+router": [dict(full)],
    }

    summary = bench.summarize(results)

    assert summary["vllm"]["cpu_worker"] == pytest.approx(0.95)
    assert "cpu_worker" not in summary["wharf"]


def test_every_row_takes_every_place_in_the_order_over_as_many_rounds() -> None:
    orders = [bench.cell_order(index) for index in range(len(bench.NAMES))]

    assert orders[0] == ("vllm", "wharf", "vllm+relay", "wharf+router")
    assert all(sorted(order) == sorted(bench.NAMES) for order in orders)
    for place in range(len(bench.NAMES)):
        assert {order[place] for order in orders} == set(bench.NAMES)


def test_processes_are_told_apart_by_vllms_titles() -> None:
    assert bench.process_role(100, 100, "/venv/bin/python") == "api_server"
    assert bench.process_role(101, 100, "VLLM::EngineCore") == "engine_core"
    assert bench.process_role(102, 100, "VLLM::Worker_TP0") == "worker"
    assert bench.process_role(103, 100, "/venv/bin/python -c from multiprocessing") == "other"


def test_cpu_shares_are_cores_used_over_the_cell() -> None:
    before = {"api_server": 10.0, "engine_core": 20.0, "clients": 1.0, "gone": 3.0}
    after = {"api_server": 17.5, "engine_core": 35.0, "clients": 4.0, "new": 1.0}

    shares = bench.cpu_shares(before, after, wall=15.0)

    assert shares == pytest.approx(
        {"cpu_api_server": 0.5, "cpu_engine_core": 1.0, "cpu_clients": 0.2}
    )


def test_cpu_costs_are_per_output_token_and_per_request() -> None:
    before = {"api_server": 10.0, "gateway": 2.0, "gone": 1.0}
    after = {"api_server": 10.5, "gateway": 2.25, "new": 3.0}

    costs = bench.cpu_costs(before, after, tokens=1000, requests=10)

    assert costs == pytest.approx(
        {
            "cpu_s_api_server": 0.5,
            "cpu_s_gateway": 0.25,
            "cpu_ms_per_token_api_server": 0.5,
            "cpu_ms_per_token_gateway": 0.25,
            "cpu_ms_per_request_api_server": 50.0,
            "cpu_ms_per_request_gateway": 25.0,
        }
    )
    assert bench.cpu_costs(before, after, tokens=0, requests=0) == pytest.approx(
        {"cpu_s_api_server": 0.5, "cpu_s_gateway": 0.25}
    )


def test_split_placement_gives_the_front_the_last_cpu_and_the_engine_the_rest() -> None:
    assert bench.placement_cpus("split", "api_server", 2) == {1}
    assert bench.placement_cpus("split", "gateway", 2) == {1}
    assert bench.placement_cpus("split", "clients", 4) == {3}
    assert bench.placement_cpus("split", "engine_core", 2) == {0}
    assert bench.placement_cpus("split", "worker", 4) == {0, 1, 2}
    assert bench.placement_cpus("split", "other", 2) is None
    # `front` moves the front only; `float` and a one-CPU machine move nothing.
    assert bench.placement_cpus("front", "api_server", 2) == {1}
    assert bench.placement_cpus("front", "engine_core", 2) is None
    assert bench.placement_cpus("float", "api_server", 2) is None
    assert bench.placement_cpus("split", "api_server", 1) is None
    with pytest.raises(ValueError, match="--placement"):
        bench.placement_cpus("spread", "api_server", 2)


def test_a_round_runs_every_row_at_every_concurrency_one_row_at_a_time() -> None:
    first = bench.cell_plan(0, [1, 4])
    second = bench.cell_plan(1, [1, 4])

    assert first == [
        ("vllm", 1), ("vllm", 4), ("wharf", 1), ("wharf", 4),
        ("vllm+relay", 1), ("vllm+relay", 4), ("wharf+router", 1), ("wharf+router", 4),
    ]  # fmt: skip
    assert second == [
        ("wharf", 4), ("wharf", 1), ("vllm+relay", 4), ("vllm+relay", 1),
        ("wharf+router", 4), ("wharf+router", 1), ("vllm", 4), ("vllm", 1),
    ]  # fmt: skip


def test_every_rows_cells_follow_an_engine_change_equally_often() -> None:
    # a round's first cell settles as after an engine change; so does a cell whose engine is
    # not the previous cell's: every row, at every level, must get that as often as the others
    after_change: dict[tuple[str, int], int] = {}
    for index in range(2 * len(bench.NAMES)):
        last = ""
        for name, level in bench.cell_plan(index, [1, 4]):
            if bench.ENGINE_OF[name] != last:
                after_change[(name, level)] = after_change.get((name, level), 0) + 1
            last = bench.ENGINE_OF[name]

    assert len(set(after_change.values())) == 1
    assert set(after_change) == {(name, level) for name in bench.NAMES for level in (1, 4)}


def test_rounds_stop_at_the_most_or_before_the_budget_runs_out() -> None:
    assert bench.another_round(0, 12, 0.0, left_s=-5.0)  # the first always runs
    assert not bench.another_round(12, 12, 100.0, left_s=None)
    assert bench.another_round(3, 12, 150.0, left_s=None)
    # Three rounds took 150 s: a fourth (about 50 s) fits in 50 s left, not in 49 s.
    assert bench.another_round(3, 12, 150.0, left_s=50.0)
    assert not bench.another_round(3, 12, 150.0, left_s=49.0)


def test_the_median_interval_is_order_statistics_with_binomial_coverage() -> None:
    six = bench.median_interval([6.0, 1.0, 5.0, 2.0, 4.0, 3.0])
    assert six["median"] == 3.5
    assert (six["low"], six["high"]) == (1.0, 6.0)  # only the extremes reach 95% at n=6
    assert six["coverage"] == pytest.approx(1 - 2 / 64)

    twelve = bench.median_interval([float(v) for v in range(1, 13)])
    # P(Bin(12, 1/2) <= 2) = 79/4096: [x3, x10] covers with 96.1%; [x4, x9] only with 85%.
    assert (twelve["low"], twelve["high"]) == (3.0, 10.0)
    assert twelve["coverage"] == pytest.approx(1 - 2 * 79 / 4096)

    five = bench.median_interval([1.0, 2.0, 3.0, 4.0, math.nan, 5.0])
    assert five["n"] == 5 and five["median"] == 3.0
    assert math.isnan(five["low"]) and math.isnan(five["high"])


def _round(tps: float, ttft: float) -> dict[str, float]:
    return {"output_tokens_per_s": tps, "ttft_median_ms": ttft}


def test_paired_costs_compare_each_round_with_vllms_cell_of_the_same_round() -> None:
    # The machine's pace swings 2x between rounds; Wharf is 2% slower in each: pairing by
    # round shows 2%, where the rows' medians would not.
    paces = [1.0, 2.0, 1.2, 1.8, 1.1, 0.9, 1.5]
    vllm = [_round(400.0 * pace, 40.0 / pace) for pace in paces]
    wharf = [_round(392.0 * pace, 40.8 / pace) for pace in paces]

    costs = bench.paired_costs(vllm, wharf)

    tokens = costs["output_tokens_per_s"]
    assert tokens["cost_pct"] == pytest.approx(2.0)
    assert (tokens["low_pct"], tokens["high_pct"]) == pytest.approx((2.0, 2.0))
    assert tokens["n"] == 7
    assert costs["ttft_median_ms"]["cost_pct"] == pytest.approx(2.0)
    assert bench.verdict(costs) == "met"


def test_the_verdict_needs_the_whole_interval_on_one_side_of_the_target() -> None:
    def cost(low: float, high: float) -> dict[str, float]:
        return {"cost_pct": (low + high) / 2, "low_pct": low, "high_pct": high}

    assert bench.verdict({"a": cost(-3.0, 4.9), "b": cost(0.0, 1.0)}) == "met"
    assert bench.verdict({"a": cost(-3.0, 6.0), "b": cost(0.0, 1.0)}) == "not shown"
    assert bench.verdict({"a": cost(5.0, 9.0), "b": cost(0.0, 1.0)}) == "missed"
    assert bench.verdict({"a": cost(math.nan, math.nan)}) == "not shown"


def test_cpu_per_token_sums_seconds_and_tokens_over_rounds() -> None:
    rounds = [
        {"tokens": 1000.0, "requests": 10.0, "cpu_s_api_server": 0.3, "cpu_s_engine_core": 1.0,
         "cpu_s_worker": 2.0, "cpu_s_clients": 0.5},
        {"tokens": 3000.0, "requests": 30.0, "cpu_s_api_server": 0.9, "cpu_s_engine_core": 3.0,
         "cpu_s_worker": 6.0, "cpu_s_clients": 1.5},
    ]  # fmt: skip

    per = bench.cpu_per_token(rounds)

    assert per["ms_per_token_api_server"] == pytest.approx(0.3)
    assert per["ms_per_request_worker"] == pytest.approx(200.0)
    # The server's CPU leaves the benchmark's clients out.
    assert per["ms_per_token_server"] == pytest.approx(3.3)
    assert "ms_per_token_gateway" not in per


def test_wharfs_cpu_share_is_the_api_servers_difference_plus_the_gateway() -> None:
    vllm = {"ms_per_token_api_server": 0.50, "ms_per_token_server": 4.0}
    wharf = {"ms_per_token_api_server": 0.52, "ms_per_token_server": 4.1}
    routed = {"ms_per_token_api_server": 0.56, "ms_per_token_gateway": 0.14}

    assert bench.wharf_cpu_share(vllm, wharf) == pytest.approx(
        {"added_ms_per_token": 0.02, "added_pct": 0.5}
    )
    assert bench.wharf_cpu_share(vllm, routed, gateway=True) == pytest.approx(
        {"added_ms_per_token": 0.20, "added_pct": 5.0}
    )


def test_paired_differences_subtract_the_base_round_by_round() -> None:
    key = "cpu_ms_per_token_api_server"
    base = [{key: 0.40 + 0.1 * i} for i in range(6)] + [{}]
    other = [{key: 0.42 + 0.1 * i} for i in range(6)] + [{key: 9.0}]

    diff = bench.paired_differences(base, other, key)

    assert diff["n"] == 6  # the round without the base's figure is left out
    assert diff["median"] == pytest.approx(0.02)
    assert (diff["low"], diff["high"]) == pytest.approx((0.02, 0.02))


def test_the_routed_row_is_also_paired_with_the_relays_hop_its_floor() -> None:
    # Per round: the relay 1% slower than vLLM, the routed row 4% slower than vLLM: 3% over
    # the hop's floor; the gateway spends 0.08 ms/token where the relay spends 0.03.
    def row(tps: float, ttft: float, gateway_s: float | None) -> list[dict[str, float]]:
        cell = {
            **_round(tps, ttft), "tokens": 1000.0, "requests": 10.0, "cpu_s_api_server": 0.3,
            "cpu_s_engine_core": 1.0, "cpu_s_worker": 2.0, "cpu_s_clients": 0.5,
        }  # fmt: skip
        if gateway_s is not None:
            cell["cpu_s_gateway"] = gateway_s
        return [dict(cell) for _ in range(7)]

    results = {
        "vllm": row(400.0, 40.0, None),
        "wharf": row(400.0, 40.0, None),
        "wharf+router": row(384.0, 41.6, 0.08),
        "vllm+relay": row(396.0, 40.4, 0.03),
    }

    analysis = bench.analyse(results)

    over = analysis["over_floor"]
    assert over["output_tokens_per_s"]["cost_pct"] == pytest.approx(100 * (1 - 384 / 396))
    assert over["ttft_median_ms"]["cost_pct"] == pytest.approx(100 * (41.6 / 40.4 - 1))
    assert over["gateway_minus_relay_ms_per_token"] == pytest.approx(0.05)
    # the relay's own cost against vLLM counts its process, as the gateway's does
    assert analysis["paired"]["vllm+relay"]["cpu"]["added_ms_per_token"] == pytest.approx(0.03)


def test_the_relay_is_placed_where_the_gateway_is(monkeypatch: pytest.MonkeyPatch) -> None:
    # no process is moved here: the tree, the pinning and the CPU count are stand-ins
    pinned: dict[int, frozenset[int]] = {}
    trees = {10: {10: "/venv/bin/python", 11: "VLLM::EngineCore", 12: "VLLM::Worker"}}
    monkeypatch.setattr(bench, "_tree", lambda root: trees[root])
    monkeypatch.setattr(bench, "pin_process", lambda pid, cpus: pinned.__setitem__(pid, cpus))
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)

    class Proc:
        pid = 20

    relay = bench.Server("vllm+relay", 1, Proc(), Path("relay.log"), "", 10)

    for placement, where in (("split", {1}), ("front", {1}), ("float", None)):
        pinned.clear()
        bench.apply_placement(placement, {"vllm+relay": relay}, {})
        assert pinned.get(20) == where, placement
        assert pinned.get(10) == where  # the API server's side of the front


def test_each_proxy_row_is_also_paired_with_its_own_engine_reached_directly() -> None:
    # wharf's engine runs 10% slower than vLLM's (another instance); the gateway costs 2% on
    # top of its own engine, the relay 1% on top of vLLM's: the same-engine pairs show 2% and
    # 1%, where the pairs against vLLM's row would show the instances' 10% too.
    def row(tps: float, ttft: float, e2e: float) -> list[dict[str, float]]:
        cell = {**_round(tps, ttft), "tokens": 650.0, "requests": 10.0, "engine_e2e_ms": e2e,
                "engine_ttft_ms": 10.0}  # fmt: skip
        return [dict(cell) for _ in range(7)]

    results = {
        "vllm": row(400.0, 40.0, 266.0),
        "wharf": row(360.0, 44.0, 330.0),
        "vllm+relay": row(396.0, 40.4, 266.0),
        "wharf+router": row(352.8, 44.88, 330.0),
    }

    analysis = bench.analyse(results)

    same = analysis["same_engine"]
    assert same["wharf+router"]["over"] == "wharf"
    assert same["wharf+router"]["output_tokens_per_s"]["cost_pct"] == pytest.approx(2.0)
    assert same["wharf+router"]["ttft_median_ms"]["cost_pct"] == pytest.approx(2.0)
    assert same["vllm+relay"]["over"] == "vllm"
    assert same["vllm+relay"]["output_tokens_per_s"]["cost_pct"] == pytest.approx(1.0)
    # the engine's own time per token after the first: (e2e - ttft) / (65 - 1)
    assert analysis["engine_decode_ms"]["vllm"] == pytest.approx(4.0)
    assert analysis["engine_decode_ms"]["wharf"] == pytest.approx(5.0)


def test_the_model_option_picks_the_built_shape(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.parse_arguments([])[0].model == "tiny"
    assert bench.SHAPES[bench.parse_arguments(["--model", "small"])[0].model] == SMALL
    assert bench.SHAPES["tiny"] == TINY
    with pytest.raises(SystemExit):
        bench.parse_arguments(["--model", "huge"])
    assert "--model" in capsys.readouterr().err


def test_the_engines_decode_time_leaves_out_cells_without_its_figures() -> None:
    cells = [
        {"tokens": 130.0, "requests": 2.0, "engine_e2e_ms": 74.0, "engine_ttft_ms": 10.0},
        {"tokens": 2.0, "requests": 2.0, "engine_e2e_ms": 12.0, "engine_ttft_ms": 10.0},
        {"tokens": 0.0, "requests": 0.0},
    ]
    assert bench.engine_decode_ms(cells) == [pytest.approx(1.0)]


def test_fresh_engines_every_k_rounds_started_in_turns() -> None:
    assert [bench.block_of(r, 3) for r in range(7)] == [0, 0, 0, 1, 1, 1, 2]
    assert {bench.block_of(r, 0) for r in range(50)} == {0}
    assert bench.launch_order(0) == ("vllm", "wharf")
    assert bench.launch_order(1) == ("wharf", "vllm")
    assert bench.launch_order(2) == bench.launch_order(0)


def test_block_costs_pair_cells_only_within_their_block() -> None:
    # Block 0: wharf's engine 10% slower than vLLM's; block 1: 10% faster. Each block's cost
    # shows its own pair of engines; the decode times say which engine ran slower.
    def cells(block: int, tps: float, e2e: float) -> list[dict[str, float]]:
        one = {**_round(tps, 40.0), "tokens": 650.0, "requests": 10.0, "engine_e2e_ms": e2e,
               "engine_ttft_ms": 10.0, "block": float(block)}  # fmt: skip
        return [dict(one) for _ in range(7)]

    results = {
        "vllm": cells(0, 400.0, 266.0) + cells(1, 400.0, 266.0),
        "wharf": cells(0, 360.0, 330.0) + cells(1, 440.0, 202.0),
    }

    blocks = bench.block_costs(results, "vllm", "wharf")

    assert [b["block"] for b in blocks] == [0, 1]
    assert blocks[0]["output_tokens_per_s"]["cost_pct"] == pytest.approx(10.0)
    assert blocks[1]["output_tokens_per_s"]["cost_pct"] == pytest.approx(-10.0)
    assert blocks[0]["output_tokens_per_s"]["n"] == 7
    assert blocks[0]["engine_decode_ms"] == {
        "vllm": pytest.approx(4.0),
        "wharf": pytest.approx(5.0),
    }
    assert blocks[1]["engine_decode_ms"]["wharf"] == pytest.approx(3.0)
    assert bench.analyse(results)["blocks"] == blocks


def test_restart_every_must_not_be_negative(capsys: pytest.CaptureFixture[str]) -> None:
    assert bench.parse_arguments(["--restart-every", "8"])[0].restart_every == 8
    with pytest.raises(SystemExit):
        bench.parse_arguments(["--restart-every", "-1"])
    assert "--restart-every" in capsys.readouterr().err


def test_the_engines_decode_time_leaves_out_cells_whose_figures_are_nan() -> None:
    # engine_figures writes NaN where vLLM's histogram had no count: no NaN in a median
    cells = [
        {"tokens": 130.0, "requests": 2.0, "engine_e2e_ms": math.nan, "engine_ttft_ms": 10.0},
        {"tokens": 130.0, "requests": 2.0, "engine_e2e_ms": 74.0, "engine_ttft_ms": 10.0},
    ]
    assert bench.engine_decode_ms(cells) == [pytest.approx(1.0)]


@pytest.mark.parametrize("fails_in", ["wait_ready", "thread_affinities", "cell"])
def test_a_restart_that_fails_stops_the_fresh_servers(
    monkeypatch: pytest.MonkeyPatch, fails_in: str
) -> None:
    old = {"vllm": object(), "wharf": object()}
    fresh = {"vllm": object(), "wharf": object(), "vllm+relay": object()}
    stopped: list[object] = []

    def fail(*_: object, **__: object) -> None:
        raise RuntimeError(fails_in)

    async def fine_cell(*_: object, **__: object) -> dict[str, float]:
        return {}

    monkeypatch.setattr(bench, "stop", stopped.append)
    monkeypatch.setattr(bench, "wait_ready", lambda _: None)
    monkeypatch.setattr(bench, "thread_affinities", lambda _: {})
    monkeypatch.setattr(bench, "apply_placement", lambda *_: None)
    monkeypatch.setattr(bench, "cell", fine_cell)
    monkeypatch.setattr(bench, fails_in, fail)
    args = bench.parse_arguments([])[0]

    with pytest.raises(RuntimeError, match=fails_in):
        bench.restart(old, lambda _: fresh, 1, "split", [1, 4], args)

    # the old ones first, then every fresh one: nothing started is left running
    assert stopped == [*old.values(), *fresh.values()]


def _run_file(
    blocks: list[int], tps: float, *, model: str = "small", **settings: object
) -> dict[str, object]:
    """A finished run's --json as the benchmark writes it: every row at c=1, one cell per
    round, the rounds' blocks as given; wharf's rows `tps` where vLLM's rows make 400."""

    def cell(block: int, row: str) -> dict[str, float]:
        rate = 400.0 if row.startswith("vllm") else tps
        return {
            **_round(rate, 40.0 * 400.0 / rate), "tokens": 650.0, "requests": 10.0,
            "cpu_s_api_server": 0.3, "cpu_s_engine_core": 1.0, "cpu_s_worker": 2.0,
            "cpu_s_clients": 0.5, "engine_e2e_ms": 266.0, "engine_ttft_ms": 10.0,
            "block": float(block),
            **({"cpu_s_gateway": 0.05} if row in bench.HOP_ROWS else {}),
        }  # fmt: skip

    run_settings = {"model": model, "max_tokens": 64, "duration": 6.0, "client": "light",
                    "concurrency": [1], "placement": "split"}  # fmt: skip
    return {
        "settings": {**run_settings, **settings},
        "analyses": {},
        "rounds": {f"split {row} c=1": [cell(b, row) for b in blocks] for row in bench.NAMES},
    }


def test_pooled_runs_keep_every_cell_in_order_and_each_runs_blocks_apart() -> None:
    first, second = _run_file([0, 0, 1], 392.0), _run_file([0, 1, 1, 2], 388.0)

    pooled = bench.pool_runs([("a.json", first), ("b.json", second)])

    wharf = pooled[("split", "wharf", 1)]
    assert [c["output_tokens_per_s"] for c in wharf] == [392.0] * 3 + [388.0] * 4
    # the second run's engines are new processes: its blocks follow the first run's two
    assert [c["block"] for c in wharf] == [0.0, 0.0, 1.0, 2.0, 3.0, 3.0, 4.0]
    assert set(pooled) == {("split", row, 1) for row in bench.NAMES}
    rows = {row: cells for (_, row, _), cells in pooled.items()}
    assert [b["block"] for b in bench.block_costs(rows, "vllm", "wharf")] == [0, 1, 2, 3, 4]


def test_runs_measured_otherwise_or_unfinished_are_not_pooled() -> None:
    tiny = _run_file([0], 392.0, model="tiny")
    with pytest.raises(ValueError, match=r"b\.json: model is 'tiny', but a\.json has 'small'"):
        bench.pool_runs([("a.json", _run_file([0], 392.0)), ("b.json", tiny)])
    longer = _run_file([0], 392.0, max_tokens=32)
    with pytest.raises(ValueError, match=r"b\.json: max_tokens"):
        bench.pool_runs([("a.json", _run_file([0], 392.0)), ("b.json", longer)])
    # a run cut short leaves only its partial rounds
    with pytest.raises(ValueError, match=r"cut\.json: not a finished run"):
        bench.pool_runs([("cut.json", {"partial_rounds": {}})])
    # a run of other rows (here one from before the relay's row) cannot be printed with them
    older = _run_file([0], 392.0)
    older["rounds"].pop("split vllm+relay c=1")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match=r"b\.json: its rows and concurrencies"):
        bench.pool_runs([("a.json", _run_file([0], 392.0)), ("b.json", older)])
    with pytest.raises(ValueError, match=r"no rounds for split vllm\+relay c=1"):
        bench.pool_runs([("b.json", older)])
    empty = _run_file([], 392.0)
    with pytest.raises(ValueError, match="nothing to compare with"):
        bench.pool_runs([("empty.json", empty)])


def test_pool_analyses_the_runs_together_without_running_anything(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b, out = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "pooled.json"
    a.write_text(json.dumps(_run_file([0] * 4, 392.0)))
    b.write_text(json.dumps(_run_file([0] * 4, 392.0)))

    assert bench.main(["--pool", str(a), str(b), "--json", str(out)]) == 0

    pooled = json.loads(out.read_text())
    assert pooled["settings"]["rounds_done"] == 8
    assert pooled["settings"]["pooled"] == [str(a), str(b)]
    # 8 pairs of 392 against 400 tokens/s: a 2% cost, with an interval now that 8 rounds give one
    paired = pooled["analyses"]["split c=1"]["paired"]["wharf"]["output_tokens_per_s"]
    assert paired["cost_pct"] == pytest.approx(2.0)
    assert paired["n"] == 8
    assert "rounds 8" in capsys.readouterr().out


def test_pool_names_a_file_it_cannot_read(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert bench.main(["--pool", str(broken), str(tmp_path / "missing.json")]) == 2
    assert "broken.json" in capsys.readouterr().err

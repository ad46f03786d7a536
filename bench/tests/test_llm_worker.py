"""bench/llm_worker.py's decisions: how the bare vLLM row is launched (the worker's own launch
without Wharf's middleware) and what a cell's engine figures are (from vLLM's /metrics)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType

import pytest

from wharf_llm_worker.cli import parse_command_line
from wharf_llm_worker.launch import MIDDLEWARE, EngineLaunch, build_launch


def _load_bench() -> ModuleType:
    # bench/ is a folder of scripts, not a package: the script is loaded from its path.
    path = Path(__file__).resolve().parents[1] / "llm_worker.py"
    spec = importlib.util.spec_from_file_location("wharf_bench_llm_worker", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


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
            {key: 1.0 for key in bench.FIGURES}
            | {"output_tokens_per_s": tps, "ttft_median_ms": ttft}
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


def test_every_row_takes_every_place_in_the_order_over_three_rounds() -> None:
    orders = [bench.cell_order(index) for index in range(3)]

    assert orders[0] == ("vllm", "wharf", "wharf+router")
    assert all(sorted(order) == sorted(bench.NAMES) for order in orders)
    for place in range(3):
        assert {order[place] for order in orders} == set(bench.NAMES)

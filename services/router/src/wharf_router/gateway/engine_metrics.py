"""The few engine metrics the scheduler reads, out of an engine's Prometheus text. Pure.

vLLM's names (`vllm:`) and SGLang's (`sglang:`) are both read; a metric with several series
(one per model or per data-parallel engine) is summed, as the pod's total load.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_METRICS_BYTES = 8 * 1024 * 1024

_WAITING = (b"vllm:num_requests_waiting", b"sglang:num_queue_reqs")
_RUNNING = (b"vllm:num_requests_running", b"sglang:num_running_reqs")
_KV_USAGE = (b"vllm:kv_cache_usage_perc", b"vllm:gpu_cache_usage_perc", b"sglang:token_usage")
_CACHE_INFO = (b"vllm:cache_config_info", b"sglang:cache_config_info")
_LABEL = re.compile(rb'(\w+)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class EngineMetrics:
    waiting: float = 0.0
    running: float = 0.0
    kv_usage: float = 0.0  # 0..1
    # the KV cache's size in tokens (num_gpu_blocks * block_size), when the engine says
    kv_capacity_tokens: int | None = None


_NAMES = _WAITING + _RUNNING + _KV_USAGE + _CACHE_INFO


def _series(line: bytes) -> tuple[bytes, bytes, float] | None:
    """(name, labels, value) of one sample line; None for a line that is not one."""
    brace = line.find(b"{")
    space = line.rfind(b" ")
    if space < 0:
        return None
    if brace >= 0:
        close = line.rfind(b"}")
        if close < brace:
            return None
        name, labels = line[:brace], line[brace + 1 : close]
        rest = line[close + 1 :].split()
    else:
        parts = line.split()
        name, labels, rest = parts[0], b"", parts[1:]
    if not rest:
        return None
    try:
        return name, labels, float(rest[0])
    except ValueError:
        return None


def _lines_of(text: bytes, name: bytes) -> list[bytes]:
    """The lines of `text` that start with `name`. An engine's page is mostly histogram
    buckets the gateway does not read (vLLM's: hundreds of lines); a byte search per wanted
    name skips them in C, where splitting and checking every line cost several times more."""
    found = []
    needle = b"\n" + name
    at = 0 if text.startswith(name) else text.find(needle)
    while at >= 0:
        begin = at + 1 if text[at : at + 1] == b"\n" else at
        end = text.find(b"\n", begin)
        found.append(text[begin : end if end >= 0 else len(text)].rstrip(b"\r"))
        if end < 0:
            break
        at = text.find(needle, end)
    return found


def parse_engine_metrics(text: bytes) -> EngineMetrics:
    waiting = running = kv = 0.0
    kv_series = 0
    capacity: int | None = None
    for wanted in _NAMES:
        for line in _lines_of(text, wanted):
            parsed = _series(line)
            if parsed is None or parsed[0] != wanted:
                continue  # a longer name that starts with this one, or not a sample
            name, labels, value = parsed
            if name in _WAITING:
                waiting += value
            elif name in _RUNNING:
                running += value
            elif name in _KV_USAGE:
                kv += value
                kv_series += 1
            else:
                found = _capacity(labels)
                if found is not None:
                    capacity = (capacity or 0) + found
    return EngineMetrics(
        waiting=waiting,
        running=running,
        kv_usage=min(1.0, max(0.0, kv / kv_series)) if kv_series else 0.0,
        kv_capacity_tokens=capacity,
    )


def _capacity(labels: bytes) -> int | None:
    found = {k.decode(): v.decode() for k, v in _LABEL.findall(labels)}
    blocks = found.get("num_gpu_blocks") or found.get("num_pages")
    size = found.get("block_size") or found.get("page_size")
    try:
        if blocks is None or size is None:
            return None
        value = int(float(blocks)) * int(float(size))
    except ValueError:
        return None
    return value if value > 0 else None

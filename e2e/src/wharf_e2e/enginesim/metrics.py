"""A pod's `/metrics` in Prometheus text, with vLLM's names, types and labels (`model_name`,
`engine`). Pure: numbers in, text out."""

from __future__ import annotations

from wharf_e2e.enginesim.engine import TTFT_BUCKETS, Engine


def _labels(pairs: dict[str, str]) -> str:
    inner = ",".join(f'{k}="{v}"' for k, v in pairs.items())
    return "{" + inner + "}"


def render(engine: Engine) -> str:
    cfg = engine.config
    base = {"engine": "0", "model_name": cfg.model}
    lab = _labels(base)
    c = engine.counters
    out: list[str] = []

    def metric(name: str, kind: str, help_: str, samples: list[tuple[str, str, float]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} {kind}")
        out.extend(f"{sample}{labels} {value!r}" for sample, labels, value in samples)

    def gauge(name: str, help_: str, value: float) -> None:
        metric(name, "gauge", help_, [(name, lab, float(value))])

    def counter(name: str, help_: str, value: float, labels: str = lab) -> None:
        metric(name, "counter", help_, [(f"{name}_total", labels, float(value))])

    gauge("vllm:num_requests_running", "Number of requests in model execution batches.",
          len(engine.running))  # fmt: skip
    gauge("vllm:num_requests_waiting", "Number of requests waiting to be processed.",
          len(engine.waiting))  # fmt: skip
    gauge("vllm:kv_cache_usage_perc", "KV-cache usage. 1 means 100 percent usage.",
          engine.kv_usage())  # fmt: skip
    info = {
        "block_size": str(cfg.block_size),
        "cache_dtype": "auto",
        "enable_prefix_caching": "True",
        "gpu_memory_utilization": "0.9",
        "num_cpu_blocks": "None",
        "num_gpu_blocks": str(cfg.num_gpu_blocks),
        "engine": "0",
    }
    metric("vllm:cache_config_info", "gauge", "Information of the LLMEngine CacheConfig",
           [("vllm:cache_config_info", _labels(info), 1.0)])  # fmt: skip
    counter("vllm:prefix_cache_queries", "Prefix cache queries, in terms of number of queried "
            "tokens.", c.prefix_queries)  # fmt: skip
    counter("vllm:prefix_cache_hits", "Prefix cache hits, in terms of number of cached tokens.",
            c.prefix_hits)  # fmt: skip
    counter("vllm:external_prefix_cache_queries", "External prefix cache queries from KV "
            "connector cross-instance cache sharing, in terms of number of queried tokens.",
            c.external_queries)  # fmt: skip
    counter("vllm:external_prefix_cache_hits", "External prefix cache hits from KV connector "
            "cross-instance cache sharing, in terms of number of cached tokens.",
            c.external_hits)  # fmt: skip
    counter("vllm:prompt_tokens", "Number of prefill tokens processed.", c.prompt_tokens)
    counter("vllm:generation_tokens", "Number of generation tokens processed.",
            c.generation_tokens)  # fmt: skip
    metric("vllm:prompt_tokens_by_source", "counter", "Number of prompt tokens by source.",
           [("vllm:prompt_tokens_by_source_total", _labels({**base, "source": source}), float(n))
            for source, n in c.by_source.items()])  # fmt: skip
    counter("vllm:prompt_tokens_cached", "Number of cached prompt tokens (local + external).",
            c.by_source["local_cache_hit"] + c.by_source["external_kv_transfer"])  # fmt: skip
    metric("vllm:request_success", "counter", "Count of successfully processed requests.",
           [("vllm:request_success_total", _labels({**base, "finished_reason": reason}),
             float(n)) for reason, n in sorted(c.success.items())])  # fmt: skip
    counter("vllm:nixl_num_failed_transfers", "Number of failed KV transfers (the decode pod "
            "computed the prompt itself).", c.failed_transfers)  # fmt: skip
    # the simulator's own (vLLM has no such counter): first pulls from a prefill engine
    metric("enginesim:kv_handshakes", "counter", "First KV pulls from a prefill engine (each "
           "waited --handshake-delay).", [("enginesim:kv_handshakes_total", lab,
                                            float(c.handshakes))])  # fmt: skip
    samples = [
        ("vllm:time_to_first_token_seconds_bucket", _labels({**base, "le": repr(bound)}),
         float(n)) for bound, n in zip(TTFT_BUCKETS, c.ttft_buckets, strict=True)
    ]  # fmt: skip
    samples.append(("vllm:time_to_first_token_seconds_bucket", _labels({**base, "le": "+Inf"}),
                    float(c.ttft_count)))  # fmt: skip
    samples.append(("vllm:time_to_first_token_seconds_count", lab, float(c.ttft_count)))
    samples.append(("vllm:time_to_first_token_seconds_sum", lab, c.ttft_sum))
    metric("vllm:time_to_first_token_seconds", "histogram", "Histogram of time to first token "
           "in seconds.", samples)  # fmt: skip
    return "\n".join(out) + "\n"

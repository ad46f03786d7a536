"""The scheduler's default configuration when the service gives none (`router.scheduler.config`).

KServe writes an llm-d EndpointPickerConfig for the managed scheduler: with prefill, two
profiles (prefill: prefix cache 3, queue 2, KV-cache use 2; decode: active requests 2, prefix
cache 3) and a decider that always disaggregates; without, one profile (queue 2, KV-cache use
2, prefix cache 3, no-hit LRU 2); a LoRA affinity scorer (4) joins every profile when the model
has adapters. Wharf keeps the same document as data, so a user's inline config and the default
have one shape, and Wharf's router reads the plugin types and weights from it. Pure.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
API_VERSION = "llm-d.ai/v1alpha1"
KIND = "EndpointPickerConfig"
LORA_SCORER = "lora-affinity-scorer"


def _ref(name: str, weight: int | None = None) -> JSON:
    return {"pluginRef": name} if weight is None else {"pluginRef": name, "weight": weight}


def default_scheduler_config(*, disaggregated: bool, lora: bool) -> JSON:
    lora_plugins = [{"type": LORA_SCORER}] if lora else []
    lora_refs = [_ref(LORA_SCORER, 4)] if lora else []
    if disaggregated:
        plugins: list[JSON] = [
            {"type": t}
            for t in (
                "disagg-headers-handler",
                "prefill-filter",
                "decode-filter",
                "queue-scorer",
                "kv-cache-utilization-scorer",
                "active-request-scorer",
                "prefix-cache-scorer",
                "max-score-picker",
                "always-disagg-pd-decider",
            )
        ]
        plugins.append(
            {
                "type": "disagg-profile-handler",
                "parameters": {"deciders": {"prefill": "always-disagg-pd-decider"}},
            }
        )
        profiles = [
            {
                "name": "prefill",
                "plugins": [
                    _ref("prefill-filter"),
                    *lora_refs,
                    _ref("prefix-cache-scorer", 3),
                    _ref("queue-scorer", 2),
                    _ref("kv-cache-utilization-scorer", 2),
                    _ref("max-score-picker"),
                ],
            },
            {
                "name": "decode",
                "plugins": [
                    _ref("decode-filter"),
                    *lora_refs,
                    _ref("active-request-scorer", 2),
                    _ref("prefix-cache-scorer", 3),
                    _ref("max-score-picker"),
                ],
            },
        ]
    else:
        plugins = [
            {"type": t}
            for t in (
                "single-profile-handler",
                "queue-scorer",
                "kv-cache-utilization-scorer",
                "prefix-cache-scorer",
                "no-hit-lru-scorer",
                "max-score-picker",
            )
        ]
        profiles = [
            {
                "name": "default",
                "plugins": [
                    *lora_refs,
                    _ref("queue-scorer", 2),
                    _ref("kv-cache-utilization-scorer", 2),
                    _ref("prefix-cache-scorer", 3),
                    _ref("no-hit-lru-scorer", 2),
                    _ref("max-score-picker"),
                ],
            }
        ]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "plugins": [*plugins, *lora_plugins],
        "schedulingProfiles": profiles,
    }

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


# llm-d's scorer plugin types -> the `wharf-router gateway` scorer with the same job
GATEWAY_SCORERS = {
    "prefix-cache-scorer": "prefix",
    "queue-scorer": "queue",
    "active-request-scorer": "active",
    "kv-cache-utilization-scorer": "kv",
    "session-affinity-scorer": "session",
}
GATEWAY_WEIGHT_NAMES = ("prefix", "queue", "active", "kv", "session")
# the profile whose weights the gateway takes: it schedules decode (or combined) pods with them
_PROFILES = ("decode", "default")
_DEFAULT_WEIGHT = 1  # llm-d's weight of a pluginRef that names none


def gateway_weights(config: JSON) -> str:
    """An EndpointPickerConfig's scorer weights as `wharf-router gateway --weights`.

    The gateway has one set of weights: those of the `decode` profile, else `default`, else the
    first. Each pluginRef names a plugin (by `name`, else its `type`); llm-d's scorers map to the
    gateway's (`GATEWAY_SCORERS`), a scorer the profile does not name gets weight 0 (off), and
    plugins with no gateway counterpart (filters, pickers, `no-hit-lru-scorer`, LoRA affinity)
    are left out. Raises ValueError naming the field for a malformed config.
    """
    plugins = config.get("plugins") or []
    if not isinstance(plugins, list):
        raise ValueError("plugins: must be a list")
    types: dict[str, str] = {}
    for i, plugin in enumerate(plugins):
        if not isinstance(plugin, dict) or not isinstance(plugin.get("type"), str):
            raise ValueError(f"plugins[{i}].type: must be a string")
        types[str(plugin.get("name") or plugin["type"])] = plugin["type"]
    profiles = config.get("schedulingProfiles") or []
    if not isinstance(profiles, list) or not all(isinstance(p, dict) for p in profiles):
        raise ValueError("schedulingProfiles: must be a list of profiles")
    chosen = next(
        (p for want in _PROFILES for p in profiles if p.get("name") == want),
        profiles[0] if profiles else {},
    )
    weights = dict.fromkeys(GATEWAY_WEIGHT_NAMES, 0.0)
    for i, ref in enumerate(chosen.get("plugins") or []):
        if not isinstance(ref, dict):
            continue
        plugin_type = types.get(str(ref.get("pluginRef")), str(ref.get("pluginRef")))
        scorer = GATEWAY_SCORERS.get(plugin_type)
        if scorer is None:
            continue
        weight = ref.get("weight", _DEFAULT_WEIGHT)
        if (
            isinstance(weight, bool)
            or not isinstance(weight, int | float)
            or not 0 <= weight <= 1000
        ):
            raise ValueError(
                f"schedulingProfiles[{chosen.get('name')}].plugins[{i}].weight: "
                "must be a number between 0 and 1000"
            )
        weights[scorer] = float(weight)
    return ",".join(f"{k}={v:g}" for k, v in weights.items())

"""An inline EndpointPickerConfig becomes the gateway's `--weights` (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from wharf_api.llm.scheduler_config import default_scheduler_config, gateway_weights


def _config(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "plugins": [
            {"type": "queue-scorer"},
            {"name": "pc", "type": "prefix-cache-scorer"},
            {"type": "active-request-scorer"},
            {"type": "session-affinity-scorer"},
            {"type": "max-score-picker"},
        ],
        "schedulingProfiles": profiles,
    }


def test_the_decode_profile_gives_the_weights_and_unnamed_scorers_are_off() -> None:
    config = _config(
        [
            {"name": "prefill", "plugins": [{"pluginRef": "queue-scorer", "weight": 9}]},
            {
                "name": "decode",
                "plugins": [
                    {"pluginRef": "pc", "weight": 3},
                    {"pluginRef": "session-affinity-scorer"},  # llm-d's default weight, 1
                    {"pluginRef": "max-score-picker"},
                ],
            },
        ]
    )
    assert gateway_weights(config) == "prefix=3,queue=0,active=0,kv=0,session=1"


def test_kserves_default_configs_map_to_the_gateways_scorers() -> None:
    single = default_scheduler_config(disaggregated=False, lora=False)
    assert gateway_weights(single) == "prefix=3,queue=2,active=0,kv=2,session=0"
    pd = default_scheduler_config(disaggregated=True, lora=True)
    assert gateway_weights(pd) == "prefix=3,queue=0,active=2,kv=0,session=0"


def test_a_bad_weight_names_the_field() -> None:
    config = _config([{"name": "default", "plugins": [{"pluginRef": "pc", "weight": -1}]}])
    with pytest.raises(ValueError, match=r"schedulingProfiles\[default\]\.plugins\[0\]\.weight"):
        gateway_weights(config)
    with pytest.raises(ValueError, match=r"plugins\[0\]\.type"):
        gateway_weights({"plugins": [{"name": "x"}]})

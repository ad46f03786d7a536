"""Wharf's vLLM plugin: NIXL agents are built with a progress-thread delay.

The pure parts run against a stand-in for NIXL's bindings module (the workspace has no NIXL);
the last test loads the real plugin in the engine environment, the way vLLM does (by its entry
point), and builds a real NIXL agent through it.
"""

from __future__ import annotations

import subprocess
import types
from typing import Any

import pytest

from wharf_e2e.vllm_servers import require_engine
from wharf_llm_worker.vllm_plugin import (
    PROGRESS_DELAY_ENV,
    DelayedProgressBindings,
    apply_progress_delay,
    progress_delay_us,
)


class FakeConfig:
    pthrDelay = 0


def fake_api() -> Any:
    built: list[tuple[str, int]] = []

    def nixl_agent(name: str, config: FakeConfig) -> str:
        built.append((name, config.pthrDelay))
        return f"agent {name}"

    bindings = types.SimpleNamespace(nixlAgent=nixl_agent, DRAM_SEG=1)
    return types.SimpleNamespace(nixlBind=bindings, built=built)


def test_agents_are_built_with_the_delay_and_the_rest_passes_through() -> None:
    api = fake_api()
    assert apply_progress_delay(api, 1000)
    assert api.nixlBind.nixlAgent("prefill", FakeConfig()) == "agent prefill"
    assert api.built == [("prefill", 1000)]
    assert api.nixlBind.DRAM_SEG == 1


def test_applying_twice_wraps_once_with_the_latest_delay() -> None:
    api = fake_api()
    apply_progress_delay(api, 1000)
    apply_progress_delay(api, 250)
    assert isinstance(api.nixlBind, DelayedProgressBindings)
    assert not isinstance(api.nixlBind._bindings, DelayedProgressBindings)
    api.nixlBind.nixlAgent("decode", FakeConfig())
    assert api.built == [("decode", 250)]


def test_bindings_of_another_shape_are_left_alone() -> None:
    api = types.SimpleNamespace(nixlBind=types.SimpleNamespace())
    assert not apply_progress_delay(api, 1000)
    assert not isinstance(api.nixlBind, DelayedProgressBindings)


@pytest.mark.parametrize(("raw", "delay"), [(None, None), ("", None), ("0", 0), ("1000", 1000)])
def test_the_delay_comes_from_the_environment(raw: str | None, delay: int | None) -> None:
    assert progress_delay_us({} if raw is None else {PROGRESS_DELAY_ENV: raw}) == delay


@pytest.mark.parametrize("raw", ["1ms", "-1", "1000001"])
def test_a_bad_delay_is_named(raw: str) -> None:
    with pytest.raises(ValueError, match=PROGRESS_DELAY_ENV):
        progress_delay_us({PROGRESS_DELAY_ENV: raw})


# Run in the engine environment: vLLM's own plugin loader, then a real NIXL agent.
REAL = """
import os
os.environ["WHARF_NIXL_PROGRESS_DELAY_US"] = "1000"
from vllm.plugins import load_general_plugins
load_general_plugins()
import nixl._api as api
from wharf_llm_worker.vllm_plugin import DelayedProgressBindings
assert isinstance(api.nixlBind, DelayedProgressBindings), type(api.nixlBind)
inner, seen = api.nixlBind._bindings, []
class Spy:
    def __getattr__(self, name):
        return getattr(inner, name)
    def nixlAgent(self, name, config):
        seen.append(config.pthrDelay)
        return inner.nixlAgent(name, config)
api.nixlBind._bindings = Spy()
agent = api.nixl_agent("wharf-plugin-test", api.nixl_agent_config(backends=["UCX"]))
print("delays", seen)
"""


@pytest.mark.vllm
@pytest.mark.timeout(300)
def test_vllm_loads_the_plugin_and_a_real_nixl_agent_gets_the_delay() -> None:
    python = require_engine()
    done = subprocess.run(
        [str(python), "-c", REAL], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "delays [1000]" in done.stdout

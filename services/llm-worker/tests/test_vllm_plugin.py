"""Wharf's vLLM plugin: the process gets the AMX tile state on a CPU with AMX, and NIXL agents
are built with a progress-thread delay.

The pure parts run against stand-ins for torch.cpu and NIXL's bindings module (the workspace has
neither); the real tests load the plugin in the engine environment, the way vLLM does (by its
entry point), then read the process's tile permission from Linux and build a real NIXL agent.
"""

from __future__ import annotations

import logging
import platform
import subprocess
import types
from typing import Any

import pytest

from wharf_e2e.vllm_servers import require_engine
from wharf_llm_worker.vllm_plugin import (
    PROGRESS_DELAY_ENV,
    DelayedProgressBindings,
    apply_progress_delay,
    grant_amx_tiles,
    progress_delay_us,
)


class FakeCpu:
    def __init__(self, amx: bool, granted: bool = True) -> None:
        self.amx, self.granted, self.asked = amx, granted, 0

    def _is_amx_tile_supported(self) -> bool:
        return self.amx

    def _init_amx(self) -> bool:
        self.asked += 1
        return self.granted


def test_a_cpu_with_amx_asks_for_the_tiles() -> None:
    cpu = FakeCpu(amx=True)
    assert grant_amx_tiles(cpu) is True
    assert cpu.asked == 1


def test_a_cpu_without_amx_asks_nothing() -> None:
    cpu = FakeCpu(amx=False)
    assert grant_amx_tiles(cpu) is None
    assert cpu.asked == 0


def test_a_refusal_is_logged_with_the_workaround(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert grant_amx_tiles(FakeCpu(amx=True, granted=False)) is False
    assert "SIGILL" in caplog.text and "float32" in caplog.text


def test_a_torch_without_the_amx_calls_is_named(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert grant_amx_tiles(types.SimpleNamespace()) is None
    assert "AMX" in caplog.text


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


# Run in the engine environment: Linux's answer (arch_prctl ARCH_GET_XCOMP_PERM, x86-64) on
# whether this process may use AMX tile data (feature 18), before and after vLLM loads plugins.
AMX = """
import ctypes
import torch
from vllm.plugins import load_general_plugins
libc = ctypes.CDLL(None, use_errno=True)
def tiles_granted():
    mask = ctypes.c_ulong(0)
    assert libc.syscall(158, 0x1022, ctypes.byref(mask)) == 0, ctypes.get_errno()
    return bool(mask.value >> 18 & 1)
before = tiles_granted()
load_general_plugins()
print("amx", torch.cpu._is_amx_tile_supported(), before, tiles_granted())
"""


@pytest.mark.vllm
@pytest.mark.timeout(300)
def test_vllm_loads_the_plugin_and_the_process_may_use_amx_tiles() -> None:
    """Without the grant, vLLM's AMX attention kernel dies of SIGILL on an engine's first step
    when that step computes one token (a decode worker after a NIXL pull)."""
    if platform.machine() != "x86_64":
        pytest.skip(f"AMX is an x86-64 feature; this machine is {platform.machine()}")
    python = require_engine()
    done = subprocess.run(
        [str(python), "-c", AMX], capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(row for row in done.stdout.splitlines() if row.startswith("amx "))
    _, supported, before, after = line.split()
    if supported == "True":
        # Nothing else asked before the plugin did, so the test sees the plugin's own grant.
        assert (before, after) == ("False", "True")
    else:
        assert after == "False"  # a CPU without AMX: nothing asked for, nothing granted

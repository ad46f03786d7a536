"""kill -9 of a replica under a request loop through the ingress: with a second replica ready no
request fails, and the service recovers (the killed replica is restarted and ready again)."""

from __future__ import annotations

import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from abuse_kit import SERVICE

from wharf_e2e.probes import ProbeCounter
from wharf_e2e.servers import WharfDaemon
from wharf_e2e.testing import wait_until

# the first test of a session also waits for the servers to start (sklearn imports on busy cores)
pytestmark = [pytest.mark.abuse, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

LOOPS = 2
BODY = {"instances": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]}


def _loop(daemon: WharfDaemon, stop: threading.Event) -> list[str]:
    """Requests one after the other until `stop`; the failures, described."""
    failures: list[str] = []
    target = daemon.target(SERVICE)
    with target.client(timeout_s=60) as client:
        count = 0
        while not stop.is_set() or count == 0:
            count += 1
            try:
                answer = client.post(f"/v1/models/{SERVICE}:predict", json=BODY)
                if answer.status_code != 200 or len(answer.json()["predictions"]) != 2:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError as exc:
                failures.append(repr(exc))
            stop.wait(0.02)  # paced: the replica's restart needs the CPU too
    failures.append(f"of {count}")  # the last entry: how many were sent
    return failures


def test_kill_a_replica_under_load(daemon: WharfDaemon, probes: ProbeCounter) -> None:
    wait_until(lambda: len(daemon.ready_replicas(SERVICE)) == 2, "two ready replicas", 180)
    stop = threading.Event()
    with ThreadPoolExecutor(LOOPS) as pool:
        loops = [pool.submit(_loop, daemon, stop) for _ in range(LOOPS)]
        try:
            victim = daemon.ready_replicas(SERVICE)[0]["pid"]
            os.kill(victim, signal.SIGKILL)
            with probes.probe("kill -9: the service recovers", "ingress"):
                wait_until(
                    lambda: (
                        len(ready := daemon.ready_replicas(SERVICE)) == 2
                        and victim not in [r["pid"] for r in ready]
                    ),
                    "the killed replica replaced and ready",
                    180,
                    every_s=0.3,
                )
        finally:
            stop.set()
        results = [loop.result(timeout=120) for loop in loops]
    for failures in results:
        sent = int(failures.pop().removeprefix("of "))
        probes.add("kill -9: requests during the kill", "ingress", sent, sent - len(failures))
        assert failures == [], failures

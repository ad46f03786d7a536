"""The activator: a replica for each request, holding requests while a revision cold-starts.

The ingress asks `acquire` for a replica of a component (Knative's activator does the same in
front of a revision at zero): the traffic split picks the revision, the least-loaded ready
replica serves, and a request that finds none waits, counted as demand so the autoscaler starts
one, until a replica is ready or the activation timeout passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Protocol

from wharf_datapath.balancer import least_loaded
from wharf_local.state import Component, Replica, Revision

TICK_S = 0.2


class ActivationTimeout(Exception):
    """No replica became ready for a held request in time (or its revision cannot run)."""


class Activator(Protocol):
    """What the ingress needs of a runtime to place one request."""

    async def acquire(self, comp: Component) -> tuple[Revision, Replica]: ...

    def release(self, rev: Revision, replica: Replica) -> None: ...

    def mark_unreachable(self, rev: Revision, replica: Replica) -> None: ...


class LocalActivator:
    def __init__(self, activation_timeout_s: float) -> None:
        self.activation_timeout_s = activation_timeout_s

    async def acquire(self, comp: Component) -> tuple[Revision, Replica]:
        deadline = time.monotonic() + self.activation_timeout_s
        while True:
            rev = comp.pick_revision() or comp.latest
            if rev is not None and rev.failure is not None and not rev.ready_replicas():
                raise ActivationTimeout(f"{rev.name}: {rev.failure[1]}")
            replicas = rev.ready_replicas() if rev is not None else []
            if rev is not None and replicas:
                idx = least_loaded([r.inflight for r in replicas])
                assert idx is not None
                replica = replicas[idx]
                replica.inflight += 1
                rev.inflight += 1
                rev.last_request = time.monotonic()
                rev.requests.append(rev.last_request)
                return rev, replica
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ActivationTimeout(
                    f"no ready replica for {comp.plan.service_name} after "
                    f"{self.activation_timeout_s:.0f}s"
                )
            await self._wait(rev, remaining)

    async def _wait(self, rev: Revision | None, remaining: float) -> None:
        if rev is None:
            await asyncio.sleep(min(remaining, TICK_S))
            return
        changed = rev.changed
        rev.waiting += 1
        rev.last_request = time.monotonic()
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), min(remaining, 1.0))
        finally:
            rev.waiting -= 1

    def release(self, rev: Revision, replica: Replica) -> None:
        replica.inflight -= 1
        rev.inflight -= 1

    def mark_unreachable(self, rev: Revision, replica: Replica) -> None:
        """A replica refused a connection: it is no longer ready (its process is gone)."""
        if replica.state == "ready":
            replica.state = "starting"
            rev.notify()

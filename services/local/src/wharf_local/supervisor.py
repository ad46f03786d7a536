"""Runs one replica's process to the end: start, readiness probe, exit, crash backoff.

A replica is started with its ports in its args (when the runtime is Wharf's model server) and
in `$PORT` (KServe's contract for custom containers, as Knative sets it). A process that stays
unready while it listens on another port is reported once, with the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import httpx

from wharf_api.status import PORT_MISMATCH
from wharf_local import backoff
from wharf_local.processes import ManagedProcess, listening_ports, probe_ready
from wharf_local.state import EventType, Replica, Revision

log = logging.getLogger("wharf.local")

PROBE_INTERVAL_S = 0.1
# how often a ready replica is checked for having been marked unreachable
REPROBE_INTERVAL_S = 0.5
# how long an unready replica may take before its listening ports are checked
PORT_CHECK_AFTER_S = 5.0

Emit = Callable[[EventType, str, str, str], None]


def port_mismatch_message(index: int, listening: Sequence[int], expected: int) -> str:
    ports = ", ".join(f":{p}" for p in sorted(listening))
    return (
        f"replica {index} listens on {ports} but wharf expects :{expected} (given to it as "
        f"$PORT); make the server listen on $PORT, or pass --http_port=$(PORT) in the "
        "container's args"
    )


class Supervisor:
    def __init__(self, probe_client: httpx.AsyncClient, on_exit: Callable[[int], None]) -> None:
        self._probe = probe_client
        self._on_exit = on_exit

    async def run(
        self,
        rev: Revision,
        replica: Replica,
        argv: Sequence[str],
        env: Mapping[str, str],
        log_path: Path,
        emit: Emit,
    ) -> None:
        """Run the replica until its process exits or the task is cancelled (scale-down)."""
        proc = ManagedProcess(argv, env, log_path)
        replica.process = proc
        try:
            code = await self._supervise(rev, replica, proc, emit)
        except asyncio.CancelledError:
            # scaled down or deleted: stop the process, then leave
            await proc.stop()
            replica.state = "stopped"
            rev.notify()
            raise
        except Exception as exc:
            # the supervision itself failed (the process could not be started: no memory, no
            # threads left; a probe raised): handled as a crash, so that the replica is
            # restarted after a backoff rather than left "starting" with no one watching it
            log.exception("replica %d of %s: supervision failed", replica.index, rev.name)
            try:
                await proc.stop()
            except Exception:  # the backoff below must happen in any case
                log.exception("replica %d of %s: stopping it failed", replica.index, rev.name)
            if replica.state == "draining":  # it was on its way out: not restarted
                replica.state = "stopped"
                rev.notify()
                return
            self._back_off(
                rev, replica, proc, f"could not be run: {type(exc).__name__}: {exc}", emit
            )
            return
        if replica.state == "draining" or proc.stopping:
            replica.state = "stopped"
            return
        self._back_off(rev, replica, proc, f"exited with code {code}", emit)

    async def _supervise(
        self, rev: Revision, replica: Replica, proc: ManagedProcess, emit: Emit
    ) -> int:
        """Start the process, probe it into service (and back, when the ingress marked it
        unreachable) until it exits; its exit code."""
        await proc.start()
        grpc = f" grpc :{replica.grpc_port}" if replica.grpc_port else ""
        emit(
            "Normal",
            "Started",
            f"replica {replica.index} pid {proc.pid} http :{replica.http_port}{grpc}",
            rev.name,
        )
        exited = asyncio.ensure_future(proc.wait())
        # the ports of this process, not the replica's when it ends (a restart takes new ones):
        # connections pooled to them, HTTP and gRPC, go with it
        ports = sorted(_own_ports(replica))
        exited.add_done_callback(lambda _: [self._on_exit(port) for port in ports])
        await self._until_ready(rev, replica, proc, exited, emit)
        while not exited.done():
            # the ingress marks a replica that refused a connection as starting again:
            # probe it back into service if its process is still there
            await asyncio.wait({exited}, timeout=REPROBE_INTERVAL_S)
            if replica.state == "starting" and not exited.done():
                await self._until_ready(rev, replica, proc, exited, emit)
        return await exited

    def _back_off(
        self, rev: Revision, replica: Replica, proc: ManagedProcess, what: str, emit: Emit
    ) -> None:
        """The replica ended without being asked to: restart it after a backoff that grows
        with the crashes in a row."""
        replica.state = "backoff"
        replica.crashes = backoff.crashes_in_a_row(replica.crashes, proc.uptime())
        delay = backoff.restart_delay(replica.crashes)
        replica.restart_at = time.monotonic() + delay
        replica.task = None
        tail = log_tail(proc.log_path)
        emit(
            "Warning",
            "BackOff",
            f"replica {replica.index} {what}; restarting in "
            f"{delay:.0f}s (crash {replica.crashes} in a row){tail}",
            rev.name,
        )
        rev.last_crash = f"{what}{tail}"
        rev.notify()

    async def _until_ready(
        self,
        rev: Revision,
        replica: Replica,
        proc: ManagedProcess,
        exited: asyncio.Future[int],
        emit: Emit,
    ) -> None:
        started = time.monotonic()
        reported = False
        while not exited.done():
            if await probe_ready(self._probe, replica.http_port):
                replica.state = "ready"
                rev.ready_once = True
                rev.last_crash = None
                rev.stuck = None
                rev.notify()
                return
            if not reported and time.monotonic() - started > PORT_CHECK_AFTER_S:
                listening = listening_ports(proc.pid)
                elsewhere = [p for p in listening if p not in _own_ports(replica)]
                # only when its HTTP port is not among them: a server may listen on more
                # ports (metrics) and simply be slow to answer its readiness probe
                if elsewhere and replica.http_port not in listening:
                    reported = True
                    message = port_mismatch_message(replica.index, elsewhere, replica.http_port)
                    rev.stuck = (PORT_MISMATCH, message)
                    emit("Warning", PORT_MISMATCH, message, rev.name)
                    rev.notify()
            await asyncio.wait({exited}, timeout=PROBE_INTERVAL_S)


def _own_ports(replica: Replica) -> set[int]:
    return {replica.http_port} | ({replica.grpc_port} if replica.grpc_port else set())


def log_tail(path: Path, lines: int = 3) -> str:
    """The last lines of a log, on one line, for an event message."""
    try:
        text = path.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return (": " + " | ".join(line.strip() for line in text)) if text else ""


async def stop_all(replicas: Sequence[Replica]) -> None:
    """Cancel the replicas' tasks and stop their processes."""
    stops = []
    for replica in replicas:
        if replica.task is not None:
            replica.task.cancel()
        if replica.process is not None:
            stops.append(replica.process.stop())
    with contextlib.suppress(Exception):
        await asyncio.gather(*stops)

"""Run one model-server (or transformer) process: its own process group, a log file, a readiness
probe, and a clean stop of the whole group."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import shutil
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import httpx

READY_PATH = "/v2/health/ready"
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    # a model server must not outlive the daemon that supervises it, even after a SIGKILL
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def resolve_command(command: Sequence[str]) -> list[str]:
    """The argv to run: a bare program name is looked up beside this Python first (the
    workspace's console scripts), then on PATH."""
    if not command:
        raise ValueError("the container has no command to run locally")
    program = command[0]
    if os.sep not in program:
        beside = Path(sys.executable).parent / program
        found = str(beside) if beside.exists() else shutil.which(program)
        if found is None:
            raise FileNotFoundError(
                f"command {program!r} not found beside {sys.executable} or on PATH"
            )
        program = found
    return [program, *command[1:]]


class ManagedProcess:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str], log_path: Path) -> None:
        self.argv = list(argv)
        self.env = dict(env)
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        self.started_at = 0.0
        self.stopping = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    async def start(self) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                env={**os.environ, **self.env},
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.started_at = time.monotonic()

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()

    def uptime(self) -> float:
        """Seconds since the process started; 0 for one that never started (it ran for no
        time, so a backoff counts it as a crash in a row)."""
        return time.monotonic() - self.started_at if self.proc is not None else 0.0

    def _signal_group(self, sig: int) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    async def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM to the process group, SIGKILL after `grace_s`; waits for the exit."""
        self.stopping = True
        if self.proc is None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), grace_s)
        except TimeoutError:
            self._signal_group(signal.SIGKILL)
            await self.proc.wait()
        # children that ignored the group signal (none should) go too
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)


async def probe_ready(client: httpx.AsyncClient, port: int) -> bool:
    """True when the server answers its readiness route with 200 (or has no such route)."""
    try:
        resp = await client.get(f"http://127.0.0.1:{port}{READY_PATH}", timeout=2.0)
    except httpx.HTTPError:
        return False
    return resp.status_code == 200 or resp.status_code == 404


_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp


def listening_ports(pid: int | None) -> list[int]:
    """TCP ports that a process (and its children) listens on, from /proc; [] elsewhere.

    Used to tell a user which port their server listens on when it is not the one it was given.
    """
    if pid is None:
        return []
    inodes: set[str] = set()
    for proc_dir in _process_tree(pid):
        with contextlib.suppress(OSError):
            for fd in (proc_dir / "fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:["):
                        inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if len(fields) > 9 and fields[3] == _LISTEN and fields[9] in inodes:
                    ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return sorted(ports)


def _process_tree(pid: int) -> list[Path]:
    """/proc folders of `pid` and of the processes in its session (its children)."""
    out = [Path(f"/proc/{pid}")]
    with contextlib.suppress(OSError):
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == pid:
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = (entry / "stat").read_text()
                # fields after the command name: state ppid pgrp session ...
                rest = stat[stat.rindex(")") + 2 :].split()
                if int(rest[3]) == pid:
                    out.append(entry)
    return out

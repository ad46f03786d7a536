"""The CLI's side of the daemon: start it on first use, call its control API, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from typing import Any

import httpx

from wharf_local.home import Home

START_TIMEOUT_S = 30.0


class DaemonError(RuntimeError):
    pass


class Daemon:
    def __init__(self, home: Home) -> None:
        self.home = home

    def _client(self) -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.home.socket)),
            base_url="http://wharf",
            timeout=30.0,
        )

    def alive(self) -> bool:
        if not self.home.socket.exists():
            return False
        try:
            with self._client() as c:
                return c.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    def pid(self) -> int | None:
        try:
            return int(self.home.pid_file.read_text().strip())
        except (OSError, ValueError):
            return None

    def ensure(self) -> None:
        """Start the daemon in the background unless it answers already."""
        if self.alive():
            return
        self.home.root.mkdir(parents=True, exist_ok=True)
        self.home.daemon_log.parent.mkdir(parents=True, exist_ok=True)
        with self.home.daemon_log.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "wharf_local.daemon"],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env={**os.environ, "WHARF_HOME": str(self.home.root)},
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise DaemonError(
                    f"the wharf daemon exited with code {proc.returncode}; see {self.home.daemon_log}"
                )
            if self.alive():
                return
            time.sleep(0.05)
        raise DaemonError(
            f"the wharf daemon did not start in {START_TIMEOUT_S:.0f}s; see {self.home.daemon_log}"
        )

    def call(self, method: str, path: str, json: Any = None) -> Any:
        with self._client() as c:
            resp = c.request(method, path, json=json)
        if resp.status_code >= 400:
            raise DaemonError(resp.json().get("error", resp.text))
        return resp.json()

    def stop(self, timeout_s: float = 30.0) -> bool:
        """Ask the daemon to stop everything; returns False when none was running."""
        pid = self.pid()
        if self.alive():
            with contextlib.suppress(httpx.HTTPError):
                self.call("POST", "/shutdown")
        elif pid is None or not _running(pid) or not _is_daemon(pid):
            # No daemon: a stale pid file may name a process that reused the number.
            return False
        elif pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while pid is not None and _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if pid is not None and _running(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return True


def _is_daemon(pid: int) -> bool:
    """Whether the process is a wharf daemon (its command line names `wharf_local.daemon`)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return b"wharf_local.daemon" in f.read()
    except OSError:
        return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (our own exited child) counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True

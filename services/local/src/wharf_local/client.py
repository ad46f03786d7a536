"""The CLI's side of the daemon: start it on first use, call its control API, stop it."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Literal

import httpx

from wharf_local.home import Home
from wharf_local.security import private_dir

START_TIMEOUT_S = 30.0
# Reads and applies answer at once. A delete or a shutdown waits for processes to stop, and an
# LLM worker may take its whole drain (30 s by default, up to an hour) plus its teardown: those
# calls wait as long as the caller says, by default until the work is done, as kubectl does.
CALL_TIMEOUT_S = 30.0


class DaemonError(RuntimeError):
    pass


class Daemon:
    def __init__(self, home: Home) -> None:
        self.home = home

    def _client(self, wait_s: float | Literal["read"] | None = "read") -> httpx.Client:
        return httpx.Client(
            transport=httpx.HTTPTransport(uds=str(self.home.socket)),
            base_url="http://wharf",
            timeout=httpx.Timeout(
                CALL_TIMEOUT_S, read=CALL_TIMEOUT_S if wait_s == "read" else wait_s
            ),
        )

    def alive(self) -> bool:
        # a plain connect first: nothing listening (a killed daemon's socket) is not an error
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.home.socket))
            except OSError:
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

    def clean_stale(self) -> list[str]:
        """Remove the socket and pid file of a daemon that is gone; the names removed.

        Nothing is removed while the pid file names a live wharf daemon (it may be starting).
        """
        pid = self.pid()
        if pid is not None and _running(pid) and _is_daemon(pid):
            return []
        removed = []
        for path in (self.home.socket, self.home.pid_file):
            if path.exists() or path.is_symlink():
                path.unlink(missing_ok=True)
                removed.append(path.name)
        return removed

    def not_running(self) -> str:
        """Why no daemon answers, after removing what a killed one left behind."""
        removed = self.clean_stale()
        left = f" (removed the stale {' and '.join(removed)})" if removed else ""
        return (
            f"the wharf daemon is not running under {self.home.root}{left}; "
            "`wharf up -f FILE` starts it"
        )

    def ensure(self) -> None:
        """Start the daemon in the background unless it answers already."""
        if self.alive():
            return
        self.clean_stale()
        private_dir(self.home.root)
        self.home.daemon_log.parent.mkdir(parents=True, exist_ok=True)
        start = self.home.daemon_log.stat().st_size if self.home.daemon_log.exists() else 0
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
                self.clean_stale()
                raise DaemonError(self._exit_reason(proc.returncode, start))
            if self.alive():
                return
            time.sleep(0.05)
        raise DaemonError(
            f"the wharf daemon did not start in {START_TIMEOUT_S:.0f}s; see {self.home.daemon_log}"
        )

    def _exit_reason(self, code: int, start: int) -> str:
        """The daemon's own error lines from this start, or where to look."""
        try:
            with self.home.daemon_log.open("rb") as f:
                f.seek(start)
                text = f.read().decode(errors="replace")
        except OSError:
            text = ""
        errors = [line.split(": ", 1)[-1] for line in text.splitlines() if " ERROR " in f" {line} "]
        if errors:
            return f"the wharf daemon did not start: {'; '.join(errors)}"
        return f"the wharf daemon exited with code {code}; see {self.home.daemon_log}"

    def call(
        self,
        method: str,
        path: str,
        json: Any = None,
        *,
        wait_s: float | Literal["read"] | None = "read",
    ) -> Any:
        """One control API call. `wait_s` bounds the wait for the answer: "read" is
        CALL_TIMEOUT_S, None no bound."""
        try:
            with self._client(wait_s) as c:
                resp = c.request(method, path, json=json)
        except httpx.ReadTimeout as exc:
            raise DaemonError(
                f"the wharf daemon did not answer in {exc.request.extensions['timeout']['read']:g}s;"
                " it goes on in the background"
            ) from exc
        except httpx.TransportError as exc:
            if not self.alive():
                raise DaemonError(self.not_running()) from exc
            raise DaemonError(f"the wharf daemon did not answer: {exc}") from exc
        if resp.status_code >= 400:
            try:
                raise DaemonError(resp.json().get("error", resp.text))
            except ValueError:
                raise DaemonError(f"{resp.status_code}: {resp.text}") from None
        return resp.json()

    def stop(self, timeout_s: float | None = None) -> bool:
        """Ask the daemon to stop everything; returns False when none was running.

        It waits for the daemon to exit, which it does once every process it started has (each
        within its own kill timeout); after `timeout_s`, when given, the daemon is killed, and
        the processes it had not stopped yet get SIGTERM as it dies (PR_SET_PDEATHSIG) and
        finish draining on their own, after this has returned.
        """
        pid = self.pid()
        if self.alive():
            with contextlib.suppress(httpx.HTTPError, DaemonError):
                self.call("POST", "/shutdown")
        elif pid is None or not _running(pid) or not _is_daemon(pid):
            # No daemon: a stale pid file may name a process that reused the number.
            self.clean_stale()
            return False
        elif pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while (
            pid is not None and _running(pid) and (deadline is None or time.monotonic() < deadline)
        ):
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

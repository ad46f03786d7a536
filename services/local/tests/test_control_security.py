"""The control socket is the daemon's user's alone: private folder and socket, peer uid checked."""

from __future__ import annotations

import asyncio
import os
import socket
import stat
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wharf_local.security import OwnerOnlyProtocol, bind_private_socket, private_dir

NOBODY = 65534


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_home_is_0700_and_the_socket_0600_even_with_an_open_umask(tmp_path: Path) -> None:
    home = tmp_path / "a" / "home"
    old = os.umask(0)
    try:
        private_dir(home)
        sock = bind_private_socket(home / "wharf.sock")
    finally:
        os.umask(old)
    try:
        assert _mode(home) == 0o700
        assert _mode(home / "wharf.sock") == 0o600
    finally:
        sock.close()


def test_an_existing_open_home_is_tightened(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    private_dir(home)
    assert _mode(home) == 0o700


async def _ok(_: Request) -> Response:
    return JSONResponse({"ok": True})


@pytest.fixture
def open_socket() -> Iterator[Path]:
    """A control server with the daemon's protocol, on a socket any user can reach (test only:
    the daemon's own folder is 0700, so only the peer check is left to refuse others)."""
    folder = Path(tempfile.mkdtemp(prefix="wharf-peercred-", dir="/tmp"))
    folder.chmod(0o777)
    path = folder / "wharf.sock"
    sock = bind_private_socket(path)
    path.chmod(0o666)
    server = uvicorn.Server(
        uvicorn.Config(
            Starlette(routes=[Route("/healthz", _ok)]),
            http=OwnerOnlyProtocol,
            log_level="warning",
            lifespan="off",
        )
    )
    server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
    thread = threading.Thread(target=asyncio.run, args=(server.serve(sockets=[sock]),))
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.01)
        yield path
    finally:
        server.should_exit = True
        thread.join()
        path.unlink(missing_ok=True)
        folder.rmdir()


def _get(path: Path) -> bytes:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(path))
        s.sendall(b"GET /healthz HTTP/1.1\r\nhost: wharf\r\nconnection: close\r\n\r\n")
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def _get_as(uid: int, path: Path) -> bytes:
    """The answer to a request sent from a child process running as `uid`."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to `uid`, ask, report, exit
        try:
            os.close(read)
            os.setgid(uid)
            os.setuid(uid)
            answer = _get(path)
        except Exception as exc:
            answer = f"ERROR {exc!r}".encode()
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    out = b""
    with os.fdopen(read, "rb") as r:
        out = r.read()
    os.waitpid(pid, 0)
    return out


def test_the_owner_is_served(open_socket: Path) -> None:
    assert _get(open_socket).startswith(b"HTTP/1.1 200")


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root")
def test_another_user_is_refused_by_its_peer_uid(open_socket: Path) -> None:
    answer = _get_as(NOBODY, open_socket)
    assert answer.startswith(b"HTTP/1.1 403"), answer
    assert f"uid {NOBODY} may not use this wharf daemon".encode() in answer


@pytest.mark.skipif(os.getuid() != 0, reason="switching to another uid needs root")
def test_another_user_cannot_reach_a_socket_in_a_private_home(tmp_path: Path) -> None:
    home = Path(tempfile.mkdtemp(prefix="wharf-home-", dir="/tmp"))
    try:
        private_dir(home)
        sock = bind_private_socket(home / "wharf.sock")
        try:
            answer = _get_as(NOBODY, home / "wharf.sock")
        finally:
            sock.close()
        assert answer.startswith(b"ERROR PermissionError"), answer
    finally:
        (home / "wharf.sock").unlink(missing_ok=True)
        home.rmdir()

"""Who may use the control socket: the daemon's own user only.

`$WHARF_HOME` is created 0700 and the socket 0600 (bound under a umask that leaves no window in
which it is wider), and every connection's peer uid is read with `SO_PEERCRED`: another user's
connection gets a 403 and is closed before a request is read. A ServingRuntime's command runs as
the daemon's user, so whoever can post to `/apply` can run commands as that user.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import struct
from pathlib import Path
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger("wharf.daemon")

_UCRED = struct.Struct("3i")  # pid, uid, gid


def private_dir(path: Path) -> None:
    """Create `path` (and missing parents) with the folder itself 0700; tighten it if it exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def bind_private_socket(path: Path) -> socket.socket:
    """A listening unix socket at `path`, mode 0600 from the moment it exists."""
    path.unlink(missing_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    finally:
        os.umask(old)
    path.chmod(0o600)
    sock.listen(128)
    sock.setblocking(False)
    return sock


def peer_uid(sock: socket.socket) -> int | None:
    """The uid of the process at the other end of a unix socket (None where unknown)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    except (OSError, AttributeError):
        return None
    _pid, uid, _gid = _UCRED.unpack(raw)
    return int(uid)


def allowed(uid: int | None) -> bool:
    return uid == os.getuid()


def _forbidden(uid: int | None) -> bytes:
    body = json.dumps(
        {"error": f"uid {uid} may not use this wharf daemon (it serves uid {os.getuid()} only)"}
    ).encode()
    head = (
        "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    )
    return head.encode() + body


class OwnerOnlyProtocol(H11Protocol):
    """HTTP/1.1 over the control socket, for connections from the daemon's own uid only."""

    refused_uid: int | None = None
    refused = False

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        sock = transport.get_extra_info("socket")
        uid = peer_uid(sock) if sock is not None else None
        if not allowed(uid):
            log.warning("refused a control connection from uid %s", uid)
            self.refused, self.refused_uid = True, uid

    def data_received(self, data: bytes) -> None:
        if not self.refused:
            super().data_received(data)
        elif not self.transport.is_closing():
            # the request is read (and dropped) first, so closing does not reset the answer
            self.transport.write(_forbidden(self.refused_uid))
            self.transport.close()

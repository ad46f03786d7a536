"""Processes a test started and must not leave behind: found by a marker in their environment or
by a file they hold open under a folder (Ray's agents get an environment of their own, but keep
their logs open in their Ray temp folder)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from pathlib import Path


def _holds_a_file_under(pid: str, folders: Sequence[str]) -> bool:
    with contextlib.suppress(OSError):
        for fd in Path("/proc", pid, "fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(fd).startswith(tuple(folders)):
                    return True
    return False


def processes_of(env_entry: str, folders: Sequence[str], spare: Sequence[int] = ()) -> list[str]:
    """`pid: command` of every process on this machine (but this one and `spare`) whose
    environment holds `env_entry` (`NAME=value`) or that holds a file under one of `folders`."""
    found = []
    skip = {os.getpid(), *spare}
    needle = env_entry.encode()
    prefixes = [str(folder).rstrip("/") + "/" for folder in folders]
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in skip:
            continue
        with contextlib.suppress(OSError):
            environ = (entry / "environ").read_bytes().split(b"\0")
            if needle in environ or _holds_a_file_under(entry.name, prefixes):
                cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                found.append(f"{entry.name}: {cmd[:160]}")
    return found


def assert_none_left(
    env_entry: str, folders: Sequence[str], timeout_s: float = 60.0, spare: Sequence[int] = ()
) -> None:
    deadline = time.monotonic() + timeout_s
    while (left := processes_of(env_entry, folders, spare)) and time.monotonic() < deadline:
        time.sleep(1)
    assert not left, "processes left behind:\n" + "\n".join(left)

"""Ray's temp folder, made or taken as this user's own before Ray starts.

`wharf up` names a group's folder under /tmp from a hash of the group's path (short, because
Ray's socket paths grow from it), so the name can be guessed. Whoever makes the folder first
owns Ray's sockets, logs and session files in it: a folder that someone else made, or a link
planted in its place, would let another user on the machine reach the group or redirect its
writes. /tmp is sticky, so once the folder is ours nobody else can rename or replace it.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path


class TempDirError(ValueError):
    pass


def claim_private_dir(path: Path) -> None:
    """Make ``path`` (mode 0700), or take it if this user already owns it as a real folder,
    tightening its mode to 0700. Raises TempDirError naming the path for a link, a file, or a
    folder another user owns."""
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise TempDirError(f"--ray-temp-dir {path}: cannot create it: {exc.strerror}") from exc
    # O_NOFOLLOW: a link swapped in between mkdir and here is refused, never followed.
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        kind = "a link" if path.is_symlink() else "not a folder"
        raise TempDirError(
            f"--ray-temp-dir {path} is {kind}; refusing it (remove it, or pick another path)"
        ) from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode):  # pragma: no cover - O_DIRECTORY refuses these
            raise TempDirError(f"--ray-temp-dir {path} is not a folder")
        if info.st_uid != os.geteuid():
            raise TempDirError(
                f"--ray-temp-dir {path} belongs to user id {info.st_uid}, not to this user "
                f"({os.geteuid()}); refusing to share Ray's sockets with it"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)

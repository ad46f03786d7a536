"""Ray's temp folder, made or taken as this user's own before Ray starts.

`wharf up` names a group's folder under /tmp from a hash of the group's path (short, because
Ray's socket paths grow from it), so the name can be guessed. Whoever makes the folder first
owns Ray's sockets, logs and session files in it: a folder that someone else made, or a link
planted in its place, would let another user on the machine reach the group or redirect its
writes. /tmp is sticky, so once the folder is ours nobody else can rename or replace it.
Ray itself makes the temp root it is given mode 0777 when a node starts, so Ray is given a
child of this folder (`rayargs.RAY_TEMP_CHILD`): the 0700 parent keeps everyone else out.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class TempDirError(ValueError):
    pass


def claim_private_dir(path: Path, may_hold: tuple[str, ...] = ()) -> None:
    """Make ``path`` (mode 0700), or take it if this user already owns it as a real folder,
    tightening its mode to 0700. Raises TempDirError naming the path for a link, a file, a
    folder another user owns, a shared (sticky) folder, and an open folder that holds more than
    ``may_hold`` (a folder of something else, given by mistake: never made private)."""
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
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            kind = "a link" if exc.errno == errno.ELOOP or path.is_symlink() else "not a folder"
            raise TempDirError(
                f"--ray-temp-dir {path} is {kind}; refusing it (remove it, or pick another path)"
            ) from exc
        try:  # most likely another user's private folder (EACCES): say whose
            owner = path.lstat().st_uid
        except OSError:
            owner = -1
        if owner not in (-1, os.geteuid()):
            raise TempDirError(_not_ours(path, owner)) from exc
        raise TempDirError(f"--ray-temp-dir {path}: cannot open it: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISDIR(info.st_mode):  # pragma: no cover - O_DIRECTORY refuses these
            raise TempDirError(f"--ray-temp-dir {path} is not a folder")
        if info.st_uid != os.geteuid():
            raise TempDirError(_not_ours(path, info.st_uid))
        if info.st_mode & stat.S_ISVTX:
            # a shared folder (as /tmp is) that happens to be ours, as when running as root
            raise TempDirError(
                f"--ray-temp-dir {path} is a shared (sticky) folder; give a folder of its own "
                "inside it"
            )
        if stat.S_IMODE(info.st_mode) != 0o700:
            others = sorted(set(os.listdir(fd)) - set(may_hold))
            if others:
                raise TempDirError(
                    f"--ray-temp-dir {path} is open to others and holds other things "
                    f"({', '.join(others[:3])}); remove it (a folder Ray used before Wharf "
                    "made it private) or give a folder of its own"
                )
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _not_ours(path: Path, owner: int) -> str:
    return (
        f"--ray-temp-dir {path} belongs to user id {owner}, not to this user "
        f"({os.geteuid()}); refusing to share Ray's sockets with it"
    )


def check_child(path: Path, child: str) -> None:
    """Ray's own folder inside the claimed one: absent, or this user's real folder. One left by
    someone else (while the parent was open, before it was claimed) is refused."""
    try:
        info = (path / child).lstat()
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise TempDirError(f"--ray-temp-dir {path}: {child} in it is not a folder; remove it")
    if info.st_uid != os.geteuid():
        raise TempDirError(_not_ours(path / child, info.st_uid))

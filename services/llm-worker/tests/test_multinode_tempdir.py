"""Ray's temp folder is this user's own before Ray starts: made 0700, or taken if it is already
ours (mode tightened); a link, a file or another user's folder is refused, and the command exits
2 naming it before any Ray process starts."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from wharf_llm_worker.multinode.rayargs import MAX_TEMP_DIR_CHARS
from wharf_llm_worker.multinode.tempdir import TempDirError, check_child, claim_private_dir


@pytest.fixture
def short_root() -> Iterator[Path]:
    """A short folder under /tmp: --ray-temp-dir takes at most 36 characters."""
    root = Path(tempfile.mkdtemp(prefix="wtd-", dir="/tmp"))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_a_new_folder_is_made_private(short_root: Path) -> None:
    target = short_root / "ray"
    old = os.umask(0)  # a permissive umask must not widen it
    try:
        claim_private_dir(target)
    finally:
        os.umask(old)
    assert target.is_dir() and _mode(target) == 0o700


def test_our_own_folder_is_taken_and_tightened(short_root: Path) -> None:
    target = short_root / "ray"
    target.mkdir()
    target.chmod(0o777)
    (target / "ray").mkdir()  # Ray's folder from an earlier run
    claim_private_dir(target, may_hold=("ray",))
    assert _mode(target) == 0o700
    assert (target / "ray").is_dir()
    claim_private_dir(target, may_hold=("ray",))  # every rank claims it: the second is a no-op
    assert _mode(target) == 0o700


def test_an_open_folder_of_something_else_is_not_made_private(short_root: Path) -> None:
    """--ray-temp-dir naming a folder in use (/var/lib, say, as root) by mistake: refused."""
    target = short_root / "data"
    target.mkdir()
    target.chmod(0o755)
    (target / "other").write_text("")
    with pytest.raises(
        TempDirError, match=r"is open to others and holds other things \(other\); remove it"
    ):
        claim_private_dir(target, may_hold=("ray",))
    assert _mode(target) == 0o755


def test_a_link_is_refused_and_its_target_left_alone(short_root: Path) -> None:
    elsewhere = short_root / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    elsewhere.chmod(0o755)
    link = short_root / "ray"
    link.symlink_to(elsewhere)
    with pytest.raises(TempDirError, match=f"--ray-temp-dir {link} is a link"):
        claim_private_dir(link)
    assert _mode(elsewhere) == 0o755


def test_a_file_is_refused(short_root: Path) -> None:
    target = short_root / "ray"
    target.write_text("")
    with pytest.raises(TempDirError, match="is not a folder"):
        claim_private_dir(target)


def test_another_users_folder_is_refused(short_root: Path) -> None:
    if os.geteuid() == 0:
        target = short_root / "ray"
        target.mkdir()
        target.chmod(0o777)
        os.chown(target, 65534, 65534)  # nobody's, as if another user made it first
        owner = 65534
    else:
        target, owner = Path("/"), 0  # root's folder, which this user does not own
    with pytest.raises(TempDirError, match=f"belongs to user id {owner}, not to this user"):
        claim_private_dir(target)
    if owner == 65534:
        assert _mode(target) == 0o777  # not ours to change


def test_another_users_private_folder_is_named_as_theirs(short_root: Path) -> None:
    """The likeliest attack: the guessable name made first, 0700, by someone else. Opening it
    fails (EACCES); the error still says whose it is."""
    if os.geteuid() != 0:
        pytest.skip("acting as a second user needs root here (CI runs as root)")
    target = short_root / "ray"
    target.mkdir()
    target.chmod(0o700)  # root's, and private
    short_root.chmod(0o755)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child is user 65534, to whom root's 0700 folder is closed
        code = 1
        try:
            os.close(read_end)
            os.setgid(65534)
            os.setuid(65534)
            try:
                claim_private_dir(target)
                message = "claimed"
            except TempDirError as exc:
                message = str(exc)
            os.write(write_end, message.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        message = pipe.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert message == (
        f"--ray-temp-dir {target} belongs to user id 0, not to this user (65534); "
        "refusing to share Ray's sockets with it"
    )


def test_a_folder_that_cannot_be_made_is_named(short_root: Path) -> None:
    with pytest.raises(TempDirError, match="cannot create it"):
        claim_private_dir(short_root / "missing" / "ray")


JOIN = ("--join", "127.0.0.1:1", "--node-rank", "1", "--ray-temp-dir")


def test_the_command_refuses_a_linked_temp_folder_before_ray_starts(short_root: Path) -> None:
    elsewhere = short_root / "elsewhere"
    elsewhere.mkdir()
    link = short_root / "r"
    link.symlink_to(elsewhere)
    assert len(str(link)) <= MAX_TEMP_DIR_CHARS
    done = subprocess.run(
        [sys.executable, "-m", "wharf_llm_worker.cli", "multinode", *JOIN, str(link)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "RAY_AUTH_TOKEN_PATH": "", "RAY_AUTH_TOKEN": ""},
    )
    assert done.returncode == 2, done.stderr
    assert f"--ray-temp-dir {link} is a link" in done.stderr
    assert list(elsewhere.iterdir()) == []  # nothing written through the link


def test_rays_folder_inside_must_be_ours_and_real(short_root: Path) -> None:
    check_child(short_root, "ray")  # absent: Ray makes it
    (short_root / "ray").mkdir()
    check_child(short_root, "ray")  # ours, from an earlier run
    (short_root / "ray").rmdir()
    (short_root / "ray").symlink_to(short_root / "elsewhere")
    with pytest.raises(TempDirError, match="ray in it is not a folder"):
        check_child(short_root, "ray")
    if os.geteuid() == 0:
        (short_root / "ray").unlink()
        (short_root / "ray").mkdir()
        os.chown(short_root / "ray", 65534, 65534)
        with pytest.raises(TempDirError, match="belongs to user id 65534"):
            check_child(short_root, "ray")


def test_a_shared_sticky_folder_is_refused_even_when_ours(short_root: Path) -> None:
    target = short_root / "shared"
    target.mkdir()
    target.chmod(0o1777)  # as /tmp is, for root
    with pytest.raises(TempDirError, match="is a shared \\(sticky\\) folder"):
        claim_private_dir(target)
    assert stat.S_IMODE(target.lstat().st_mode) == 0o1777  # left as it was

"""Every script finds uv the way a new machine has it: installed by `pip install --user` into a
folder that is not on PATH. Runs the real helper and the real quickstart with uv absent from
PATH (PATH=/usr/bin:/bin, a HOME without uv), uv placed only where pip would have put it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HELPER = REPO / "scripts" / "lib" / "uv.sh"
SCRIPTS = [
    REPO / "scripts" / "quickstart",
    REPO / "scripts" / "test",
    REPO / "scripts" / "wharf",
    REPO / ".ci" / "run",
]
BARE_PATH = "/usr/bin:/bin"


def _real_uv() -> Path:
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        pytest.skip("no uv binary to place (run the tests with `uv run`)")
    return Path(found).resolve()


def _bare_env(home: Path, **extra: str) -> dict[str, str]:
    """A new user's environment: no uv on PATH, a fresh HOME; uv's caches shared with this
    run so nothing is downloaded again."""
    env = {
        "PATH": BARE_PATH,
        "HOME": str(home),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "UV_CACHE_DIR": os.environ.get("UV_CACHE_DIR", str(Path.home() / ".cache" / "uv")),
        "UV_PYTHON_INSTALL_DIR": os.environ.get(
            "UV_PYTHON_INSTALL_DIR", str(Path.home() / ".local" / "share" / "uv" / "python")
        ),
    }
    env.update(extra)
    return env


def _place_uv(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "uv").symlink_to(_real_uv())
    return folder


def _which_uv_after_helper(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    script = f'source "{HELPER}" && command -v uv && uv --version && bash -c "command -v uv"'
    return subprocess.run(
        ["/bin/bash", "-c", script], env=env, capture_output=True, text=True, timeout=60
    )


def _require_bare_path_without_uv() -> None:
    if any((Path(d) / "uv").exists() for d in BARE_PATH.split(":")):
        pytest.skip(f"uv is installed in {BARE_PATH}: uv cannot be made absent from PATH")
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 for the helper's user-base lookup")


def test_every_script_sources_the_helper() -> None:
    for script in SCRIPTS:
        text = script.read_text()
        assert "scripts/lib/uv.sh" in text, f"{script.relative_to(REPO)} does not use the helper"
        assert "pip install" not in text, f"{script.relative_to(REPO)} installs uv on its own"


def test_helper_finds_uv_in_user_local_bin(tmp_path: Path) -> None:
    _require_bare_path_without_uv()
    home = tmp_path / "home"
    local_bin = _place_uv(home / ".local" / "bin")
    done = _which_uv_after_helper(_bare_env(home))
    assert done.returncode == 0, done.stderr
    first, version, child = done.stdout.splitlines()
    assert first == str(local_bin / "uv")
    assert version.startswith("uv ")
    assert child == str(local_bin / "uv")  # exported: what the script starts finds it too


def test_helper_finds_uv_in_the_python_user_base(tmp_path: Path) -> None:
    _require_bare_path_without_uv()
    home = tmp_path / "home"
    home.mkdir()
    base = tmp_path / "user-base"
    _place_uv(base / "bin")
    done = _which_uv_after_helper(_bare_env(home, PYTHONUSERBASE=str(base)))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(base / "bin" / "uv")


def test_helper_finds_uv_in_its_own_venv(tmp_path: Path) -> None:
    _require_bare_path_without_uv()
    home = tmp_path / "home"
    _place_uv(home / ".cache" / "wharf" / "uv-venv" / "bin")
    done = _which_uv_after_helper(_bare_env(home))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == str(home / ".cache" / "wharf" / "uv-venv" / "bin" / "uv")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.mark.e2e
@pytest.mark.slow
def test_quickstart_runs_with_uv_absent_from_path(tmp_path: Path) -> None:
    """The issue as a new user met it: `uv: command not found` at quickstart's first uv call."""
    _require_bare_path_without_uv()
    home = tmp_path / "home"
    _place_uv(home / ".local" / "bin")  # where `pip install --user uv` put it, not on PATH
    env = _bare_env(
        home,
        WHARF_HOME=str(tmp_path / "wharf"),
        WHARF_INGRESS_PORT=str(_free_port()),
        WHARF_INGRESS_GRPC_PORT=str(_free_port()),
    )
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "quickstart")],
            env=env,
            capture_output=True,
            text=True,
            timeout=110,
        )
        assert "command not found" not in done.stderr, done.stderr
        assert done.returncode == 0, done.stderr[-3000:]
        assert "sklearn-iris is ready" in done.stdout
        assert "Try it:" in done.stdout
    finally:
        subprocess.run([str(REPO / "scripts" / "wharf"), "down"], env=env, timeout=60, check=False)

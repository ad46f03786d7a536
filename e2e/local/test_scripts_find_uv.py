"""Every script and every README `make` target finds uv the way a new machine has it: installed
by `pip install --user` into a folder that is not on PATH. Runs the real helper, `make uv` and
the real quickstart with uv absent from PATH (PATH=/usr/bin:/bin, a HOME without uv), uv placed
only where pip would have put it, and reads each README `make` target's recipe (`make -n`) for
a bare `uv`."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HELPER = REPO / "scripts" / "lib" / "uv.sh"
WRAPPER = REPO / "scripts" / "uv"
SCRIPTS = [
    WRAPPER,
    REPO / "scripts" / "quickstart",
    REPO / "scripts" / "test",
    REPO / "scripts" / "wharf",
    REPO / ".ci" / "run",
]
BARE_PATH = "/usr/bin:/bin"
# `uv` as a command word: at the start of a shell command, not inside a path or `$(UV)`
BARE_UV = re.compile(r"(?:^|[\s;&|(`])uv(?=\s|$)")


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
    for folder in BARE_PATH.split(":"):
        if (Path(folder) / "uv").exists():
            pytest.skip(
                f"{folder}/uv exists: with PATH={BARE_PATH} uv is still on PATH, so this machine "
                "cannot show a run without it"
            )
    if not Path("/usr/bin/python3").exists():
        pytest.skip("no /usr/bin/python3 for the helper's user-base lookup")


def _bare_make() -> str:
    for folder in BARE_PATH.split(":"):
        if (Path(folder) / "make").exists():
            return f"{folder}/make"
    pytest.skip(f"no make in {BARE_PATH}")


def _readme_make_targets() -> list[str]:
    """The targets the README tells people to run: `make TARGET` lines of its code blocks."""
    readme = (REPO / "README.md").read_text()
    targets = re.findall(r"^make ([a-z][a-z-]*)", readme, flags=re.MULTILINE)
    assert targets, "the README names no make target"
    return list(dict.fromkeys(targets))


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


def test_the_wrapper_runs_the_real_uv_with_its_arguments(tmp_path: Path) -> None:
    _require_bare_path_without_uv()
    home = tmp_path / "home"
    _place_uv(home / ".local" / "bin")
    # scripts/ on PATH too: the wrapper, named uv, must not find and run itself
    env = _bare_env(home, PATH=f"{WRAPPER.parent}:{BARE_PATH}")
    done = subprocess.run(
        [str(WRAPPER), "pip", "--help"], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "installing it with pip" not in done.stderr  # found where pip put it, not installed
    assert "Usage: uv pip" in done.stdout  # the arguments reached uv


def test_every_readme_make_target_runs_uv_through_the_helper(tmp_path: Path) -> None:
    """`make -n` prints each recipe as the shell would run it: `$(UV)` expanded, nothing run."""
    make = _bare_make()
    env = _bare_env(tmp_path)  # no UV in the environment: the Makefile's own default
    targets = _readme_make_targets()
    assert {"install", "lint", "crds"} <= set(targets)
    for target in targets:
        done = subprocess.run(
            [make, "-n", "-C", str(REPO), target],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, f"make -n {target}: {done.stderr}"
        for line in done.stdout.splitlines():
            assert not BARE_UV.search(line), f"make {target} runs a bare uv: {line}"
        if target in ("install", "lint", "crds", "uv"):
            assert f"{WRAPPER} " in done.stdout, (target, done.stdout)


def test_no_makefile_recipe_names_a_bare_uv() -> None:
    """Every target, the README's or not: recipe lines (tab-indented) say $(UV), never uv."""
    for number, line in enumerate((REPO / "Makefile").read_text().splitlines(), 1):
        if line.startswith("\t"):
            assert not BARE_UV.search(line), f"Makefile:{number} runs a bare uv: {line.strip()}"


def test_a_readme_make_target_runs_with_uv_absent_from_path(tmp_path: Path) -> None:
    """`make uv` as the README lists it, on a machine where only `pip install --user` put uv."""
    _require_bare_path_without_uv()
    make = _bare_make()
    home = tmp_path / "home"
    _place_uv(home / ".local" / "bin")
    done = subprocess.run(
        [make, "-C", str(REPO), "uv"],
        env=_bare_env(home),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "command not found" not in done.stderr, done.stderr
    assert "installing it with pip" not in done.stderr  # found where pip put it
    assert done.returncode == 0, done.stderr
    assert re.search(r"^uv \d+\.\d+", done.stdout, flags=re.MULTILINE), done.stdout


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

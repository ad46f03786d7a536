"""The background tool set-up of scripts/test and its gate (wharf_e2e.setup_gate): which tests wait
for it and in what order they run, the wait itself against stand-in chains, and the chain script
and scripts/test run with stand-ins for every tool (nothing is built here)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from wharf_e2e import crds, setup_gate
from wharf_e2e.pytest_plugin import _needs_setup
from wharf_e2e.setup_gate import SetupGate, needs_setup, order

REPO = Path(__file__).resolve().parents[2]
CHAIN = REPO / "scripts" / "lib" / "test-setup.sh"
SCRIPTS_TEST = REPO / "scripts" / "test"
K8S_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok")
# Left off the stand-in PATH, so that every step takes its no-toolchain or cached path.
TOOLCHAINS = {"go", "gofmt", "npm", "npx", "node", "uv", "uvx"}
TOOL_VARS = (
    "WHARF_K8S_BIN",
    "WHARF_KUBE_TOOLS",
    "WHARF_THIRD_PARTY_CRDS",
    "WHARF_K8S_ASSETS",
    "WHARF_SETUP_GATE",
    "WHARF_SETUP_FOREGROUND",
)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No tool variable set, and whatever the wait loads into os.environ is undone."""
    saved = dict(os.environ)
    for name in TOOL_VARS:
        monkeypatch.delenv(name, raising=False)
    yield
    os.environ.clear()
    os.environ.update(saved)


# --- which tests wait, and the order ------------------------------------------------------------


@pytest.mark.parametrize(
    ("markers", "fixtures", "expected"),
    [
        ((), ("tmp_path",), False),
        (("slow", "e2e"), ("tmp_path", "monkeypatch"), False),
        (("kube",), (), True),
        (("setup_tools",), (), True),
        ((), ("kube_cluster",), True),
        ((), ("kustomize_build", "kube_tools"), True),  # a fixture's own fixtures count
        ((), ("azurite_endpoint",), True),
        ((), ("gcs_endpoint",), True),
        ((), ("oci_registry",), True),
        ((), ("oci_auth_registry",), True),
    ],
)
def test_what_needs_the_set_up(markers: tuple[str], fixtures: tuple[str], expected: bool) -> None:
    assert needs_setup(markers, fixtures) is expected


def test_the_plugin_classifies_a_collected_item_by_its_markers(
    request: pytest.FixtureRequest,
) -> None:
    assert not _needs_setup(request.node)
    request.node.add_marker(pytest.mark.setup_tools)
    assert _needs_setup(request.node)


@dataclass(frozen=True)
class Item:
    name: str
    setup: bool = False
    engine: bool = False
    pool: bool = False


ITEMS = [
    Item("a"),
    Item("kube1", setup=True),
    Item("pool1", engine=True, pool=True),
    Item("b"),
    Item("engine1", engine=True),
    Item("engine-kube", engine=True, setup=True),
    Item("lint", setup=True),
    Item("pool2", engine=True, pool=True),
    Item("c"),
]


def _order(items: list[Item], pending: bool) -> list[str]:
    ordered = order(
        items,
        needs_setup=lambda i: i.setup,
        engine=lambda i: i.engine,
        pool_user=lambda i: i.pool,
        gate_pending=pending,
    )
    return [i.name for i in ordered]


def test_while_the_set_up_runs_its_tests_come_after_the_others_and_before_vllm() -> None:
    assert _order(ITEMS, pending=True) == [
        "a",
        "b",
        "c",
        "kube1",
        "lint",
        "engine1",
        "engine-kube",
        "pool1",
        "pool2",
    ]


def test_without_a_pending_set_up_only_the_vllm_tests_move() -> None:
    assert _order(ITEMS, pending=False) == [
        "a",
        "kube1",
        "b",
        "lint",
        "c",
        "engine1",
        "engine-kube",
        "pool1",
        "pool2",
    ]


# --- the wait -----------------------------------------------------------------------------------


def _start_chain(gate: Path, body: str) -> subprocess.Popen[bytes]:
    """A stand-in for scripts/lib/test-setup.sh, in a process group of its own as scripts/test
    starts it, its pid in the gate folder."""
    script = gate / "chain.sh"
    script.write_text(f"set -u\ngate={gate}\n{body}\n")
    log = (gate / "log").open("wb")
    proc = subprocess.Popen(["bash", str(script)], stdout=log, stderr=log, start_new_session=True)
    log.close()
    (gate / "pid").write_text(f"{proc.pid}\n")
    return proc


def _reap(proc: subprocess.Popen[bytes]) -> None:
    # The chain is this process's child: reap it as soon as it exits, as init would.
    threading.Thread(target=proc.wait, daemon=True).start()


def test_the_wait_ends_with_the_chain_and_loads_its_variables(
    tmp_path: Path, clean_env: None
) -> None:
    os.environ["WHARF_KUBE_TOOLS"] = "/set/by/the/user"
    proc = _start_chain(
        tmp_path,
        'sleep 2\necho "building, please wait" >&2\n'
        'printf "WHARF_K8S_BIN=/k8s/bin\\nWHARF_KUBE_TOOLS=/built/tools\\n" > "$gate/env"\n'
        'printf "install-test-tools=0\\nk8s-binaries=0\\n" > "$gate/status.tmp"\n'
        'mv "$gate/status.tmp" "$gate/status"',
    )
    _reap(proc)
    gate = SetupGate(tmp_path)
    assert gate.pending()
    lines: list[str] = []
    result = gate.wait(lines.append, poll_s=0.1)
    assert not gate.pending()
    assert result.steps == {"install-test-tools": "0", "k8s-binaries": "0"}
    assert result.failed == {} and result.note() == ""
    assert os.environ["WHARF_K8S_BIN"] == "/k8s/bin"
    assert os.environ["WHARF_KUBE_TOOLS"] == "/set/by/the/user"  # what was set wins
    assert lines[0].startswith("waiting for the tool set-up") and str(tmp_path / "log") in lines[0]
    assert lines[1].startswith("the tool set-up is done after") and "min" in lines[1]
    assert len(lines) == 2
    # Once per process: a second wait returns the same result without a word.
    assert gate.wait(lines.append) is result and len(lines) == 2
    assert gate.ended_well()


@pytest.fixture
def fresh_crd_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """crds.third_party_crd_dir() asked anew: its cache may hold an earlier test's answer (the
    real CRDs), and must not keep this test's."""
    crds.third_party_crd_dir.cache_clear()
    yield
    crds.third_party_crd_dir.cache_clear()


def test_a_failed_step_reports_the_end_of_the_log_and_reaches_the_skip_reason(
    tmp_path: Path, clean_env: None, fresh_crd_dir: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _start_chain(
        tmp_path,
        'echo "go: downloading k8s.io/kubernetes" >&2\n'
        'echo "compile: killed: out of memory" >&2\n'
        "echo \"scripts/test: building the Kubernetes control plane failed; tests marked 'kube' "
        'will be skipped" >&2\n'
        'echo "go: sigs.k8s.io/gateway-api: proxy unreachable" >&2\n'
        'printf "install-test-tools=0\\nk8s-binaries=2\\nthird-party-crds=1\\n" > "$gate/status"',
    )
    _reap(proc)
    gate = SetupGate(tmp_path)
    lines: list[str] = []
    result = gate.wait(lines.append, poll_s=0.1)
    assert result.failed == {"k8s-binaries": "2", "third-party-crds": "1"}
    assert not gate.ended_well()
    assert "k8s-binaries: 2" in result.note()
    assert "compile: killed: out of memory" in result.note()
    assert any("compile: killed: out of memory" in line for line in lines)
    assert any("\nscripts/test: building the Kubernetes" in line for line in lines)
    # A tool's reason names only the step that makes it.
    assert "third-party-crds" not in result.note("k8s-binaries")
    assert "k8s-binaries" not in result.note("third-party-crds")
    assert result.note("install-test-tools") == ""

    # A reader of the tools adds it to its reason: here the CRDs, missing because of that run.
    # Its wait reports through the plugin's reporter: kept here, off the real terminal.
    empty = tmp_path / "no-crds"
    empty.mkdir()
    monkeypatch.setenv("WHARF_SETUP_GATE", str(tmp_path))
    monkeypatch.setenv("WHARF_THIRD_PARTY_CRDS", str(empty))
    monkeypatch.setattr(setup_gate, "_gates", {})
    reported: list[str] = []
    monkeypatch.setattr(setup_gate, "_reporter", [reported.append])
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as raised:
        crds.require_third_party_crd_dir()
    assert "third-party-crds: 1" in str(raised.value)
    assert "proxy unreachable" in str(raised.value)
    assert "k8s-binaries: 2" not in str(raised.value)
    assert any("proxy unreachable" in line for line in reported)


def test_what_a_step_skipped_is_told_once_done(tmp_path: Path, clean_env: None) -> None:
    note = (
        "scripts/test: no Go toolchain and no WHARF_K8S_ASSETS: tests marked 'kube' will be skipped"
    )
    proc = _start_chain(
        tmp_path,
        f'echo "{note}" >&2\n'
        'printf "install-test-tools=0\\nk8s-binaries=skipped\\n" > "$gate/status"',
    )
    _reap(proc)
    lines: list[str] = []
    result = SetupGate(tmp_path).wait(lines.append, poll_s=0.1)
    assert result.failed == {} and result.note() == ""
    assert note in lines


def test_a_chain_that_dies_without_a_status_ends_the_wait_as_a_failure(
    tmp_path: Path, clean_env: None
) -> None:
    proc = _start_chain(tmp_path, 'echo "half way" >&2\nkill -9 $$')
    proc.wait()
    result = SetupGate(tmp_path).wait(lambda line: None, poll_s=0.1)
    assert list(result.failed) == ["set-up"]
    assert "half way" in result.note()


def test_a_chain_still_running_past_the_bound_ends_the_wait_as_a_failure(
    tmp_path: Path, clean_env: None
) -> None:
    proc = _start_chain(tmp_path, 'echo "stuck fetching" >&2\nexec sleep 300')
    try:
        result = SetupGate(tmp_path).wait(lambda line: None, poll_s=0.05, max_s=0.5)
        assert "still running after" in result.failed["set-up"]
        assert "stuck fetching" in result.note("k8s-binaries")  # every tool may be missing
    finally:
        proc.kill()
        proc.wait()


def test_the_env_file_sets_only_the_variables_the_steps_provide(
    tmp_path: Path, clean_env: None
) -> None:
    (tmp_path / "env").write_text("WHARF_K8S_BIN=/k8s/bin\nPATH=/evil\nLD_PRELOAD=/evil.so\n")
    (tmp_path / "status").write_text("k8s-binaries=0\n")
    path = os.environ["PATH"]
    result = SetupGate(tmp_path).wait(lambda line: None)
    assert result.env == {"WHARF_K8S_BIN": "/k8s/bin"}
    assert os.environ["PATH"] == path and "LD_PRELOAD" not in os.environ


def test_remove_deletes_the_gate_files_and_nothing_else(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    for name in ("log", "pid", "env", "status", "owner"):
        (gate / name).write_text("x")
    SetupGate(gate).remove()
    assert not gate.exists()
    gate.mkdir()
    (gate / "log").write_text("x")
    (gate / "precious").write_text("x")
    SetupGate(gate).remove()
    assert sorted(p.name for p in gate.iterdir()) == ["precious"]


def test_stop_ends_the_chain_and_what_it_started(tmp_path: Path) -> None:
    proc = _start_chain(tmp_path, 'sleep 300 &\necho "$!" > "$gate/child"\nwait')
    gate = SetupGate(tmp_path)
    while not (tmp_path / "child").exists() or not (tmp_path / "child").read_text().strip():
        assert proc.poll() is None
        time.sleep(0.05)
    child = int((tmp_path / "child").read_text())
    assert gate.stop()
    assert proc.wait(timeout=30) == -15
    for _ in range(300):  # the child is not ours to wait for: poll until it is gone
        if not setup_gate._alive(child):
            break
        time.sleep(0.1)
    assert not setup_gate._alive(child)
    assert not gate.stop()  # nothing left to stop


def test_only_the_first_process_to_claim_the_gate_owns_it(tmp_path: Path) -> None:
    assert SetupGate(tmp_path).claim()
    assert not SetupGate(tmp_path).claim()
    assert (tmp_path / "owner").read_text().strip() == str(os.getpid())


def test_without_a_gate_nothing_waits(clean_env: None) -> None:
    assert setup_gate.current_gate() is None
    assert setup_gate.wait_for_setup() is None
    assert setup_gate.failure_note(setup_gate.K8S_BINARIES) == ""


# --- the chain script and scripts/test, with stand-in tools ------------------------------------


@pytest.fixture(scope="module")
def bare_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A PATH with the system's commands but no Go, Node or uv."""
    folder = tmp_path_factory.mktemp("bin")
    for system in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not Path(system).is_dir():
            continue
        for exe in Path(system).iterdir():
            target = folder / exe.name
            if exe.name not in TOOLCHAINS and not target.exists() and os.access(exe, os.X_OK):
                target.symlink_to(exe)
    return str(folder)


@pytest.fixture
def stand_ins(tmp_path: Path, bare_path: str) -> dict[str, str]:
    """The environment for a chain whose every step is quick: the test tools' cache filled with
    stand-ins (no npm, no go: those steps only say so), the control plane from WHARF_K8S_ASSETS,
    a stand-in uv that records how pytest would have been started (and with STUB_UV_HOLD=1 stays,
    as pytest would, until killed). `with_npm` adds a stand-in npm, so that Azurite is to be
    installed: it records its pid and sleeps STUB_NPM_SLEEP seconds."""
    cache = tmp_path / "cache"
    lint = cache / "lint-tools"
    (lint / "bin").mkdir(parents=True)
    for tool in ("hadolint", "shellcheck"):
        (lint / "bin" / tool).write_text("#!/bin/sh\n")
        (lint / "bin" / tool).chmod(0o755)
    requirements = (REPO / "scripts" / "lib" / "lint-tools.txt").read_bytes()
    (lint / "requirements.sha256").write_text(hashlib.sha256(requirements).hexdigest() + "\n")
    assets = tmp_path / "assets"
    assets.mkdir()
    for binary in K8S_BINARIES:
        (assets / binary).write_text("#!/bin/sh\n")
        (assets / binary).chmod(0o755)
    uv_dir = tmp_path / "uv-bin"
    uv_dir.mkdir()
    (uv_dir / "uv").write_text(
        "#!/bin/sh\n"
        'if [ "$1" = run ]; then\n'
        '  env > "$STUB_PYTEST_ENV.tmp" && mv "$STUB_PYTEST_ENV.tmp" "$STUB_PYTEST_ENV"\n'
        '  [ -z "${STUB_UV_HOLD:-}" ] || exec sleep 300\n'
        "fi\n"
    )
    (uv_dir / "uv").chmod(0o755)
    npm_dir = tmp_path / "npm-bin"
    npm_dir.mkdir()
    (npm_dir / "npm").write_text(
        '#!/bin/sh\necho $$ > "$STUB_NPM_PID"\nexec sleep "${STUB_NPM_SLEEP:-0}"\n'
    )
    (npm_dir / "npm").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHARF_") and k != "VIRTUAL_ENV"}
    return {
        **env,
        "HOME": str(tmp_path / "home"),
        "PATH": f"{uv_dir}:{bare_path}",
        "WHARF_CACHE": str(cache),
        "WHARF_K8S_CACHE": str(tmp_path / "k8s-cache"),
        "WHARF_CRD_CACHE": str(tmp_path / "crd-cache"),
        "WHARF_K8S_ASSETS": str(assets),
        "WHARF_LLM_ENGINE_VENV": str(tmp_path / "engine"),
        "STUB_PYTEST_ENV": str(tmp_path / "pytest.env"),
        "STUB_NPM_PID": str(tmp_path / "npm.pid"),
        "NPM_DIR": str(npm_dir),
        # third-party-crds.sh finds /usr/local/go off PATH too: keep it off the network.
        "GOPROXY": "off",
        "GOMODCACHE": str(tmp_path / "gomodcache"),
    }


def test_the_chain_writes_the_variables_its_steps_provide_and_their_outcomes(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    done = subprocess.run(
        ["bash", str(CHAIN), str(gate), str(os.getpid())],
        env=stand_ins,
        capture_output=True,
        text=True,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert setup_gate.parse_lines((gate / "env").read_text()) == {
        "WHARF_K8S_BIN": stand_ins["WHARF_K8S_ASSETS"]
    }
    status = setup_gate.parse_lines((gate / "status").read_text())
    assert status["install-test-tools"] == "0"
    assert status["k8s-binaries"] == "0"
    assert status["kube-tools"] == "skipped"  # no Go toolchain
    if Path("/usr/local/go/bin/go").exists():
        # third-party-crds.sh finds Go there: nothing cached and no module proxy, so the CRDs
        # cannot be fetched, and the chain says so.
        assert status["third-party-crds"] not in ("0", "skipped")
        assert "scripts/test: fetching the third-party CRDs failed" in done.stderr
    else:
        assert status["third-party-crds"] == "skipped"
        assert "scripts/test: no Go toolchain: the tests that need the real" in done.stderr
    assert not (gate / "status.tmp").exists()


def test_a_variable_set_beforehand_skips_its_step(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    gate = tmp_path / "gate"
    gate.mkdir()
    crds_dir = tmp_path / "crds"
    crds_dir.mkdir()
    env = {
        **stand_ins,
        "WHARF_K8S_BIN": "/the/users/k8s",
        "WHARF_THIRD_PARTY_CRDS": str(crds_dir),
    }
    done = subprocess.run(
        ["bash", str(CHAIN), str(gate), str(os.getpid())],
        env=env,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr
    assert (gate / "env").read_text() == ""
    status = setup_gate.parse_lines((gate / "status").read_text())
    assert status == {
        "install-test-tools": "0",
        "k8s-binaries": "skipped",
        "kube-tools": "skipped",
        "third-party-crds": "skipped",
    }


def _scripts_test(env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(
        ["bash", str(SCRIPTS_TEST), "-q"], env=env, capture_output=True, text=True, timeout=110
    )
    assert done.returncode == 0, done.stderr
    return setup_gate.parse_lines(Path(env["STUB_PYTEST_ENV"]).read_text())


def test_scripts_test_runs_the_chain_in_the_foreground_when_asked(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    crds_dir = tmp_path / "crds"
    crds_dir.mkdir()
    env = {**stand_ins, "WHARF_SETUP_FOREGROUND": "1", "WHARF_THIRD_PARTY_CRDS": str(crds_dir)}
    env["PATH"] = f"{stand_ins['NPM_DIR']}:{env['PATH']}"  # Azurite to install: still here
    seen = _scripts_test(env)
    assert seen["WHARF_K8S_BIN"] == stand_ins["WHARF_K8S_ASSETS"]
    assert seen["WHARF_THIRD_PARTY_CRDS"] == str(crds_dir)
    assert "WHARF_SETUP_GATE" not in seen


def test_scripts_test_runs_the_chain_in_the_foreground_when_nothing_is_to_be_built(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    crds_dir = tmp_path / "crds"
    crds_dir.mkdir()
    # No npm, no Go: nothing these stand-ins' steps could build; the control plane is given.
    env = {**stand_ins, "WHARF_THIRD_PARTY_CRDS": str(crds_dir), "WHARF_SETUP_GATE": "/stale"}
    seen = _scripts_test(env)
    assert seen["WHARF_K8S_BIN"] == stand_ins["WHARF_K8S_ASSETS"]
    assert "WHARF_SETUP_GATE" not in seen


def test_a_failed_control_plane_build_stops_scripts_test_in_the_foreground(
    tmp_path: Path, stand_ins: dict[str, str]
) -> None:
    env = {**stand_ins, "WHARF_SETUP_FOREGROUND": "1", "WHARF_K8S_ASSETS": str(tmp_path)}
    done = subprocess.run(
        ["bash", str(SCRIPTS_TEST), "-q"], env=env, capture_output=True, text=True, timeout=110
    )
    assert done.returncode != 0
    assert "lacks one of" in done.stderr
    assert not Path(env["STUB_PYTEST_ENV"]).exists()  # pytest never started


@pytest.fixture
def background(tmp_path: Path, stand_ins: dict[str, str]) -> Iterator[dict[str, str]]:
    """scripts/test with Azurite to install (so the chain goes to the background), its stand-in
    npm sleeping STUB_NPM_SLEEP, and the stand-in pytest staying until the test kills it."""
    crds_dir = tmp_path / "crds"
    crds_dir.mkdir()
    env = {
        **stand_ins,
        "WHARF_THIRD_PARTY_CRDS": str(crds_dir),
        "STUB_UV_HOLD": "1",
        "PATH": f"{stand_ins['NPM_DIR']}:{stand_ins['PATH']}",
    }
    yield env


def _start_scripts_test(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    proc = subprocess.Popen(
        ["bash", str(SCRIPTS_TEST), "-q"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen = Path(env["STUB_PYTEST_ENV"])
    for _ in range(1000):
        if seen.exists():
            break
        assert proc.poll() is None, "scripts/test ended before starting pytest"
        time.sleep(0.1)
    return proc, setup_gate.parse_lines(seen.read_text())


def _gone(pid: int) -> bool:
    for _ in range(300):  # not our child: poll until it is gone
        if not setup_gate._alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_scripts_test_runs_the_chain_in_the_background_behind_a_gate(
    background: dict[str, str], clean_env: None
) -> None:
    proc, seen = _start_scripts_test(background)
    folder = Path(seen["WHARF_SETUP_GATE"])
    try:
        # Not exported to pytest: in the background the gate's env file provides it.
        assert "WHARF_K8S_BIN" not in seen
        assert (folder / "pid").read_text().strip().isdigit()
        result = SetupGate(folder).wait(lambda line: None, poll_s=0.1)
        assert result.steps["install-test-tools"] == "0", result.log_tail
        assert result.steps["k8s-binaries"] == "0", result.log_tail
        assert os.environ["WHARF_K8S_BIN"] == background["WHARF_K8S_ASSETS"]
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(folder, ignore_errors=True)


def test_the_background_chain_leads_its_own_group_and_dies_with_pytest(
    background: dict[str, str], clean_env: None
) -> None:
    proc, seen = _start_scripts_test({**background, "STUB_NPM_SLEEP": "300"})
    folder = Path(seen["WHARF_SETUP_GATE"])
    try:
        npm_pid = Path(background["STUB_NPM_PID"])
        for _ in range(1000):  # the slow step has started
            if npm_pid.exists() and npm_pid.read_text().strip():
                break
            time.sleep(0.1)
        chain = int((folder / "pid").read_text())
        npm = int(npm_pid.read_text())
        assert os.getpgid(chain) == chain  # its own process group ...
        assert os.getpgid(npm) == chain  # ... holding what it started
        assert chain != os.getpgrp()
        # pytest (the process scripts/test became) killed outright: no plugin to stop the chain.
        proc.kill()
        proc.wait()
        assert _gone(chain)
        assert _gone(npm)
        assert not (folder / "status").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(folder, ignore_errors=True)

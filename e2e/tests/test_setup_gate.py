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


def test_a_failed_step_reports_the_end_of_the_log_and_reaches_the_skip_reason(
    tmp_path: Path, clean_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _start_chain(
        tmp_path,
        'echo "go: downloading k8s.io/kubernetes" >&2\n'
        'echo "compile: killed: out of memory" >&2\n'
        "echo \"scripts/test: building the Kubernetes control plane failed; tests marked 'kube' "
        'will be skipped" >&2\n'
        'printf "install-test-tools=0\\nk8s-binaries=2\\n" > "$gate/status"',
    )
    _reap(proc)
    gate = SetupGate(tmp_path)
    lines: list[str] = []
    result = gate.wait(lines.append, poll_s=0.1)
    assert result.failed == {"k8s-binaries": "2"}
    assert not gate.ended_well()
    assert "k8s-binaries: 2" in result.note()
    assert "compile: killed: out of memory" in result.note()
    assert any("compile: killed: out of memory" in line for line in lines)
    assert any("\nscripts/test: building the Kubernetes" in line for line in lines)

    # A reader of the tools adds it to its reason: here the CRDs, missing because of that run.
    empty = tmp_path / "no-crds"
    empty.mkdir()
    monkeypatch.setenv("WHARF_SETUP_GATE", str(tmp_path))
    monkeypatch.setenv("WHARF_THIRD_PARTY_CRDS", str(empty))
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as raised:
        crds.require_third_party_crd_dir()
    assert "k8s-binaries: 2" in str(raised.value)
    assert "compile: killed: out of memory" in str(raised.value)


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
    assert setup_gate.failure_note() == ""


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
    a stand-in uv that records how pytest would have been started."""
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
        '#!/bin/sh\nif [ "$1" = run ]; then env > "$STUB_PYTEST_ENV"; fi\nexit 0\n'
    )
    (uv_dir / "uv").chmod(0o755)
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
        ["bash", str(CHAIN), str(gate)],
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
    # Nothing cached and no module proxy: the CRDs cannot be fetched, and the chain says so.
    assert status["third-party-crds"] not in ("0", "skipped")
    assert "scripts/test: fetching the third-party CRDs failed" in done.stderr
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
        ["bash", str(CHAIN), str(gate)], env=env, capture_output=True, text=True, timeout=110
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
    seen = _scripts_test(env)
    assert seen["WHARF_K8S_BIN"] == stand_ins["WHARF_K8S_ASSETS"]
    assert seen["WHARF_THIRD_PARTY_CRDS"] == str(crds_dir)
    assert "WHARF_SETUP_GATE" not in seen


def test_scripts_test_runs_the_chain_in_the_background_behind_a_gate(
    tmp_path: Path, stand_ins: dict[str, str], clean_env: None
) -> None:
    crds_dir = tmp_path / "crds"
    crds_dir.mkdir()
    env = {**stand_ins, "WHARF_THIRD_PARTY_CRDS": str(crds_dir)}
    seen = _scripts_test(env)
    assert "WHARF_K8S_BIN" not in seen  # not yet: pytest starts before the chain ends
    folder = Path(seen["WHARF_SETUP_GATE"])
    try:
        assert (folder / "pid").read_text().strip().isdigit()
        result = SetupGate(folder).wait(lambda line: None, poll_s=0.1)
        assert result.steps["k8s-binaries"] == "0", result.log_tail
        assert os.environ["WHARF_K8S_BIN"] == stand_ins["WHARF_K8S_ASSETS"]
    finally:
        shutil.rmtree(folder, ignore_errors=True)

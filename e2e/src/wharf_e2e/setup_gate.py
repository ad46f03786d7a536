"""The gate between scripts/test's background tool set-up and the tests that need its tools.

`scripts/test` starts `scripts/lib/test-setup.sh` (the storage emulators, the OCI registry, the
linters, the Kubernetes control plane, kubectl/kustomize, the third-party CRDs: Go builds on a
first run) in the background when it has anything to build, and exports `WHARF_SETUP_GATE`, a
folder holding

    log     the chain's output
    pid     its process id, the leader of its own process group
    env     one VAR=value line per variable a step provides
    status  one step=outcome line per step (exit code or `skipped`); it appears when all ended

While the gate is pending, the tests that need a tool (`needs_setup`) run after the others
(`order`), and the plugin waits for the status file before the first of them (`SetupGate.wait`),
then loads `env` into `os.environ`. The code that reads those variables calls `wait_for_setup()`
too, so that a test the classification missed still waits rather than skipping. Without the
variable (pytest run directly, every cache filled, or `WHARF_SETUP_FOREGROUND=1`) every function
here is a no-op.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

GATE_ENV = "WHARF_SETUP_GATE"
# A test needs the set-up when it has one of these markers (`setup_tools`: a module or test that
# looks for a tool itself, not through a fixture) or uses one of these fixtures, directly or
# through another fixture.
SETUP_MARKERS = frozenset({"kube", "setup_tools"})
SETUP_FIXTURES = frozenset(
    {
        "kube_cluster",  # the control plane (e2e/cluster/k8s-binaries.sh)
        "kube_tools",  # kubectl and kustomize (e2e/cluster/kube-tools.sh)
        "azurite_endpoint",  # scripts/install-test-tools: Azurite
        "gcs_endpoint",  # fake-gcs-server
        "oci_registry",  # the distribution registry
        "oci_auth_registry",
    }
)
POLL_S = 0.5
# Longer than a first build on a slow machine takes: past it, the chain is taken to be stuck.
MAX_WAIT_S = 90 * 60
TAIL_LINES = 20
# Outcomes of a step that leave nothing missing that the step was asked for.
_FINE = frozenset({"0", "skipped"})
# The only variables the env file may set: the ones the chain's steps provide.
PROVIDED = frozenset({"WHARF_K8S_BIN", "WHARF_KUBE_TOOLS", "WHARF_THIRD_PARTY_CRDS"})
# Every file the chain, scripts/test and the plugin write in the gate folder.
GATE_FILES = ("log", "pid", "env", "status", "status.tmp", "owner")
# The step that makes each tool, for its readers' skip reasons.
INSTALL_TEST_TOOLS = "install-test-tools"
K8S_BINARIES = "k8s-binaries"
KUBE_TOOLS = "kube-tools"
THIRD_PARTY_CRDS = "third-party-crds"
# What a chain that ended without its status failed as: every step's tool may be missing.
_WHOLE_CHAIN = "set-up"

T = TypeVar("T")
Report = Callable[[str], None]


def needs_setup(markers: Iterable[str], fixturenames: Iterable[str]) -> bool:
    """Whether a test with these marker and (closure of) fixture names needs the set-up's tools."""
    return not SETUP_MARKERS.isdisjoint(markers) or not SETUP_FIXTURES.isdisjoint(fixturenames)


def order(
    items: Sequence[T],
    *,
    needs_setup: Callable[[T], bool],
    engine: Callable[[T], bool],
    pool_user: Callable[[T], bool],
    gate_pending: bool,
) -> list[T]:
    """The run order: the tests that need nothing first, then (only while the set-up is pending)
    those that need its tools, then the vLLM tests that start engines of their own, then the
    worker pool's users. Each group keeps its collection order."""
    pool_users = [item for item in items if pool_user(item)]
    engines = [item for item in items if engine(item) and not pool_user(item)]
    rest = [item for item in items if not engine(item) and not pool_user(item)]
    if gate_pending:
        rest = [i for i in rest if not needs_setup(i)] + [i for i in rest if needs_setup(i)]
    return rest + engines + pool_users


def parse_lines(text: str) -> dict[str, str]:
    """`NAME=value` lines (the gate's env and status files); other lines are ignored."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip():
            out[name.strip()] = value
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def _tail(text: str, lines: int = TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A child that exited but was not reaped still answers kill(0).
    stat = Path(f"/proc/{pid}/stat")
    if stat.exists():
        text = _read(stat)
        state = text.rpartition(")")[2].split()[:1]
        return state != ["Z"]
    return True


@dataclass(frozen=True)
class SetupResult:
    """How the set-up ended: each step's outcome, the variables it provided, the log's end."""

    log: Path
    steps: dict[str, str]
    env: dict[str, str]
    log_tail: str
    waited_s: float
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> dict[str, str]:
        return {step: rc for step, rc in self.steps.items() if rc not in _FINE}

    def note(self, step: str | None = None) -> str:
        """For a skip or failure reason: which step failed and the end of its log ("" if none).
        With `step`, only that step's failure (or the whole chain's) counts: a tool's reason
        names the step that makes it, not the others."""
        failed = self.failed
        if step is not None:
            failed = {s: rc for s, rc in failed.items() if s in (step, _WHOLE_CHAIN)}
        if not failed:
            return ""
        steps = ", ".join(f"{s}: {rc}" for s, rc in failed.items())
        return f"; the tool set-up failed ({steps}), the end of {self.log}:\n{self.log_tail}"


class SetupGate:
    """One gate folder, waited for at most once per process."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.log = folder / "log"
        self.status = folder / "status"
        self.env = folder / "env"
        self.pid_file = folder / "pid"
        self.owner_file = folder / "owner"
        self.result: SetupResult | None = None

    def pending(self) -> bool:
        return self.result is None and not self.status.exists()

    def pid(self) -> int | None:
        text = _read(self.pid_file).strip()
        return int(text) if text.isdigit() else None

    def _chain_ended(self) -> bool:
        # No pid file: nothing was started for this folder, so nothing to wait for.
        pid = self.pid()
        return pid is None or not _alive(pid)

    def wait(
        self, report: Report | None = None, poll_s: float = POLL_S, max_s: float = MAX_WAIT_S
    ) -> SetupResult:
        """Wait for the chain's status (at most `max_s`), load its variables into os.environ (a
        variable already set wins), and report: one line when the wait starts, one when it ends,
        and on a failed step the log's end."""
        if self.result is not None:
            return self.result
        say = report or _stderr
        start = time.monotonic()
        waited = not self.status.exists()
        if waited:
            say(f"waiting for the tool set-up running in the background (log: {self.log})")
        stuck = False
        while not self.status.exists():
            if self._chain_ended():
                break
            if time.monotonic() - start > max_s:
                stuck = True
                break
            time.sleep(poll_s)
        waited_s = time.monotonic() - start
        if self.status.exists():
            steps = parse_lines(_read(self.status))
        elif stuck:
            steps = {_WHOLE_CHAIN: f"still running after {max_s / 60:.0f} min of waiting"}
        else:
            steps = {_WHOLE_CHAIN: "no chain running and no status written (killed?)"}
        env = {k: v for k, v in parse_lines(_read(self.env)).items() if k in PROVIDED}
        for name, value in env.items():
            if not os.environ.get(name):  # as in the chain, an empty variable counts as unset
                os.environ[name] = value
        log_text = _read(self.log)
        notes = [line for line in log_text.splitlines() if line.startswith("scripts/test: ")]
        result = SetupResult(self.log, steps, env, _tail(log_text), waited_s, notes)
        self.result = result
        if waited:
            say(f"the tool set-up is done after {waited_s / 60:.1f} min of waiting")
        if result.failed:
            say(result.note().lstrip("; "))  # the log's end holds the chain's own words
        else:
            for line in notes:  # what was skipped, and why (no Go toolchain, say)
                say(line)
        return result

    def ended_well(self) -> bool:
        """Whether the chain ended and every step succeeded or was skipped (its folder then holds
        nothing worth keeping)."""
        steps = parse_lines(_read(self.status))
        return bool(steps) and all(rc in _FINE for rc in steps.values())

    def remove(self) -> None:
        """Delete the gate folder: the files the set-up writes there, then the folder, which
        stays if it holds anything else (the path comes from the environment)."""
        for name in GATE_FILES:
            (self.folder / name).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            self.folder.rmdir()

    def claim(self) -> bool:
        """Make this process the gate's owner, the one that stops the chain at its end: the
        first pytest process to ask (tests that start pytest again inherit the variable)."""
        try:
            fd = os.open(self.owner_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        except OSError:
            return False
        with os.fdopen(fd, "w") as f:
            f.write(f"{os.getpid()}\n")
        return True

    def stop(self) -> bool:
        """Stop a chain still running, with everything it started (its process group)."""
        pid = self.pid()
        if pid is None or self.status.exists() or not _alive(pid):
            return False
        try:
            # Only a group of its own: never the group this process belongs to.
            if os.getpgid(pid) == pid and pid != os.getpgrp():
                os.killpg(pid, signal.SIGTERM)
            else:
                os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return False
        return True


def _stderr(line: str) -> None:
    print(f"wharf: {line}", file=sys.stderr, flush=True)


_gates: dict[Path, SetupGate] = {}
_reporter: list[Report] = []


def current_gate() -> SetupGate | None:
    """The gate `WHARF_SETUP_GATE` names, or None when the set-up is not in the background."""
    folder = os.environ.get(GATE_ENV)
    if not folder:
        return None
    path = Path(folder)
    return _gates.setdefault(path, SetupGate(path))


def set_reporter(report: Report | None) -> None:
    """Where wait_for_setup() reports (the plugin's terminal writer); stderr when unset."""
    _reporter[:] = [report] if report is not None else []


def wait_for_setup() -> SetupResult | None:
    """Wait for the background set-up, if any, and load its variables: called by the code that
    reads WHARF_K8S_BIN, WHARF_KUBE_TOOLS, WHARF_THIRD_PARTY_CRDS or the tools' cache."""
    gate = current_gate()
    if gate is None:
        return None
    return gate.wait(_reporter[0] if _reporter else None)


def failure_note(step: str) -> str:
    """The failure of `step` (the set-up step that makes a missing tool) and the log's end, to add
    to that tool's skip or failure reason; "" when it did not fail."""
    result = wait_for_setup()
    return result.note(step) if result is not None else ""

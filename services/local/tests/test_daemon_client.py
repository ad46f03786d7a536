"""The CLI's side of the daemon: stale pid files and sockets, a daemon that cannot start."""

from __future__ import annotations

import http.server
import json
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from wharf_local import client
from wharf_local.cli import main
from wharf_local.client import Daemon, DaemonError
from wharf_local.home import Home


def test_stale_pid_file_naming_another_process_is_left_alone(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.pid_file.parent.mkdir(parents=True, exist_ok=True)
    # A live process that reused the number of a daemon that died without cleaning up.
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        home.pid_file.write_text(str(bystander.pid))
        assert Daemon(home).stop(timeout_s=1.0) is False
        assert bystander.poll() is None, "the bystander process was signalled"
    finally:
        bystander.kill()
        bystander.wait()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_a_killed_daemon_is_reported_and_its_leftovers_removed(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.root.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    home.pid_file.write_text(str(gone.pid))
    with socket.socket(socket.AF_UNIX) as dead:  # what a SIGKILLed daemon leaves behind
        dead.bind(str(home.socket))
    result = CliRunner().invoke(main, ["get"], env={"WHARF_HOME": str(home.root)})
    assert result.exit_code == 1
    assert "the wharf daemon is not running" in result.output
    assert "removed the stale wharf.sock and wharfd.pid" in result.output
    assert not home.socket.exists() and not home.pid_file.exists()


def test_down_after_a_kill_says_so_and_removes_the_leftovers(tmp_path: Path) -> None:
    home = Home(tmp_path / "home")
    home.root.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    home.pid_file.write_text(str(gone.pid))
    with socket.socket(socket.AF_UNIX) as dead:
        dead.bind(str(home.socket))
    result = CliRunner().invoke(main, ["down"], env={"WHARF_HOME": str(home.root)})
    assert result.exit_code == 0
    assert "wharf was not running" in result.output
    assert not home.socket.exists() and not home.pid_file.exists()


@pytest.mark.parametrize("busy", ["WHARF_INGRESS_PORT", "WHARF_INGRESS_GRPC_PORT"])
def test_a_busy_ingress_port_is_named_with_its_variable_and_nothing_is_left(
    tmp_path: Path, busy: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = Home(tmp_path / "home")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"WHARF_INGRESS_PORT": _free_port(), "WHARF_INGRESS_GRPC_PORT": _free_port()}
        ports[busy] = port
        for variable, value in ports.items():
            monkeypatch.setenv(variable, str(value))
        with pytest.raises(DaemonError) as failed:
            Daemon(home).ensure()
    message = str(failed.value)
    assert f"port {port} on 127.0.0.1 is in use" in message
    assert f"set {busy} to a free port" in message
    assert not home.socket.exists()
    assert not home.pid_file.exists()


class _SlowDelete(http.server.BaseHTTPRequestHandler):
    """A daemon whose deletes take longer than a read is allowed (an LLM worker draining)."""

    delete_s = 1.0

    def do_GET(self) -> None:
        self._answer({"ingress": "http://127.0.0.1:1"})

    def do_DELETE(self) -> None:
        time.sleep(self.delete_s)
        self._answer({"deleted": True})

    def _answer(self, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def address_string(self) -> str:  # a Unix socket's peer has no address
        return "local"

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def slow_daemon(tmp_path: Path) -> Iterator[Home]:
    home = Home(tmp_path / "home")
    home.root.mkdir(parents=True)
    server = socketserver.ThreadingUnixStreamServer(str(home.socket), _SlowDelete)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield home
    finally:
        server.shutdown()
        server.server_close()


def test_delete_waits_for_the_processes_longer_than_a_read_may_take(
    slow_daemon: Home, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A delete answers once the processes have stopped; a worker draining took longer than the
    # 30 s a read may take, and the CLI reported a deleted object as "did not answer".
    monkeypatch.setattr(client, "CALL_TIMEOUT_S", 0.2)
    with pytest.raises(DaemonError, match=r"did not answer in 0\.2s"):
        Daemon(slow_daemon).call("DELETE", "/objects/x/y")  # what a delete did
    env = {"WHARF_HOME": str(slow_daemon.root)}
    result = CliRunner().invoke(main, ["delete", "isvc", "slow"], env=env)
    assert result.exit_code == 0, result.output
    assert 'inferenceservice "slow" deleted' in result.output


def test_delete_with_a_timeout_says_the_stop_goes_on(slow_daemon: Home) -> None:
    env = {"WHARF_HOME": str(slow_daemon.root)}
    result = CliRunner().invoke(main, ["delete", "isvc", "slow", "--timeout", "0.2"], env=env)
    assert result.exit_code == 1
    assert "did not answer in 0.2s; it goes on in the background" in result.output

"""A node's `ray start` leaves nothing behind: stopping it ends what Ray left in its process
group, and it ends when the node's command is killed.

No Ray here: a stand-in for `python -m ray.scripts.scripts start` reports Ray's start line,
starts a daemon that ignores SIGTERM (as the raylet's agents outlived a joined node whose head
had gone) and exits on SIGTERM without it. The real two-node run is
e2e/local/test_llm_multinode_wharf_up.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from wharf_llm_worker.multinode.rayargs import RayNodeConfig
from wharf_llm_worker.multinode.raynode import STARTED_MARKER, RayNode

FAKE_RAY_START = textwrap.dedent(
    f"""\
    #!{sys.executable}
    import os, signal, subprocess, sys, time
    daemon = subprocess.Popen([sys.executable, "-c",
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"])
    with open(os.environ["DAEMON_PID_FILE"], "w") as out:
        out.write(str(daemon.pid))
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    print({STARTED_MARKER!r}, flush=True)
    time.sleep(600)
    """
)


def _running(pid: int) -> bool:
    """Alive and not a zombie (nothing may reap orphans in a container)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def test_stop_ends_the_daemons_ray_start_left_behind(tmp_path: Path) -> None:
    fake = tmp_path / "python"
    fake.write_text(FAKE_RAY_START)
    fake.chmod(0o755)
    pid_file = tmp_path / "daemon.pid"
    node = RayNode(
        RayNodeConfig(node_rank=0),
        {"DAEMON_PID_FILE": str(pid_file)},
        tmp_path / "ray-node-0.log",
        python=str(fake),
    )
    daemon = 0
    try:
        node.start(timeout_s=60)
        daemon = int(pid_file.read_text())
        assert _running(daemon)
        # `ray start` runs in its own process group, never in the caller's.
        assert node.pid is not None and os.getpgid(node.pid) != os.getpgid(0)

        node.stop()
        assert node.exit_code() == 0
        deadline = time.monotonic() + 30
        while _running(daemon) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(daemon), "a daemon of the stopped node is still running"
    finally:
        node.stop()
        if daemon and _running(daemon):
            os.kill(daemon, signal.SIGKILL)


NODE_COMMAND = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from wharf_llm_worker.multinode.rayargs import RayNodeConfig
    from wharf_llm_worker.multinode.raynode import RayNode
    fake, work = sys.argv[1], Path(sys.argv[2])
    node = RayNode(RayNodeConfig(node_rank=0), {"DAEMON_PID_FILE": str(work / "daemon.pid")},
                   work / "ray-node-0.log", python=fake)
    node.start(timeout_s=60)
    print(node.pid, flush=True)
    time.sleep(600)
    """
)


def test_ray_start_ends_when_the_nodes_command_is_killed(tmp_path: Path) -> None:
    # The node's command killed with SIGKILL (a supervisor's last resort) must not leave `ray
    # start` running: it gets SIGTERM, on which the real one stops Ray's daemons.
    fake = tmp_path / "python"
    fake.write_text(FAKE_RAY_START)
    fake.chmod(0o755)
    command = subprocess.Popen(
        [sys.executable, "-c", NODE_COMMAND, str(fake), str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    ray_start = daemon = 0
    try:
        assert command.stdout is not None
        ray_start = int(command.stdout.readline())
        daemon = int((tmp_path / "daemon.pid").read_text())
        assert _running(ray_start)

        command.kill()
        command.wait()
        deadline = time.monotonic() + 30
        while _running(ray_start) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _running(ray_start), "ray start outlived the node's command"
    finally:
        command.kill()
        command.wait()
        if command.stdout is not None:
            command.stdout.close()
        for pid in (ray_start, daemon):
            if pid and _running(pid):
                os.kill(pid, signal.SIGKILL)

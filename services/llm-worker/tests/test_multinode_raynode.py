"""Stopping a node's `ray start` ends what Ray left in its process group.

No Ray here: a stand-in for `python -m ray.scripts.scripts start` reports Ray's start line,
starts a daemon that ignores SIGTERM (as the raylet's agents outlived a joined node whose head
had gone) and exits on SIGTERM without it. The real two-node run is test_multinode_ray.py.
"""

from __future__ import annotations

import os
import signal
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

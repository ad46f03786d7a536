"""`wharf down` with a stale pid file never signals a process that is not a wharf daemon."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from wharf_local.client import Daemon
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

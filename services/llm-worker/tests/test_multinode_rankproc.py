"""The process a rank's Ray actor runs, without Ray: started in its own process group, its output
kept in the rank's log, its exit seen, and stopped with everything it started."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from wharf_llm_worker.multinode.rankproc import RankProcess

# A stand-in for the engine: a module run with `python -m` that prints and then keeps running.
LONG_RUNNING = ["-n", "1", "-r", "1", "import time; print('rank up', flush=True); time.sleep(600)"]


def _wait(condition: object, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_rank_logs_to_its_file_and_reports_its_exit(tmp_path: Path) -> None:
    rank = RankProcess(1, str(tmp_path))
    info = rank.start("timeit", LONG_RUNNING, {"WHARF_TEST_MARK": "x"})
    pid = int(str(info["pid"]))
    assert info["log"] == str(tmp_path / "rank-1.log")
    _wait(lambda: "rank up" in (tmp_path / "rank-1.log").read_text())
    assert "rank up" in (tmp_path / "rank-1.log").read_text()
    assert rank.poll() is None
    # Its own session: stopping it cannot reach the actor that started it.
    assert os.getpgid(pid) == pid != os.getpgid(0)
    os.kill(pid, signal.SIGKILL)
    _wait(lambda: rank.poll() is not None)
    assert rank.poll() == -signal.SIGKILL
    assert "rank up" in rank.tail()
    assert rank.stop(grace_s=1) == -signal.SIGKILL


def test_stop_ends_the_rank_and_its_process_group(tmp_path: Path) -> None:
    rank = RankProcess(0, str(tmp_path))
    pid = int(str(rank.start("timeit", LONG_RUNNING, {})["pid"]))
    _wait(lambda: "rank up" in (tmp_path / "rank-0.log").read_text())
    assert rank.stop(grace_s=10) == -signal.SIGTERM
    assert not _alive(pid)
    assert rank.poll() == -signal.SIGTERM

"""Flags and environment variables; the reconnect backoff."""

from __future__ import annotations

from pathlib import Path

import pytest

from wharf_model_agent.config import parse_config
from wharf_model_agent.kube import Backoff


def test_the_environment_configures_the_agent_as_the_daemonset_does() -> None:
    config = parse_config(
        [], {"NODE_NAME": "gpu-1", "WHARF_MODEL_CACHE_ROOT": "/data", "WHARF_STORAGE_LIMIT": "1Gi"}
    )
    assert config.node_name == "gpu-1"
    assert config.cache_root == Path("/data")
    assert config.storage_limit == 2**30
    assert config.metrics_port == 9100


def test_flags_win_over_the_environment() -> None:
    config = parse_config(
        ["--node-name=a", "--max-parallel-downloads=4", "--metrics-port=0"], {"NODE_NAME": "b"}
    )
    assert (config.node_name, config.max_parallel_downloads, config.metrics_port) == ("a", 4, 0)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "--node-name"),
        (["--node-name=a", "--storage-limit=lots"], "--storage-limit"),
        (["--node-name=a", "--max-parallel-downloads=0"], "--max-parallel-downloads"),
    ],
)
def test_bad_settings_stop_the_agent_naming_the_flag(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parse_config(argv, {})
    assert message in capsys.readouterr().err


def test_reconnects_back_off_to_a_cap_and_reset() -> None:
    backoff = Backoff(base=0.5, cap=30.0)
    delays = [backoff.next_delay() for _ in range(12)]
    assert 0.25 <= delays[0] <= 0.5
    assert all(d <= 30.0 for d in delays) and delays[-1] >= 15.0
    backoff.reset()
    assert backoff.next_delay() <= 0.5

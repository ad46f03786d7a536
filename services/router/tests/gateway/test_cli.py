"""`wharf-router gateway`'s flags and config file become the settings, endpoint source and keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from wharf_router.gateway.cli import build, parser
from wharf_router.gateway.config import ConfigError
from wharf_router.gateway.endpoints import EndpointError, StaticEndpoints
from wharf_router.gateway.kube_endpoints import KubeEndpoints


def test_flags_over_the_config_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text("keys:\n- {name: a, key: sk-aaaaaaaaaaaaaaaa, tokens_per_minute: 5}\n")
    config = tmp_path / "gw.yaml"
    config.write_text(
        "policy: least-load\n"
        "weights: {prefix: 9}\n"
        "tuning: {skew_abs: 4}\n"
        "request_timeout: 30\n"
        f"api_keys_file: {keys}\n"
        "endpoints:\n- {url: 'http://10.0.0.1:8000', role: prefill, name: p0}\n"
    )
    args = parser().parse_args(
        [
            "--config",
            str(config),
            "--policy",
            "default",
            "--weights",
            "kv=0",
            "--endpoint",
            "http://10.0.0.2:8000=decode",
            "--scrape-interval",
            "0.5",
            "--lone-scrape-interval",
            "2",
        ]
    )
    settings, source, found = build(args)
    assert settings.policy == "default"  # the flag wins
    assert (settings.weights.prefix, settings.weights.kv) == (9, 0)
    assert settings.tuning.skew_abs == 4 and settings.request_timeout == 30
    assert settings.probing.scrape_interval == 0.5
    assert settings.probing.lone_scrape_interval == 2
    assert isinstance(source, StaticEndpoints)
    assert [(e.name, e.role) for e in source.endpoints] == [
        ("10.0.0.2:8000", "decode"),
        ("p0", "prefill"),
    ]
    assert found is not None and found.lookup("sk-aaaaaaaaaaaaaaaa") is not None


def test_kubernetes_source_and_refusals() -> None:
    args = parser().parse_args(
        ["--kube-selector", "app=llm", "--kube-namespace", "ns", "--role-label", "role"]
    )
    _, source, _ = build(args)
    assert isinstance(source, KubeEndpoints)
    assert (source.selection.selector, source.selection.role_label, source.selection.port) == (
        "app=llm",
        "role",
        8000,
    )
    with pytest.raises(EndpointError, match="needs --kube-namespace"):
        build(parser().parse_args(["--kube-selector", "app=llm"]))
    with pytest.raises(EndpointError, match="exclude each other"):
        build(
            parser().parse_args(
                ["--kube-selector", "a=b", "--kube-namespace", "n", "--endpoint", "http://h:1"]
            )
        )
    with pytest.raises(EndpointError, match="no endpoints"):
        build(parser().parse_args([]))


def test_main_exits_with_the_message_of_a_bad_file(tmp_path: Path) -> None:
    from wharf_router.cli import main

    bad = tmp_path / "gw.yaml"
    bad.write_text("weights: {cache: 1}\n")
    with pytest.raises(SystemExit, match="unknown setting 'cache'"):
        main(["gateway", "--config", str(bad), "--endpoint", "http://h:1"])


def test_the_pd_warm_up_switch(tmp_path: Path) -> None:
    on, _, _ = build(parser().parse_args(["--endpoint", "http://h:1"]))
    assert on.pd_warmup is True and on.pd_warmup_timeout == 180
    config = tmp_path / "gw.yaml"
    config.write_text("pd_warmup: false\npd_warmup_timeout: 30\npd_warmup_concurrency: 4\n")
    off, _, _ = build(parser().parse_args(["--config", str(config), "--endpoint", "http://h:1"]))
    assert (off.pd_warmup, off.pd_warmup_timeout, off.pd_warmup_concurrency) == (False, 30, 4)
    flag, _, _ = build(
        parser().parse_args(["--config", str(config), "--pd-warmup", "--endpoint", "http://h:1"])
    )
    assert flag.pd_warmup is True  # the flag wins over the file
    flag, _, _ = build(parser().parse_args(["--no-pd-warmup", "--endpoint", "http://h:1"]))
    assert flag.pd_warmup is False
    config.write_text("pd_warmup: 'no'\n")
    with pytest.raises(ConfigError, match="pd_warmup must be true or false"):
        build(parser().parse_args(["--config", str(config), "--endpoint", "http://h:1"]))
    config.write_text("pd_warmup_concurrency: 0\n")
    with pytest.raises(ConfigError, match="pd_warmup_concurrency must be between 1 and 64"):
        build(parser().parse_args(["--config", str(config), "--endpoint", "http://h:1"]))

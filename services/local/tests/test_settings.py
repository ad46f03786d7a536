"""`wharf up` reads KServe's inferenceservice-config from $WHARF_CONFIG."""

from __future__ import annotations

from pathlib import Path

import pytest

from wharf_api.config import ConfigError
from wharf_local.routing import host_table
from wharf_local.settings import Settings

CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata: {name: inferenceservice-config, namespace: kserve}
data:
  ingress: |-
    {"ingressDomain": "models.corp", "domainTemplate": "{{ .Name }}.{{ .Namespace }}.{{ .IngressDomain }}"}
"""


def test_config_file_sets_domain_and_template(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "inferenceservice-config.yaml"
    path.write_text(CONFIGMAP)
    monkeypatch.setenv("WHARF_CONFIG", str(path))
    monkeypatch.delenv("WHARF_DOMAIN", raising=False)
    settings = Settings.from_env()
    assert settings.domain == "models.corp"
    table = host_table(
        [("team", "iris", ["predictor"])],
        settings.domain,
        settings.config.ingress.domain_template,
    )
    assert "iris.team.models.corp" in table
    assert "iris-predictor.team.models.corp" in table
    assert settings.as_env()["WHARF_CONFIG"] == str(path)


def test_wharf_domain_wins_over_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(CONFIGMAP)
    monkeypatch.setenv("WHARF_CONFIG", str(path))
    monkeypatch.setenv("WHARF_DOMAIN", "override.dev")
    assert Settings.from_env().domain == "override.dev"


def test_a_broken_config_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("ingress: [not, a, mapping]\n")
    monkeypatch.setenv("WHARF_CONFIG", str(path))
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        Settings.from_env()


def test_the_daemon_refuses_a_broken_config_and_says_which_file(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    path = tmp_path / "broken.yaml"
    path.write_text("ingress: [not, a, mapping]\n")
    env = {**os.environ, "WHARF_HOME": str(tmp_path / "home"), "WHARF_CONFIG": str(path)}
    proc = subprocess.run(
        [sys.executable, "-m", "wharf_local.daemon"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "ERROR" in proc.stderr and "broken.yaml" in proc.stderr

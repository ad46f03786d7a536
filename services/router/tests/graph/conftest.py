"""Fixtures of the graph tests: real model servers (one set per session) and routers."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

# The helpers live beside the tests; pytest's importlib mode does not put this folder on the path.
sys.path.insert(0, str(Path(__file__).parent))

from graph_kit import Models, StartRouter, model_servers, router_starter


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Models]:
    with model_servers(tmp_path_factory.mktemp("graph-models")) as found:
        yield found


@pytest.fixture
def start_router(tmp_path: Path) -> Iterator[StartRouter]:
    with router_starter(tmp_path) as start:
        yield start

"""Placeholder until the graph lands."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    raise SystemExit("wharf-router: the graph is not built yet")

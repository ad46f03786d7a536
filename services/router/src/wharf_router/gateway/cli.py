"""Placeholder until the gateway lands."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    raise SystemExit("wharf-router: the gateway is not built yet")

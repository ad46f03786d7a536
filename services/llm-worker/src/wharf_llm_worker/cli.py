"""`wharf-llm-worker`: placeholder until the worker lands."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    print("wharf-llm-worker: not built yet", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())

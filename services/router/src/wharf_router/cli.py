"""`wharf-router`: the InferenceGraph router (KServe's flags) or, with `gateway`, the LLM gateway."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["gateway"]:
        from wharf_router.gateway.cli import main as gateway_main

        return gateway_main(args[1:])
    from wharf_router.graph.cli import main as graph_main

    return graph_main(args)


if __name__ == "__main__":
    sys.exit(main())

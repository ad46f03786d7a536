"""`python -m wharf_api.crdgen OUT_DIR [--check]`: write (or check) the CRDs under OUT_DIR."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from wharf_api.crdgen.render import render_crds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m wharf_api.crdgen")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--check", action="store_true", help="fail if the files differ instead of writing"
    )
    args = parser.parse_args(argv)
    wanted = render_crds()
    out_dir: Path = args.out_dir
    present = {p.name for p in out_dir.glob("*.yaml")} if out_dir.is_dir() else set()
    if args.check:
        stale = sorted(
            name
            for name, text in wanted.items()
            if not (out_dir / name).is_file() or (out_dir / name).read_text() != text
        )
        extra = sorted(present - wanted.keys())
        for name in stale:
            print(f"stale: {out_dir / name}", file=sys.stderr)
        for name in extra:
            print(f"not generated: {out_dir / name}", file=sys.stderr)
        if stale or extra:
            print("run `make crds` to regenerate", file=sys.stderr)
            return 1
        return 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in present - wanted.keys():
        (out_dir / name).unlink()
    for name, text in wanted.items():
        (out_dir / name).write_text(text)
    print(f"wrote {len(wanted)} files to {out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Counting the probes an abuse suite sends: tried and passed, per part and target.

    counter = ProbeCounter()
    with counter.probe("framing", "model-server"):
        ...  # one probe; it passed when the block ends without an exception

`ProbeCounter.write(path)` saves the counts as JSON; `python -m wharf_e2e.probes PATH` prints
them as a table (`make abuse` does both).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Count:
    tried: int = 0
    passed: int = 0


@dataclass
class ProbeCounter:
    counts: dict[tuple[str, str], Count] = field(default_factory=dict)

    def _count(self, part: str, target: str) -> Count:
        return self.counts.setdefault((part, target), Count())

    @contextmanager
    def probe(self, part: str, target: str) -> Iterator[None]:
        count = self._count(part, target)
        count.tried += 1
        yield
        count.passed += 1

    def add(self, part: str, target: str, tried: int, passed: int) -> None:
        count = self._count(part, target)
        count.tried += tried
        count.passed += passed

    def rows(self) -> list[dict[str, object]]:
        return [
            {"part": part, "target": target, "tried": c.tried, "passed": c.passed}
            for (part, target), c in sorted(self.counts.items())
        ]

    def write(self, path: Path) -> None:
        path.write_text(json.dumps({"probes": self.rows()}, indent=2) + "\n")


def table(rows: list[dict[str, object]]) -> str:
    """A Markdown table of the rows, with a total."""
    tried = sum(int(str(r["tried"])) for r in rows)
    passed = sum(int(str(r["passed"])) for r in rows)
    lines = ["| part | target | tried | passed |", "| --- | --- | ---: | ---: |"]
    lines += [f"| {r['part']} | {r['target']} | {r['tried']} | {r['passed']} |" for r in rows]
    lines.append(f"| **total** | | **{tried}** | **{passed}** |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m wharf_e2e.probes REPORT.json", file=sys.stderr)
        return 2
    rows = json.loads(Path(argv[0]).read_text())["probes"]
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

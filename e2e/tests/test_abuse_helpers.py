"""The abuse suite's helpers: reading raw HTTP/1.1 answers, and counting probes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from wharf_e2e.probes import ProbeCounter, main, table
from wharf_e2e.rawhttp import request, statuses_in


def test_statuses_of_pipelined_answers_follow_their_framing() -> None:
    first = b'HTTP/1.1 200 OK\r\ncontent-length: 13\r\n\r\n{"live":true}'
    chunked = b"HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    # a body that looks like a status line is not one
    tricky = b"HTTP/1.1 400 Bad\r\ncontent-length: 17\r\n\r\nHTTP/1.1 500 Nope"
    assert statuses_in(first + chunked + tricky + first[:20]) == [200, 404, 400, 200]
    assert statuses_in(b"") == []
    assert statuses_in(b"garbage") == []


def test_request_bytes() -> None:
    assert request("POST", "/p", "h", {"X-A": "1"}, b"ab") == (
        b"POST /p HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nContent-Length: 2\r\n\r\nab"
    )


def test_probe_counts_and_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    counter = ProbeCounter()
    with counter.probe("framing", "ingress"):
        pass
    with pytest.raises(AssertionError), counter.probe("framing", "ingress"):
        raise AssertionError
    counter.add("kill", "ingress", 10, 10)
    report = tmp_path / "report.json"
    counter.write(report)
    rows = json.loads(report.read_text())["probes"]
    assert rows == [
        {"part": "framing", "target": "ingress", "tried": 2, "passed": 1},
        {"part": "kill", "target": "ingress", "tried": 10, "passed": 10},
    ]
    assert table(rows).splitlines()[-1] == "| **total** | | **12** | **11** |"
    assert main([str(report)]) == 0
    assert "| framing | ingress | 2 | 1 |" in capsys.readouterr().out

"""The first header block of an h2c connection names the service. Pure frame parsing."""

from __future__ import annotations

import hpack
import pytest

from wharf_datapath.sniffing import H2_PREFACE, NotYet, scan_h2_start

SETTINGS = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
SETTINGS_ACK = b"\x00\x00\x00\x04\x01\x00\x00\x00\x00"
WINDOW_UPDATE = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00\x00\x00\xff\xff"


def frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([ftype, flags])
        + stream.to_bytes(4, "big")
        + payload
    )


def headers_block(authority: str) -> bytes:
    return hpack.Encoder().encode(
        [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/inference.GRPCInferenceService/ModelInfer"),
            (":authority", authority),
            ("content-type", "application/grpc"),
        ]
    )


def test_authority_of_the_first_request_and_the_ack_is_removed() -> None:
    block = headers_block("iris-default.example.com")
    data = H2_PREFACE + SETTINGS + WINDOW_UPDATE + SETTINGS_ACK + frame(0x1, 0x4, 1, block)
    start = scan_h2_start(data)
    assert start is not None
    assert start.authority == "iris-default.example.com"
    assert start.forward == H2_PREFACE + SETTINGS + WINDOW_UPDATE + frame(0x1, 0x4, 1, block)


def test_a_header_block_split_over_continuation_and_padded() -> None:
    block = headers_block("a-b.example.com")
    padded = bytes([3]) + block[:5] + b"\x00\x00\x00"
    data = (
        H2_PREFACE
        + SETTINGS
        + frame(0x1, 0x8, 1, padded)  # PADDED, no END_HEADERS
        + frame(0x9, 0x4, 1, block[5:])  # CONTINUATION with END_HEADERS
        + SETTINGS_ACK
    )
    start = scan_h2_start(data)
    assert start is not None and start.authority == "a-b.example.com"


def test_waits_for_the_whole_start() -> None:
    block = headers_block("iris-default.example.com")
    full = H2_PREFACE + SETTINGS + SETTINGS_ACK + frame(0x1, 0x4, 1, block)
    for cut in (3, len(H2_PREFACE), len(H2_PREFACE) + 12, len(full) - 1):
        with pytest.raises(NotYet):
            scan_h2_start(full[:cut])
    # headers without the ACK yet: keep waiting, the ACK must not reach the real server
    with pytest.raises(NotYet):
        scan_h2_start(H2_PREFACE + SETTINGS + frame(0x1, 0x4, 1, block))


def test_not_http2() -> None:
    assert scan_h2_start(b"POST / HTTP/1.1\r\n") is None

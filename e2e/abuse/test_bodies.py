"""Generated request bodies, on the model server and through the ingress.

V1 JSON, V2 JSON, V2 with the binary tensor extension (`Inference-Header-Content-Length`) and
gRPC ModelInfer (structured messages and raw bytes; through the ingress on its gRPC port and,
sniffed as h2c, on its HTTP port). The property: no 5xx (no INTERNAL,
UNKNOWN or UNAVAILABLE over gRPC), an error body that says what was wrong, no dropped
connection, and the model still answers afterwards.
"""

from __future__ import annotations

import json
from typing import Any

import grpc
import httpx
import pytest
from abuse_kit import ABUSE, LIMIT
from hypothesis import given
from hypothesis import strategies as st

from wharf_e2e.probes import ProbeCounter
from wharf_e2e.servers import Target
from wharf_protocol.grpc import pb

# the first test of a session also waits for the servers to start (sklearn imports on busy cores)
pytestmark = [pytest.mark.abuse, pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES", "XX"]
# gRPC codes a malformed request may get; anything else (INTERNAL, UNKNOWN, UNAVAILABLE, ...)
# is a server fault or a dropped connection
GRPC_CLIENT_ERRORS = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.OUT_OF_RANGE,
}

numbers = st.integers(-(2**70), 2**70) | st.floats() | st.booleans()
json_values = st.recursive(
    st.none() | st.booleans() | numbers | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
# rows near what iris wants (4 floats) reach the model; the rest stop in decoding
rows = st.lists(st.lists(st.floats(width=32) | st.integers(-5, 5), min_size=3, max_size=5),
                max_size=4)  # fmt: skip

v1_body = st.one_of(
    st.fixed_dictionaries({"instances": rows | json_values}),
    st.fixed_dictionaries({"inputs": rows | json_values}),
    st.dictionaries(st.sampled_from(["instances", "inputs", "x"]), json_values, max_size=2),
    json_values,
)

tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input-0", "x", ""]),
        "shape": st.lists(st.integers(min_value=-2, max_value=6), max_size=3),
        "datatype": st.sampled_from(DATATYPES),
    },
    optional={
        "data": st.lists(numbers | st.text(max_size=3), max_size=24) | json_values,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "content_type", "binary_data"]),
            st.integers(-5, 64) | st.booleans() | st.text(max_size=3),
            max_size=2,
        ),
    },
)
v2_body = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3)},
    optional={
        "id": st.text(max_size=5) | st.integers(),
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}), max_size=2)
        | json_values,
        "parameters": st.dictionaries(st.text(max_size=10), json_values, max_size=2),
    },
)
raw_bytes = st.binary(max_size=96) | st.just(b"\x00" * (LIMIT + 1))


def _check(response: httpx.Response, sent: object) -> None:
    assert response.status_code < 500, (sent, response.status_code, response.text)
    if response.status_code >= 400 and response.headers.get("content-type", "").startswith(
        "application/json"
    ):
        assert "error" in response.json(), (sent, response.text)


def _post(
    target: Target, probes: ProbeCounter, part: str, path: str, content: bytes, **headers: str
) -> None:
    with probes.probe(part, target.name), target.client() as client:
        response = client.post(path, content=content, headers=headers)
        _check(response, content[:300])


@ABUSE
@given(body=v1_body, model=st.sampled_from(["iris", "iris", "nope"]))
def test_v1_json(target: Target, probes: ProbeCounter, body: Any, model: str) -> None:
    path = f"/v1/models/{model}:predict"
    _post(target, probes, "bodies: V1 JSON", path, json.dumps(body).encode())


@ABUSE
@given(body=v2_body | json_values, raw=raw_bytes, use_raw=st.booleans())
def test_v2_json(
    target: Target, probes: ProbeCounter, body: Any, raw: bytes, use_raw: bool
) -> None:
    content = raw if use_raw else json.dumps(body).encode()
    _post(target, probes, "bodies: V2 JSON", "/v2/models/iris/infer", content)


@ABUSE
@given(
    header=v2_body,
    tail=st.binary(max_size=64),
    length=st.sampled_from(["exact", "random", "garbage"]),
    number=st.integers(-10, 10_000),
    # what a client can send in a header: visible ASCII and spaces
    garbage=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=6),
)
def test_v2_binary_extension(
    target: Target,
    probes: ProbeCounter,
    header: Any,
    tail: bytes,
    length: str,
    number: int,
    garbage: str,
) -> None:
    head = json.dumps(header).encode()
    value = {"exact": str(len(head)), "random": str(number), "garbage": garbage}[length]
    value = value.strip() or "x"
    _post(
        target,
        probes,
        "bodies: V2 binary extension",
        "/v2/models/iris/infer",
        head + tail,
        **{"inference-header-content-length": value, "content-type": "application/octet-stream"},
    )


contents = st.builds(
    pb.InferTensorContents,
    bool_contents=st.lists(st.booleans(), max_size=8),
    int_contents=st.lists(st.integers(-(2**31), 2**31 - 1), max_size=8),
    int64_contents=st.lists(st.integers(-(2**63), 2**63 - 1), max_size=8),
    fp32_contents=st.lists(st.floats(width=32), max_size=12),
    fp64_contents=st.lists(st.floats(), max_size=8),
    bytes_contents=st.lists(st.binary(max_size=8), max_size=4),
)
grpc_input = st.builds(
    pb.ModelInferRequest.InferInputTensor,
    name=st.sampled_from(["input-0", "x", ""]),
    datatype=st.sampled_from(DATATYPES),
    shape=st.lists(st.integers(-2, 2**40), max_size=3),
    contents=contents,
)
grpc_request = st.builds(
    pb.ModelInferRequest,
    model_name=st.sampled_from(["iris", "iris", "nope", ""]),
    model_version=st.sampled_from(["", "1"]),
    id=st.text(max_size=4),
    inputs=st.lists(grpc_input, max_size=3),
    raw_input_contents=st.lists(st.binary(max_size=48), max_size=3),
)


def _channel(target: Target, http_port: bool = False) -> grpc.Channel:
    """A channel to the gRPC port; to the ingress's HTTP port (h2c, sniffed) with `http_port`."""
    options = [
        ("grpc.default_authority", target.authority),
        ("grpc.max_send_message_length", 2 * LIMIT),
    ]
    port = target.http_port if http_port and target.name == "ingress" else target.grpc_port
    return grpc.insecure_channel(f"127.0.0.1:{port}", options=options)


def _grpc_probe(target: Target, probes: ProbeCounter, part: str, call: Any, data: Any) -> None:
    with probes.probe(part, target.name):
        try:
            call(data, timeout=30)
        except grpc.RpcError as err:
            code = err.code()  # type: ignore[attr-defined]
            assert code in GRPC_CLIENT_ERRORS, (str(data)[:300], code, err.details())  # type: ignore[attr-defined]


@ABUSE
@given(request=grpc_request, http_port=st.booleans())
def test_grpc_model_infer(
    target: Target, probes: ProbeCounter, request: Any, http_port: bool
) -> None:
    with _channel(target, http_port) as channel:
        call = channel.unary_unary(
            "/inference.GRPCInferenceService/ModelInfer",
            request_serializer=pb.ModelInferRequest.SerializeToString,
            response_deserializer=pb.ModelInferResponse.FromString,
        )
        _grpc_probe(target, probes, "bodies: gRPC ModelInfer", call, request)


@ABUSE
@given(data=raw_bytes, http_port=st.booleans())
def test_grpc_raw_bytes(target: Target, probes: ProbeCounter, data: bytes, http_port: bool) -> None:
    with _channel(target, http_port) as channel:
        call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")
        _grpc_probe(target, probes, "bodies: gRPC raw bytes", call, data)


def test_still_healthy_after_the_bodies(target: Target, probes: ProbeCounter) -> None:
    with probes.probe("bodies: healthy after", target.name):
        assert target.healthy()

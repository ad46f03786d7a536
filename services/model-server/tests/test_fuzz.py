"""Hypothesis-generated request bodies never get a 5xx and never take the server down."""

from __future__ import annotations

import json
import string
from typing import Any

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ms_testkit import ServerProcess

DATATYPES = ["BOOL", "UINT8", "INT32", "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES", "XX"]
MODELS = ["sklearn-iris", "xgboost-iris", "lightgbm-iris", "onnx-iris"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)

tensor = st.fixed_dictionaries(
    {
        "name": st.sampled_from(["input-0", "input", "x", ""]),
        "shape": st.lists(st.integers(min_value=-2, max_value=6), max_size=3),
        "datatype": st.sampled_from(DATATYPES),
    },
    optional={
        "data": st.lists(
            st.integers(-(2**70), 2**70) | st.floats() | st.booleans() | st.text(max_size=3),
            max_size=30,
        )
        | json_values,
        "parameters": st.dictionaries(
            st.sampled_from(["binary_data_size", "content_type", "binary_data"]),
            st.integers(-5, 64) | st.booleans() | st.text(max_size=3),
            max_size=2,
        ),
    },
)

v2_request = st.fixed_dictionaries(
    {"inputs": st.lists(tensor, max_size=3)},
    optional={
        "id": st.text(max_size=5) | st.integers(),
        "outputs": st.lists(st.fixed_dictionaries({"name": st.text(max_size=8)}), max_size=2)
        | json_values,
        "parameters": st.dictionaries(st.text(max_size=10), json_values, max_size=2),
    },
)

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _assert_no_5xx(response: httpx.Response, body: Any) -> None:
    assert response.status_code < 500, (body, response.status_code, response.text)
    if response.status_code != 200 and response.headers.get("content-type") == "application/json":
        assert "error" in response.json()


@SETTINGS
@given(body=v2_request, model=st.sampled_from(MODELS))
def test_v2_structured_bodies(multi_server: ServerProcess, body: Any, model: str) -> None:
    response = httpx.post(
        f"{multi_server.url}/v2/models/{model}/infer", content=json.dumps(body).encode(), timeout=30
    )
    _assert_no_5xx(response, body)


@SETTINGS
@given(
    body=json_values | st.binary(max_size=64),
    extra=st.binary(max_size=32),
    header_length=st.none()
    | st.integers(-3, 200)
    | st.text(alphabet=string.ascii_letters + string.digits + "-+. ", max_size=4),
)
def test_v2_arbitrary_bytes(
    multi_server: ServerProcess, body: Any, extra: bytes, header_length: Any
) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = (
        {} if header_length is None else {"inference-header-content-length": str(header_length)}
    )
    try:
        response = httpx.post(
            f"{multi_server.url}/v2/models/sklearn-iris/infer",
            content=raw + extra,
            headers=headers,
            timeout=30,
        )
    except httpx.LocalProtocolError:
        return  # the client refused to send that header value; nothing reached the server
    _assert_no_5xx(response, raw + extra)


@SETTINGS
@given(
    body=st.fixed_dictionaries({"instances": json_values}) | json_values,
    model=st.sampled_from(MODELS),
)
def test_v1_bodies(multi_server: ServerProcess, body: Any, model: str) -> None:
    response = httpx.post(
        f"{multi_server.url}/v1/models/{model}:predict",
        content=json.dumps(body).encode(),
        timeout=30,
    )
    _assert_no_5xx(response, body)


def test_server_still_serves_after_fuzzing(multi_server: ServerProcess) -> None:
    assert multi_server.proc.poll() is None
    assert httpx.get(f"{multi_server.url}/v2/health/ready").json() == {"ready": True}

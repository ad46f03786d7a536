"""Codec cost of one V2 REST inference, Wharf's `wharf_protocol.rest` against KServe's.

What is timed per call, for each implementation (same bodies, same numpy data):
- decode: request body bytes -> request object -> input as numpy array;
  KServe: `InferenceRequest.model_validate_json` (what FastAPI does for its typed body) ->
  `InferRequest.from_inference_request` -> `as_numpy()`, or `InferRequest.from_bytes` for the
  binary extension; Wharf: `decode_infer_request` -> `as_numpy()`.
- encode: numpy prediction -> response body bytes;
  KServe: `InferOutput.set_data_from_numpy` -> `InferResponse.to_rest()` -> `orjson.dumps`;
  Wharf: the same objects -> `encode_infer_response`.
Cases: iris (2x4 FP32 JSON in, 2 INT64 out) and a 256x256 FP32 tensor as JSON and binary.

KServe is installed into its own venv under ~/.cache/wharf/bench/ (`uv venv` + `uv pip`) and the
script re-runs itself there with `--impl kserve`.

    uv run python bench/protocol_codec.py [--kserve-version 0.21.0] [--number 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import timeit
from pathlib import Path
from typing import Any

CACHE = Path.home() / ".cache" / "wharf" / "bench"


def _cases() -> dict[str, tuple[bytes, int | None]]:
    import numpy as np
    import orjson

    rng = np.random.default_rng(0)
    iris = [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
    big = rng.random((256, 256), dtype=np.float32)
    tensor = {"name": "input-0", "shape": [256, 256], "datatype": "FP32"}
    header = orjson.dumps({"inputs": [{**tensor, "parameters": {"binary_data_size": big.nbytes}}]})
    iris_body = orjson.dumps(
        {"id": "1", "inputs": [{"name": "input-0", "shape": [2, 4], "datatype": "FP32",
                                "data": iris}]}
    )  # fmt: skip
    return {
        "iris JSON": (iris_body, None),
        "256x256 FP32 JSON": (orjson.dumps({"inputs": [{**tensor, "data": big.tolist()}]}), None),
        "256x256 FP32 binary": (header + big.tobytes(), len(header)),
    }


def _wharf() -> tuple[Any, Any]:
    from wharf_protocol.infer_types import InferOutput, InferResponse
    from wharf_protocol.rest import decode_infer_request, encode_infer_response

    def decode(body: bytes, header_length: int | None) -> Any:
        return decode_infer_request(body, "m", header_length).inputs[0].as_numpy()

    def encode(pred: Any) -> bytes:
        out = InferOutput("output-0", list(pred.shape), "INT64")
        out.set_data_from_numpy(pred)
        return encode_infer_response(InferResponse("1", "m", [out]))[0]

    return decode, encode


def _kserve() -> tuple[Any, Any]:
    import orjson
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
    from kserve.protocol.rest.v2_datamodels import InferenceRequest

    def decode(body: bytes, header_length: int | None) -> Any:
        if header_length is None:
            parsed = InferenceRequest.model_validate_json(body)
            request = InferRequest.from_inference_request(parsed, "m")
        else:
            request = InferRequest.from_bytes(body, header_length, "m")
        return request.inputs[0].as_numpy()

    def encode(pred: Any) -> bytes:
        out = InferOutput("output-0", list(pred.shape), "INT64")
        out.set_data_from_numpy(pred, binary_data=False)
        body, _ = InferResponse("1", "m", [out]).to_rest()
        return body if isinstance(body, bytes) else orjson.dumps(body)

    return decode, encode


def measure(impl: str, number: int) -> dict[str, float]:
    import numpy as np

    decode, encode = _wharf() if impl == "wharf" else _kserve()
    results = {}
    for name, (body, header_length) in _cases().items():
        n = number if "iris" in name else max(number // 50, 20)
        decode(body, header_length)
        best = min(timeit.repeat(lambda: decode(body, header_length), number=n, repeat=5))  # noqa: B023
        results[f"decode {name}"] = best / n * 1e6
    pred = np.array([1, 1], dtype=np.int64)
    best = min(timeit.repeat(lambda: encode(pred), number=number, repeat=5))
    results["encode iris response"] = best / number * 1e6
    return results


def _kserve_python(version: str) -> Path:
    venv = CACHE / f"kserve-{version}"
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run(["uv", "venv", "-q", "-p", "3.11", str(venv)], check=True)
        subprocess.run(
            ["uv", "pip", "install", "-q", "--python", str(python), f"kserve=={version}"],
            check=True,
        )
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--impl", choices=["wharf", "kserve", "both"], default="both")
    parser.add_argument("--kserve-version", default="0.21.0")
    parser.add_argument("--number", type=int, default=2000)
    args = parser.parse_args()
    if args.impl != "both":
        print(json.dumps(measure(args.impl, args.number)))
        return
    ours = measure("wharf", args.number)
    out = subprocess.run(
        [str(_kserve_python(args.kserve_version)), __file__, "--impl", "kserve",
         "--number", str(args.number)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    theirs = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{'case':32} {'KServe us':>10} {'Wharf us':>10} {'speedup':>8}")
    for key, value in ours.items():
        print(f"{key:32} {theirs[key]:10.1f} {value:10.1f} {theirs[key] / value:7.1f}x")


if __name__ == "__main__":
    main()

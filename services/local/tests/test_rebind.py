"""Container args rebound for a local process: ports and mount paths. Pure."""

from __future__ import annotations

from wharf_local.rebind import rebind_args


def test_rebind_args_moves_ports_and_mounts() -> None:
    args = (
        "--model_name=iris",
        "--model_dir=/mnt/models",
        "--http_port=8080",
        "--grpc_port",
        "8081",
        "/mnt/models/sub",
        "--predictor_host=iris-predictor.default",
    )
    assert rebind_args(
        args,
        http_port=40001,
        grpc_port=40002,
        model_dirs={"/mnt/models": "/cache/abc"},
        predictor_host="127.0.0.1:40003",
    ) == (
        "--model_name=iris",
        "--model_dir=/cache/abc",
        "--http_port=40001",
        "--grpc_port",
        "40002",
        "/cache/abc/sub",
        "--predictor_host=127.0.0.1:40003",
    )

"""A runtime written for KServe's images, with no command, runs Wharf's model server. Pure."""

from __future__ import annotations

from wharf_local.images import local_command, repository


def test_kserve_images_map_to_the_model_server_with_their_format() -> None:
    assert local_command("kserve/sklearnserver:latest") == (
        "wharf-model-server",
        "--model-format=sklearn",
    )
    assert local_command("docker.io/kserve/xgbserver:v0.14.0") == (
        "wharf-model-server",
        "--model-format=xgboost",
    )
    assert local_command("kserve/lgbserver@sha256:abc") == (
        "wharf-model-server",
        "--model-format=lightgbm",
    )
    assert local_command("ghcr.io/wharf-serving/model-server:0.1.0") == ("wharf-model-server",)


def test_other_images_have_no_local_command() -> None:
    assert local_command("my-registry:5000/team/custom-model:1") is None
    assert local_command(None) is None
    assert repository("my-registry:5000/team/custom-model:1") == "custom-model"


def test_the_model_server_without_a_grpc_port_serves_no_grpc() -> None:
    from wharf_api.plan import ComponentPlan, ContainerPlan, ScalingPlan
    from wharf_local.launch import replica_process

    container = ContainerPlan(
        "kserve-container", "kserve/sklearnserver:latest", (), ("--http_port=8080",)
    )
    plan = ComponentPlan(
        "predictor", "m-predictor", container, "v1", ScalingPlan(1, 1, "concurrency", 1),
        grpc_port=None,
    )  # fmt: skip
    argv, env = replica_process(plan, http_port=4000, grpc_port=None, model_dirs={}, predictor=None)
    assert argv[0].endswith("wharf-model-server")
    assert "--model-format=sklearn" in argv and "--enable_grpc=false" in argv
    assert "--http_port=4000" in argv and env["PORT"] == "4000"

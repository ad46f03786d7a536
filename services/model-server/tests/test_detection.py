"""Which runtime a directory gets: the pure decision from file names (and a .bst's first bytes)."""

from __future__ import annotations

import pytest

from wharf_model_server.errors import ModelMissingError
from wharf_model_server.runtimes.detection import choose_model_file


def _choose(files: list[str], fmt: str | None = None, head: bytes = b"\x00binary") -> str:
    chosen = choose_model_file("/m", files, fmt, lambda _f: head)
    return f"{chosen.model_format}:{chosen.path}"


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        (["model.joblib"], "sklearn:/m/model.joblib"),
        (["model.pkl", "README.txt"], "sklearn:/m/model.pkl"),
        (["model.pickle", "config.json"], "sklearn:/m/model.pickle"),
        (["model.onnx"], "onnx:/m/model.onnx"),
        (["model.ubj"], "xgboost:/m/model.ubj"),
        (["model.json"], "xgboost:/m/model.json"),
        (["model.txt"], "lightgbm:/m/model.txt"),
        (["model.bst"], "xgboost:/m/model.bst"),
    ],
)
def test_format_from_files(files: list[str], expected: str) -> None:
    assert _choose(files) == expected


def test_bst_written_by_lightgbm() -> None:
    assert _choose(["model.bst"], head=b"tree\nversion=v4\n") == "lightgbm:/m/model.bst"


def test_model_format_flag_wins() -> None:
    assert _choose(["model.json", "notes.txt"], "xgboost") == "xgboost:/m/model.json"
    assert _choose(["model.bst"], "LightGBM") == "lightgbm:/m/model.bst"
    assert _choose(["m.pkl"], "scikit-learn") == "sklearn:/m/m.pkl"


def test_no_model_file_means_multi_model_mode() -> None:
    with pytest.raises(ModelMissingError):
        _choose(["README.md"])
    with pytest.raises(ModelMissingError):
        _choose(["model.joblib"], "onnx")


def test_two_candidates_are_an_error_naming_them() -> None:
    with pytest.raises(ValueError, match=r"a\.joblib, b\.pkl"):
        _choose(["a.joblib", "b.pkl"])


def test_unknown_format_is_named() -> None:
    with pytest.raises(ValueError, match="'tensorflow' is not one of"):
        _choose(["model.joblib"], "tensorflow")


def test_cgroup_cpu_limit() -> None:
    from wharf_model_server.executor import cgroup_cpu_limit

    assert cgroup_cpu_limit("max 100000") is None
    assert cgroup_cpu_limit("200000 100000\n") == 2
    assert cgroup_cpu_limit("50000 100000") == 1
    assert cgroup_cpu_limit("150000 100000") == 2
    assert cgroup_cpu_limit("garbage") is None

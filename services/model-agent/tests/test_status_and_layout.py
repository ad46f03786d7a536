"""The status patch, the cache layout's names, and quantities."""

from __future__ import annotations

import pytest

from wharf_model_agent import status
from wharf_model_agent.layout import is_valid_model_name, marker_name, owner_of, parse_marker
from wharf_model_agent.quantity import parse_bytes
from wharf_model_agent.status import status_patch


def test_no_patch_when_the_status_is_already_reported() -> None:
    current = {"modelStatus": {"a": status.DOWNLOADED}}
    assert status_patch(current, {"a": status.DOWNLOADED}, {}) is None


def test_the_patch_sets_changes_and_removes_dropped_models() -> None:
    current = {
        "modelStatus": {"a": status.DOWNLOADED, "b": status.ERROR},
        "modelErrors": {"b": "boom"},
    }
    patch = status_patch(current, {"a": status.DOWNLOADED, "c": status.DOWNLOADING}, {})
    assert patch == {
        "status": {
            "modelStatus": {"c": status.DOWNLOADING, "b": None},
            "modelErrors": {"b": None},
        }
    }


def test_the_first_report_sets_everything() -> None:
    patch = status_patch(None, {"a": status.ERROR}, {"a": "SourceNotFound: s3://b/a"})
    assert patch == {
        "status": {
            "modelStatus": {"a": status.ERROR},
            "modelErrors": {"a": "SourceNotFound: s3://b/a"},
        }
    }


def test_partials_belong_to_their_model() -> None:
    assert owner_of(".llama.wharf-partial") == "llama"
    assert owner_of("llama") == "llama"
    assert owner_of(".stray") == ".stray"


def test_markers_round_trip_names_with_dots() -> None:
    assert parse_marker(marker_name("llama.v3", "ab12")) == ("llama.v3", "ab12")
    assert parse_marker("README") is None


@pytest.mark.parametrize("name", ["llama", "meta-llama3-8b", "a.b", "x1"])
def test_valid_model_names(name: str) -> None:
    assert is_valid_model_name(name)


@pytest.mark.parametrize("name", ["", ".", "..", "a/b", "../x", "a..b", "Upper", "-x", ".hidden"])
def test_names_that_are_not_one_safe_folder(name: str) -> None:
    assert not is_valid_model_name(name)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1024, 1024),
        ("1024", 1024),
        ("1.7T", 1_700_000_000_000),
        ("500Gi", 500 * 2**30),
        ("1700G", 1_700_000_000_000),
        ("1Ki", 1024),
        ("1e3", 1000),
        ("1500m", 2),  # storage is whole bytes, rounded up
    ],
)
def test_quantities(value: int | str, expected: int) -> None:
    assert parse_bytes(value) == expected


@pytest.mark.parametrize("value", ["lots", "1.7TB", "-1Gi", ""])
def test_bad_quantities_are_refused_naming_the_value(value: str) -> None:
    with pytest.raises(ValueError, match=r"quantity|negative"):
        parse_bytes(value)

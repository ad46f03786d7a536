"""Every KServe manifest from the seeds and the KServe docs parses, defaults and validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from wharf_api import default, load_documents, parse_object, validate

FIXTURES = Path(__file__).parent / "fixtures"
VALID = sorted([*FIXTURES.glob("seeds/*.yaml"), *FIXTURES.glob("kserve-docs/*.yaml")])


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_is_accepted(path: Path) -> None:
    (doc,) = load_documents(path)
    obj = parse_object(doc)
    validate(obj)
    validate(default(obj))


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_defaulting_is_idempotent(path: Path) -> None:
    (doc,) = load_documents(path)
    once = default(parse_object(doc))
    assert default(once) == once
    assert default(once).to_dict() == once.to_dict()


@pytest.mark.parametrize("path", VALID, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_json_round_trip_is_lossless(path: Path) -> None:
    (doc,) = load_documents(path)
    for obj in (parse_object(doc), default(parse_object(doc))):
        dumped = obj.model_dump(mode="json", by_alias=True, exclude_none=True)
        again = parse_object(dumped)
        assert again == obj
        assert again.model_dump(mode="json", by_alias=True, exclude_none=True) == dumped


def test_every_kind_has_a_fixture() -> None:
    from wharf_api.registry import iter_resources

    kinds = {parse_object(load_documents(p)[0]).kind for p in VALID}
    assert kinds == {info.kind for info in iter_resources()}


def test_seed_manifests_keep_their_kubernetes_fields() -> None:
    (doc,) = load_documents(FIXTURES / "seeds" / "002-inferenceservice-sklearn-grpc.yaml")
    dumped = parse_object(doc).to_dict()
    assert dumped["spec"]["predictor"]["model"]["ports"] == [
        {"name": "h2c", "protocol": "TCP", "containerPort": 9000}
    ]

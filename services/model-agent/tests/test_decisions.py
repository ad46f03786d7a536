"""What to fetch, delete, cancel and report, decided from spec, cache and memory."""

from __future__ import annotations

from wharf_model_agent import status
from wharf_model_agent.decisions import (
    CachedModel,
    Failure,
    WantedModel,
    plan,
    record_failure,
    storage_limit,
)
from wharf_model_agent.layout import uri_key

LLAMA = WantedModel("llama", "s3://models/llama", "workers")
BERT = WantedModel("bert", "hf://google/bert", "workers")


def complete(model: WantedModel, size: int = 100) -> CachedModel:
    return CachedModel(
        entries=frozenset({model.name}), markers=frozenset({model.key}), has_dir=True, bytes=size
    )


def test_a_new_model_is_fetched_and_reported_downloading() -> None:
    p = plan([LLAMA], {}, {}, {}, now=0)
    assert p.start == (LLAMA,)
    assert p.model_status == {"llama": status.DOWNLOADING}
    assert not p.delete_entries and not p.delete_markers


def test_a_complete_model_is_kept_and_not_fetched_again() -> None:
    p = plan([LLAMA], {"llama": complete(LLAMA, 123)}, {}, {}, now=0)
    assert p.start == ()
    assert p.model_status == {"llama": status.DOWNLOADED}
    assert p.cache_bytes == 123


def test_a_folder_without_marker_is_fetched_again_to_finish_it() -> None:
    # A crash between the rename and the marker leaves a folder and no marker: the download
    # call resumes or returns at once; it must not count as complete before it does.
    folder_only = CachedModel(entries=frozenset({"llama"}), has_dir=True)
    p = plan([LLAMA], {"llama": folder_only}, {}, {}, now=0)
    assert p.start == (LLAMA,)
    assert not p.delete_entries


def test_an_unfinished_partial_is_kept_for_the_resume() -> None:
    partial = CachedModel(entries=frozenset({".llama.wharf-partial"}))
    p = plan([LLAMA], {"llama": partial}, {}, {}, now=0)
    assert p.start == (LLAMA,)
    assert p.delete_entries == ()


def test_a_model_no_longer_listed_is_deleted_with_its_marker_and_partial() -> None:
    cached = CachedModel(
        entries=frozenset({"bert", ".bert.wharf-partial"}),
        markers=frozenset({BERT.key}),
        has_dir=True,
        bytes=5,
    )
    p = plan([LLAMA], {"llama": complete(LLAMA), "bert": cached}, {}, {}, now=0)
    assert set(p.delete_entries) == {"bert", ".bert.wharf-partial"}
    assert p.delete_markers == (("bert", BERT.key),)
    assert "bert" not in p.model_status
    assert p.cache_bytes == 100


def test_a_download_no_longer_wanted_is_cancelled_before_its_folder_is_deleted() -> None:
    partial = CachedModel(entries=frozenset({".bert.wharf-partial"}))
    p = plan([LLAMA], {"bert": partial}, {"bert": BERT.key}, {}, now=0)
    assert p.cancel == ("bert",)
    assert p.delete_entries == ()  # next reconcile, once the download has stopped


def test_a_changed_uri_replaces_the_folder() -> None:
    moved = WantedModel("llama", "s3://other/llama")
    p = plan([moved], {"llama": complete(LLAMA)}, {}, {}, now=0)
    assert p.delete_markers == (("llama", LLAMA.key),)
    assert p.delete_entries == ("llama",)
    assert p.start == ()  # after the old copy is gone
    assert p.model_status == {"llama": status.PENDING}
    after = plan([moved], {}, {}, {}, now=0)
    assert after.start == (moved,)


def test_a_changed_uri_cancels_the_download_of_the_old_one() -> None:
    moved = WantedModel("llama", "s3://other/llama")
    p = plan([moved], {}, {"llama": LLAMA.key}, {}, now=0)
    assert p.cancel == ("llama",)
    assert p.model_status == {"llama": status.PENDING}


def test_a_marker_whose_folder_vanished_is_dropped_and_the_model_fetched() -> None:
    marker_only = CachedModel(markers=frozenset({LLAMA.key}))
    p = plan([LLAMA], {"llama": marker_only}, {}, {}, now=0)
    assert p.delete_markers == (("llama", LLAMA.key),)
    assert p.start == (LLAMA,)


def test_a_failure_is_reported_with_its_reason_until_the_retry_is_due() -> None:
    failure = Failure(key=LLAMA.key, reason="SourceNotFound: no such key", attempts=1, retry_at=10)
    waiting = plan([LLAMA, BERT], {}, {}, {"llama": failure}, now=5)
    assert waiting.model_status == {"llama": status.ERROR, "bert": status.DOWNLOADING}
    assert waiting.model_errors == {"llama": "SourceNotFound: no such key"}
    assert waiting.start == (BERT,)
    due = plan([LLAMA], {}, {}, {"llama": failure}, now=10)
    assert due.start == (LLAMA,)
    assert due.model_errors == {}


def test_a_failure_of_an_older_uri_does_not_hold_back_the_new_one() -> None:
    failure = Failure(key=uri_key("s3://old"), reason="gone", attempts=3, retry_at=1e9)
    p = plan([LLAMA], {}, {}, {"llama": failure}, now=0)
    assert p.start == (LLAMA,)


def test_retries_back_off_and_restart_for_a_new_uri() -> None:
    first = record_failure(None, "k", "boom", now=100)
    second = record_failure(first, "k", "boom", now=200)
    assert (first.attempts, first.retry_at) == (1, 110)
    assert (second.attempts, second.retry_at) == (2, 220)
    many = first
    for _ in range(20):
        many = record_failure(many, "k", "boom", now=0)
    assert many.retry_at == 600
    assert record_failure(many, "other", "boom", now=0).attempts == 1


def test_parallel_downloads_are_bounded_and_the_rest_wait_pending() -> None:
    models = [WantedModel(f"m{i}", f"s3://b/m{i}") for i in range(4)]
    p = plan(models, {}, {"m0": models[0].key}, {}, max_parallel=2, now=0)
    assert [m.name for m in p.start] == ["m1"]
    assert p.model_status == {
        "m0": status.DOWNLOADING,
        "m1": status.DOWNLOADING,
        "m2": status.PENDING,
        "m3": status.PENDING,
    }


def test_the_storage_limit_is_handed_out_in_spec_order() -> None:
    p = plan(
        [LLAMA, BERT],
        {},
        {},
        {},
        declared_sizes={"llama": 70, "bert": 40},
        limit=100,
        now=0,
    )
    assert p.start == (LLAMA,)
    assert p.model_status["bert"] == status.ERROR
    assert "needs 40 bytes" in p.model_errors["bert"]
    assert "storage limit is 100 bytes with 70 in use" in p.model_errors["bert"]


def test_complete_models_keep_their_space_and_a_removal_frees_it() -> None:
    cache = {"llama": complete(LLAMA, 70)}
    full = plan([LLAMA, BERT], cache, {}, {}, declared_sizes={"bert": 40}, limit=100, now=0)
    assert full.start == ()
    assert full.model_status == {"llama": status.DOWNLOADED, "bert": status.ERROR}
    freed = plan([BERT], cache, {}, {}, declared_sizes={"bert": 40}, limit=100, now=0)
    assert freed.delete_entries == ("llama",)
    assert freed.start == (BERT,)


def test_invalid_and_duplicate_names_fail_alone() -> None:
    evil = WantedModel("../etc", "s3://b/x")
    twin = WantedModel("llama", "s3://b/twin")
    p = plan([evil, LLAMA, twin], {}, {}, {}, now=0)
    assert p.model_status == {"../etc": status.ERROR, "llama": status.DOWNLOADING}
    assert "not a valid folder name" in p.model_errors["../etc"]
    assert p.start == (LLAMA,)


def test_the_tightest_node_group_limit_applies() -> None:
    assert storage_limit({"a": 10, "b": 5}, ["a", "b", None]) == 5
    assert storage_limit({"a": 10}, ["c", None]) is None
    assert storage_limit({}, []) is None

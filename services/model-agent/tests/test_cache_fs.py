"""The cache folder as the agent reads and changes it."""

from __future__ import annotations

from pathlib import Path

from wharf_model_agent import cache_fs
from wharf_model_agent.layout import CacheLayout


def test_a_scan_groups_folders_partials_and_markers_by_model(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    cache_fs.prepare(layout)
    (layout.model_dir("iris") / "sub").mkdir(parents=True)
    (layout.model_dir("iris") / "model.joblib").write_bytes(b"x" * 10)
    (layout.model_dir("iris") / "sub" / "vocab.txt").write_bytes(b"y" * 5)
    (layout.model_dir("iris") / "link").symlink_to(layout.model_dir("iris") / "model.joblib")
    cache_fs.write_marker(layout, "iris", "k1", files=2, size=15)
    (layout.models_dir / ".bert.wharf-partial").mkdir()
    cache_fs.write_marker(layout, "gone", "k2", files=1, size=1)

    cache = cache_fs.scan(layout)

    assert cache["iris"].has_dir and cache["iris"].markers == {"k1"}
    assert cache["iris"].bytes == 15  # regular files only, links not counted
    assert cache["bert"].entries == {".bert.wharf-partial"} and not cache["bert"].has_dir
    assert cache["bert"].bytes == 0
    assert cache["gone"].markers == {"k2"} and not cache["gone"].entries


def test_deleting_entries_and_markers(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    cache_fs.prepare(layout)
    layout.model_dir("iris").mkdir()
    (layout.model_dir("iris") / "model.joblib").write_bytes(b"x")
    (layout.models_dir / "stray-file").write_bytes(b"x")
    cache_fs.write_marker(layout, "iris", "k1", files=1, size=1)

    cache_fs.delete_marker(layout, "iris", "k1")
    cache_fs.delete_entry(layout, "iris")
    cache_fs.delete_entry(layout, "stray-file")
    cache_fs.delete_entry(layout, "never-there")

    assert cache_fs.scan(layout) == {}

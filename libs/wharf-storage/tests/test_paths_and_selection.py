"""Where names may land (pure) and which keys a prefix selects (KServe #3776)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest

from wharf_storage import UnsafePath
from wharf_storage.objects import remote_objects, select_keys
from wharf_storage.paths import join_inside, safe_relpath


@pytest.mark.parametrize(
    ("name", "rel"),
    [("a/b.txt", "a/b.txt"), ("./a//b", "a/b"), ("a/./b/", "a/b"), ("..a/b..", "..a/b..")],
)
def test_safe_names(name: str, rel: str) -> None:
    assert safe_relpath(name) == PurePosixPath(rel)


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "a/../../x",
        "a/..",
        "/etc/passwd",
        "\\\\server\\share",
        "C:/x",
        "a\\..\\x",
        "",
        ".",
        "a\x00b",
    ],
)
def test_unsafe_names(name: str) -> None:
    with pytest.raises(UnsafePath):
        safe_relpath(name)


def test_join_refuses_a_path_through_a_link_leaving_the_root(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(UnsafePath):
        join_inside(root, PurePosixPath("link/x"))
    assert join_inside(root, PurePosixPath("d/x")) == root / "d" / "x"


KEYS = ["model/a", "model/sub/b", "model-hf/c", "model", "model.bak", "other/d", "model/dir/"]


@pytest.mark.parametrize(
    ("prefix", "selected"),
    [
        ("model", [("model/a", "a"), ("model/sub/b", "sub/b")]),
        ("model/", [("model/a", "a"), ("model/sub/b", "sub/b")]),
        ("model/sub", [("model/sub/b", "b")]),
        ("model.bak", [("model.bak", "model.bak")]),
        ("model/a", [("model/a", "a")]),
        ("mod", []),
        ("", [(k, k) for k in KEYS if not k.endswith("/")]),
    ],
)
def test_prefix_is_a_folder_boundary(prefix: str, selected: list[tuple[str, str]]) -> None:
    assert select_keys(KEYS, prefix) == selected


def test_file_and_folder_with_one_name_is_refused() -> None:
    with pytest.raises(UnsafePath, match="both a file and a folder"):
        remote_objects([("m/a", 1, None), ("m/a/b", 1, None)], "m")

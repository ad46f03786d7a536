"""The committed gRPC modules are what protos/ generates, and the check notices drift."""

from __future__ import annotations

import shutil
from pathlib import Path

from wharf_protocol import codegen


def test_generated_code_is_fresh() -> None:
    stale = codegen.stale_files(codegen.default_proto_dir())
    assert stale == [], f"run `make protos`: {stale} differ from protos/"


def test_check_fails_when_the_proto_changes(tmp_path: Path) -> None:
    proto_dir = tmp_path / "inference"
    shutil.copytree(codegen.default_proto_dir(), proto_dir)
    proto = proto_dir / f"{codegen.PROTO_NAME}.proto"
    proto.write_text(proto.read_text() + "\nmessage Extra { string x = 1; }\n")
    assert codegen.main(["--proto-dir", str(proto_dir), "--check"]) == 1


def test_generated_grpc_module_imports_its_messages_by_package() -> None:
    text = (codegen.GENERATED_DIR / f"{codegen.PROTO_NAME}_pb2_grpc.py").read_text()
    assert f"from wharf_protocol._generated import {codegen.PROTO_NAME}_pb2" in text


def test_write_produces_what_check_expects(tmp_path: Path) -> None:
    codegen.write(codegen.default_proto_dir(), tmp_path)
    assert codegen.stale_files(codegen.default_proto_dir(), tmp_path) == []

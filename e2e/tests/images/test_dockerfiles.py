"""The service images: one Dockerfile per service, multi-stage, a pinned base, a numeric
non-root user, no build tools in the final stage, `uv sync --frozen --no-editable` of a real
member, an entrypoint that is the member's console script, names from one scheme, and hadolint.

No image is built here (no container engine on these machines): the `uv sync` line each
Dockerfile runs is run as a dry run against this checkout instead.

The Dockerfile reader below is small, enough for the files in this repository: comments and line continuations
(`\\`), one instruction per logical line, `FROM image [AS name]` starting a stage.
"""

from __future__ import annotations

import ast
import fnmatch
import json
import os
import re
import shlex
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from wharf_e2e.setup_gate import INSTALL_TEST_TOOLS, failure_note, wait_for_setup

ROOT = Path(__file__).resolve().parents[3]
SERVICES = (
    "controller",
    "model-server",
    "storage-initializer",
    "model-agent",
    "router",
    "llm-worker",
)
REGISTRY = "ghcr.io/wharf-serving"
ENGINE_ENV = "services/llm-worker/engine-env"
CACHE = Path(os.environ.get("WHARF_CACHE", Path.home() / ".cache" / "wharf"))


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def instructions(text: str) -> list[Instruction]:
    out: list[Instruction] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        logical = " ".join(part for part in pending if part)
        pending = []
        keyword, _, args = logical.partition(" ")
        out.append(Instruction(keyword.upper(), args.strip(), start))
    assert not pending, "a Dockerfile ends inside a continued line"
    return out


def stages(path: Path) -> list[Stage]:
    found: list[Stage] = []
    for ins in instructions(path.read_text()):
        if ins.keyword == "FROM":
            words = ins.args.split()
            flags = [w for w in words if w.startswith("--")]
            assert not flags, f"{path}:{ins.line}: FROM flags are not expected here: {flags}"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"{path}:{ins.line}: cannot read FROM {ins.args}"
            found.append(Stage(base=words[0], name=name))
        else:
            assert found, f"{path}:{ins.line}: {ins.keyword} before the first FROM"
            found[-1].instructions.append(ins)
    return found


def dockerfile(service: str) -> Path:
    return ROOT / "services" / service / "Dockerfile"


def uv_sync_words(stage: Stage) -> list[str]:
    """The words of the one `uv sync` command a stage runs (RUN flags such as --mount dropped)."""
    found: list[list[str]] = []
    for ins in stage.all("RUN"):
        words = shlex.split(ins.args)
        while words and words[0].startswith("--mount"):
            words = words[1:]
        for command in " ".join(words).split("&&"):
            parts = shlex.split(command)
            if parts[:2] == ["uv", "sync"]:
                found.append(parts)
    assert len(found) == 1, f"expected one `uv sync` in stage {stage.name}, found {len(found)}"
    return found[0]


def flag_value(words: list[str], flag: str) -> str | None:
    for i, word in enumerate(words):
        if word == flag and i + 1 < len(words):
            return words[i + 1]
        if word.startswith(flag + "="):
            return word.split("=", 1)[1]
    return None


def load_toml(path: Path) -> dict[str, object]:
    with path.open("rb") as f:
        return tomllib.load(f)


def workspace_members() -> dict[str, Path]:
    """Project name -> member folder, from the root pyproject's workspace members."""
    root = load_toml(ROOT / "pyproject.toml")
    members = root["tool"]["uv"]["workspace"]["members"]  # type: ignore[index]
    out: dict[str, Path] = {}
    for member in members:  # type: ignore[union-attr]
        folder = ROOT / member
        name = load_toml(folder / "pyproject.toml")["project"]["name"]  # type: ignore[index]
        out[str(name)] = folder
    return out


def tools_required() -> bool:
    return os.environ.get("WHARF_STORAGE_REQUIRED") == "1" or os.environ.get("CI") == "true"


def find_tool(name: str, cached: Path) -> Path:
    """The tool scripts/install-test-tools installs (its cache first, then PATH); a missing one
    skips the test with the reason, or fails it where tools are required (CI)."""
    wait_for_setup()
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    on_path = shutil.which(name)
    if on_path:
        return Path(on_path)
    reason = f"{name} is not installed (looked in {cached} and on PATH){failure_note(INSTALL_TEST_TOOLS)}"
    if tools_required():
        pytest.fail(f"{reason}; CI needs it (run scripts/install-test-tools)")
    pytest.skip(f"{reason}; run scripts/install-test-tools")


# --- the tests ---------------------------------------------------------------------------------

PINNED_PYTHON = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
PINNED_ANY = re.compile(r"^[\w./-]+:[\w.-]+(@sha256:[0-9a-f]{64})?$")
BUILD_TOOLS = ("uv", "pip", "gcc", "g++", "make", "build-essential", "git", "cargo", "rustc")


def test_every_service_has_one_dockerfile() -> None:
    have = sorted(p.parent.name for p in (ROOT / "services").glob("*/Dockerfile"))
    # `wharf` (services/local) is the CLI people install with uv; it is not an image.
    assert have == sorted(SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_multi_stage_on_a_pinned_base(service: str) -> None:
    path = dockerfile(service)
    found = stages(path)
    assert len(found) >= 2, f"{path}: expected a build stage and a final stage"
    named = {s.name for s in found if s.name}
    for stage in found:
        if stage.base in named:
            continue  # FROM an earlier stage
        assert PINNED_ANY.match(stage.base), f"{path}: base {stage.base} is not pinned by tag"
        assert not stage.base.endswith(":latest"), f"{path}: base {stage.base} uses latest"
    final, build = found[-1], found[-2]
    assert PINNED_PYTHON.match(final.base), f"{path}: final base {final.base}"
    assert build.base == final.base, "the venv is built on the Python it runs on"


@pytest.mark.parametrize("service", SERVICES)
def test_final_stage_runs_as_a_numeric_non_root_user_without_build_tools(service: str) -> None:
    path = dockerfile(service)
    final = stages(path)[-1]
    users = final.all("USER")
    assert users, f"{path}: the final stage sets no USER"
    uid, _, gid = users[-1].args.partition(":")
    assert uid.isdigit() and int(uid) > 0, f"{path}: USER {users[-1].args} is not a numeric uid"
    assert not gid or (gid.isdigit() and int(gid) > 0), f"{path}: USER group {gid}"
    for ins in final.all("COPY"):
        assert "--from=uv" not in ins.args, f"{path}:{ins.line}: uv is copied into the final stage"
        assert "--from=build" in ins.args, f"{path}:{ins.line}: the final stage copies {ins.args}"
    for ins in final.all("RUN"):
        words = set(shlex.split(ins.args.replace("&&", " ")))
        tools = sorted(words & set(BUILD_TOOLS))
        assert not tools, f"{path}:{ins.line}: the final stage installs or runs {tools}"
        assert "pip" not in ins.args, f"{path}:{ins.line}: pip in the final stage"


@pytest.mark.parametrize("service", SERVICES)
def test_build_stage_syncs_a_real_member_frozen_and_not_editable(service: str) -> None:
    path = dockerfile(service)
    words = uv_sync_words(stages(path)[-2])
    assert "--frozen" in words and "--no-editable" in words, f"{path}: {' '.join(words)}"
    package = flag_value(words, "--package")
    members = workspace_members()
    if service == "llm-worker":
        # ADR 0004: the worker's image is the engine environment, its own project and lock.
        assert package is None and flag_value(words, "--project") == ENGINE_ENV, words
        engine = load_toml(ROOT / ENGINE_ENV / "pyproject.toml")
        deps = engine["project"]["dependencies"]  # type: ignore[index]
        assert "wharf-llm-worker" in deps, "the engine environment must install the worker"
        assert (ROOT / ENGINE_ENV / "uv.lock").is_file()
    else:
        assert package in members, f"{path}: --package {package} is not a workspace member"
        assert members[package] == ROOT / "services" / service, (
            f"{path}: builds {package}, which is not services/{service}"
        )


def _uv() -> str:
    # `uv run` exports UV (the uv binary it is); outside it, PATH
    found = os.environ.get("UV") or shutil.which("uv")
    if not found:
        if tools_required():
            pytest.fail("uv is not on PATH")
        pytest.skip("uv is not on PATH (scripts/test puts it there)")
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_the_sync_command_resolves_from_the_lock(service: str, tmp_path: Path) -> None:
    """The Dockerfile's own `uv sync` words, run as a dry run against this checkout: an unknown
    member, a stale lock (--frozen with a changed dependency set) or a bad flag fails here."""
    words = uv_sync_words(stages(dockerfile(service))[-2])
    env = {**os.environ, "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"), "UV_OFFLINE": "1"}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [_uv(), *words[1:], "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    plan = done.stderr + done.stdout
    wanted = "wharf-llm-worker" if service == "llm-worker" else f"wharf-{service}"
    assert re.search(rf"^ \+ {re.escape(wanted)}[ =@]", plan, re.M), plan
    for dev_only in ("pytest", "ruff", "mypy"):
        assert not re.search(rf"^ \+ {dev_only}[ =]", plan, re.M), f"{dev_only} would be installed"
    assert not (tmp_path / "venv").exists(), "a dry run must not create the environment"


def _console_scripts(member: Path) -> dict[str, str]:
    project = load_toml(member / "pyproject.toml")["project"]
    return dict(project.get("scripts", {}))  # type: ignore[union-attr]


@pytest.mark.parametrize("service", SERVICES)
def test_the_entrypoint_is_a_console_script_of_the_member(service: str) -> None:
    path = dockerfile(service)
    final = stages(path)[-1]
    entry = final.all("ENTRYPOINT")
    assert entry, f"{path}: no ENTRYPOINT"
    argv = json.loads(entry[-1].args)  # the exec form: signals reach the server itself
    assert isinstance(argv, list) and argv, f"{path}: ENTRYPOINT {entry[-1].args}"
    member = ROOT / "services" / service
    scripts = _console_scripts(member)
    assert argv[0] in scripts, f"{path}: {argv[0]} is not a console script of {member.name}"
    module, _, func = scripts[argv[0]].partition(":")
    source = member / "src" / Path(*module.split("."))
    file = (
        source.with_suffix(".py") if source.with_suffix(".py").is_file() else source / "__init__.py"
    )
    assert file.is_file(), f"{scripts[argv[0]]}: no module file {file}"
    tree = ast.parse(file.read_text())
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    assert func in defined, f"{file}: no function {func} for console script {argv[0]}"


def test_llm_worker_image_points_the_worker_at_its_own_interpreter() -> None:
    # wharf_llm_worker.engine_env looks for the engine's python; in the image that is the venv.
    final = stages(dockerfile("llm-worker"))[-1]
    env = " ".join(i.args for i in final.all("ENV"))
    assert "WHARF_LLM_ENGINE_PYTHON=/opt/wharf/venv/bin/python" in env
    assert any("/opt/wharf/venv" in i.args for i in final.all("COPY"))


def _build_commands() -> list[list[str]]:
    done = subprocess.run(
        ["bash", str(ROOT / "scripts" / "build-images"), "--print"],
        env={**os.environ, "WHARF_IMAGE_BUILDER": "docker"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return [shlex.split(line) for line in done.stdout.splitlines()]


def test_image_names_follow_the_scheme_and_the_package_versions() -> None:
    commands = _build_commands()
    members = workspace_members()
    built = {}
    for words in commands:
        dockerfile_path = flag_value(words, "-f")
        name = flag_value(words, "-t")
        assert dockerfile_path and name and words[-1] == ".", words  # repository root as context
        service = Path(dockerfile_path).parent.name
        repo, _, tag = name.rpartition(":")
        assert repo == f"{REGISTRY}/{service}", name
        project = members[f"wharf-{service}"]
        version = load_toml(project / "pyproject.toml")["project"]["version"]  # type: ignore[index]
        assert tag == version, f"{name}: the tag is not wharf-{service}'s version {version}"
        built[service] = name
    assert sorted(built) == sorted(SERVICES)


# Image names the code refers to that no Dockerfile here builds, and why (kept true below).
# None today: KServe's agent sidecar keys (`agent`, `logger`, `batcher`) name the model server.
KNOWN_UNBUILT: dict[str, str] = {}


def test_every_image_the_code_deploys_is_built_here() -> None:
    pattern = re.compile(rf"{re.escape(REGISTRY)}/([a-z0-9-]+):([\w.-]+)")
    referenced: dict[str, set[str]] = {}
    for src in [*(ROOT / "libs").glob("*/src"), *(ROOT / "services").glob("*/src")]:
        for py in src.rglob("*.py"):
            for name, tag in pattern.findall(py.read_text()):
                referenced.setdefault(name, set()).add(tag)
    built = {
        Path(flag_value(w, "-f") or "").parent.name: flag_value(w, "-t") for w in _build_commands()
    }
    for name, tags in sorted(referenced.items()):
        if name in KNOWN_UNBUILT:
            continue
        assert name in built, f"the code deploys {REGISTRY}/{name}, which no Dockerfile builds"
        assert {f"{REGISTRY}/{name}:{t}" for t in tags} == {built[name]}, (name, tags)
    assert set(KNOWN_UNBUILT) <= set(referenced), "KNOWN_UNBUILT names an image nothing uses"


# --- the linter --------------------------------------------------------------------------------


def _hadolint() -> Path:
    return find_tool("hadolint", CACHE / "lint-tools" / "bin" / "hadolint")


@pytest.mark.setup_tools  # hadolint, from scripts/install-test-tools
@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_passes(service: str) -> None:
    done = subprocess.run(
        [str(_hadolint()), "--no-color", str(dockerfile(service))],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.setup_tools
def test_hadolint_fails_an_unpinned_root_image(tmp_path: Path) -> None:
    # The negative control: the linter really runs and really rejects.
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install flask\nCMD python app.py\n")
    done = subprocess.run(
        [str(_hadolint()), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode != 0
    assert "DL3007" in done.stdout, done.stdout  # `latest`
    assert "DL3013" in done.stdout, done.stdout  # unpinned pip install


def _allowed_by_dockerignore() -> list[str]:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*", ".dockerignore is an allow-list: it starts by leaving everything out"
    return [line[1:].rstrip("/") for line in lines if line.startswith("!")]


def test_the_build_context_holds_every_workspace_member() -> None:
    # uv reads every member's pyproject.toml even for one --package: a member the context
    # leaves out breaks every image's build.
    allowed = _allowed_by_dockerignore()
    needed = ["pyproject.toml", "uv.lock", f"{ENGINE_ENV}/pyproject.toml", f"{ENGINE_ENV}/uv.lock"]
    for folder in workspace_members().values():
        relative = folder.relative_to(ROOT).as_posix()
        needed.append(f"{relative}/pyproject.toml")
        if folder.parent.name in ("libs", "services"):
            needed.append(f"{relative}/src")  # what the images install
    for path in needed:
        assert any(fnmatch.fnmatchcase(path, pattern) for pattern in allowed), (
            f"{path} is not in the build context (.dockerignore)"
        )
        assert (ROOT / path).exists(), path

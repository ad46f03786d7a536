# shellcheck shell=bash
# Make `uv` runnable for the calling script and everything it starts. Sourced by every script
# (scripts/quickstart, scripts/test, scripts/wharf, .ci/run):
#
#     source "$root/scripts/lib/uv.sh"
#
# uv is looked for on PATH, then where `pip install --user` puts it (~/.local/bin, or the
# user base's bin: `python3 -m site --user-base`), then in Wharf's own venv under
# ~/.cache/wharf/uv-venv. When it is nowhere it is installed with `pip install --user`, or into
# that venv when pip refuses user installs (an externally managed Python, or a virtualenv).
# The folder it is found in is put first on PATH and exported, so later commands (make, uv run,
# the scripts the caller starts) find it too.

_wharf_uv_dirs() {
    printf '%s\n' "$HOME/.local/bin"
    local base
    if base="$(python3 -m site --user-base 2>/dev/null)" && [ -n "$base" ]; then
        printf '%s\n' "$base/bin"
    fi
    printf '%s\n' "${WHARF_UV_VENV:-$HOME/.cache/wharf/uv-venv}/bin"
}

_wharf_uv_find() {
    local dir
    if command -v uv >/dev/null 2>&1; then
        return 0
    fi
    while IFS= read -r dir; do
        if [ -x "$dir/uv" ]; then
            PATH="$dir:$PATH"
            export PATH
            return 0
        fi
    done < <(_wharf_uv_dirs)
    return 1
}

_wharf_uv_install() {
    local venv="${WHARF_UV_VENV:-$HOME/.cache/wharf/uv-venv}"
    if ! command -v python3 >/dev/null 2>&1; then
        echo "uv is not installed and there is no python3 to install it with" >&2
        return 1
    fi
    echo "uv not found: installing it with pip" >&2
    if python3 -m pip install --quiet --user uv 2>/dev/null; then
        return 0
    fi
    echo "pip refused a user install; installing uv into $venv" >&2
    python3 -m venv "$venv" && "$venv/bin/python" -m pip install --quiet uv
}

wharf_ensure_uv() {
    if _wharf_uv_find; then
        return 0
    fi
    if _wharf_uv_install && _wharf_uv_find; then
        return 0
    fi
    echo "could not find or install uv; install it (https://docs.astral.sh/uv/) and retry" >&2
    return 1
}

wharf_ensure_uv || exit 1

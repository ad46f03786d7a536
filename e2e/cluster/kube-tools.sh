#!/usr/bin/env bash
# Provide the project's own kubectl and kustomize, at the pinned Kubernetes version of the test
# control plane (versions.sh), built from the Go module proxy beside it (k8s-binaries.sh). The
# machine's kubectl, if any, is not used: its version and embedded kustomize are unknown.
#
# Source order:
#   1. $WHARF_KUBE_TOOLS   an existing directory holding kubectl and kustomize (used as is)
#   2. the cache           ${WHARF_K8S_CACHE:-$HOME/.cache/wharf/k8s}/tools-<versions>/bin with a .complete stamp
#   3. a build             a throwaway wrapper Go module under <cache>/tools-<versions>/build
#
# The last line of stdout is the bin directory:   bin=$(e2e/cluster/kube-tools.sh | tail -1)
# Progress goes to stderr.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"   # K8S_VERSION, KUSTOMIZE_VERSION

TOOLS=(kubectl kustomize)

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local

log() { printf '[kube-tools %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

have_all() {
    local dir=$1 t
    for t in "${TOOLS[@]}"; do
        [[ -x "$dir/$t" ]] || return 1
    done
}

if [[ -n "${WHARF_KUBE_TOOLS:-}" ]]; then
    if have_all "$WHARF_KUBE_TOOLS"; then
        log "using WHARF_KUBE_TOOLS=$WHARF_KUBE_TOOLS"
        cd "$WHARF_KUBE_TOOLS" && pwd
        exit 0
    fi
    log "WHARF_KUBE_TOOLS=$WHARF_KUBE_TOOLS lacks one of: ${TOOLS[*]}"
    exit 1
fi

CACHE_ROOT="${WHARF_K8S_CACHE:-$HOME/.cache/wharf/k8s}"
VDIR="$CACHE_ROOT/tools-kubectl${K8S_VERSION}-kustomize${KUSTOMIZE_VERSION}"
BIN="$VDIR/bin"
STAMP="$VDIR/.complete"
BUILD="$VDIR/build"

if [[ -f "$STAMP" ]] && have_all "$BIN"; then
    log "cache hit: $BIN"
    echo "$BIN"
    exit 0
fi

# --check (scripts/lib/test-setup.sh): only whether there is anything to build.
[[ "${1:-}" != --check ]] || exit 1

mkdir -p "$VDIR" "$BIN" "$BUILD"
exec 9>"$VDIR/.lock"
if ! flock -n 9; then
    log "another build holds $VDIR/.lock; waiting"
    flock 9
    if [[ -f "$STAMP" ]] && have_all "$BIN"; then
        echo "$BIN"
        exit 0
    fi
fi

command -v go >/dev/null || { log "go is not installed"; exit 1; }
log "$(go version); building kubectl $K8S_VERSION and kustomize $KUSTOMIZE_VERSION into $BIN"
START=$SECONDS

# kubectl's main package lives in k8s.io/kubernetes, whose go.mod replaces the staging modules
# (k8s.io/api, k8s.io/kubectl, ...) with local paths: a wrapper module pins each to v0.Y.Z.
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
KDIR="$BUILD/kubectl"
rm -rf "$KDIR"
mkdir -p "$KDIR"
(
    cd "$KDIR"
    modfile=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    go mod init example.local/wharf-kube-tools >/dev/null 2>&1
    mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$modfile")
    [[ ${#staging[@]} -gt 0 ]] || { log "no staging replaces found in $modfile"; exit 1; }
    args=()
    for m in "${staging[@]}"; do args+=("-replace=${m}=${m}@${STAGING_VERSION}"); done
    go mod edit "${args[@]}" "-require=k8s.io/kubernetes@${K8S_VERSION}"
    cat > tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kubectl"
GO
    log "kubectl: module download"
    go mod tidy
    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${MINOR}"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=${K8S_VERSION}"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${MINOR}"
    log "build kubectl"
    go build -trimpath -ldflags "$ldflags" -o "$BIN/kubectl.tmp" k8s.io/kubernetes/cmd/kubectl
    mv -f "$BIN/kubectl.tmp" "$BIN/kubectl"
)

log "build kustomize (go install sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION)"
GOBIN="$BIN" GOFLAGS= go install -trimpath \
    -ldflags "-s -w -X sigs.k8s.io/kustomize/api/provenance.version=${KUSTOMIZE_VERSION}" \
    "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}"

have_all "$BIN" || { log "missing tools in $BIN"; exit 1; }
"$BIN/kubectl" version --client >&2
"$BIN/kustomize" version >&2
{
    echo "kubectl=$K8S_VERSION"
    echo "kustomize=$KUSTOMIZE_VERSION"
    echo "go=$(go env GOVERSION)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds=$((SECONDS - START))"
} > "$STAMP"
log "built in $((SECONDS - START))s"
echo "$BIN"

#!/usr/bin/env bash
# Provide a real Kubernetes control plane's binaries for tests:
#   kube-apiserver, kube-controller-manager, kube-scheduler, etcd, kwok
# for ONE pinned Kubernetes version, built from the Go module proxy (no Docker, no GitHub).
#
# Source order:
#   1. $WHARF_K8S_ASSETS   an existing directory holding all five binaries (used as is)
#   2. the cache           ${WHARF_K8S_CACHE:-$HOME/.cache/wharf/k8s}/<version>/bin with a .complete stamp
#   3. a build             throwaway wrapper Go modules under <cache>/<version>/build
#
# The last line of stdout is the bin directory:   bin=$(e2e/cluster/k8s-binaries.sh | tail -1)
# Progress goes to stderr, with the elapsed time of each step.
#
# GOMODCACHE / GOCACHE are left at Go's defaults so they persist between runs.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"   # K8S_VERSION, ETCD_VERSION, KWOK_VERSION

BINARIES=(kube-apiserver kube-controller-manager kube-scheduler etcd kwok)

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local

log() { printf '[k8s-binaries %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

have_all() {
    local dir=$1 b
    for b in "${BINARIES[@]}"; do
        [[ -x "$dir/$b" ]] || return 1
    done
}

# 1. Pre-provided binaries.
if [[ -n "${WHARF_K8S_ASSETS:-}" ]]; then
    if have_all "$WHARF_K8S_ASSETS"; then
        log "using WHARF_K8S_ASSETS=$WHARF_K8S_ASSETS"
        cd "$WHARF_K8S_ASSETS" && pwd
        exit 0
    fi
    log "WHARF_K8S_ASSETS=$WHARF_K8S_ASSETS lacks one of: ${BINARIES[*]}"
    exit 1
fi

CACHE_ROOT="${WHARF_K8S_CACHE:-$HOME/.cache/wharf/k8s}"
KEY="${K8S_VERSION}-etcd${ETCD_VERSION}-kwok${KWOK_VERSION}"
VDIR="$CACHE_ROOT/$KEY"
BIN="$VDIR/bin"
STAMP="$VDIR/.complete"
BUILD="$VDIR/build"

# 2. Cache hit: the stamp is written only after every binary was built.
if [[ -f "$STAMP" ]] && have_all "$BIN"; then
    log "cache hit: $BIN"
    echo "$BIN"
    exit 0
fi

# --check (scripts/lib/test-setup.sh): only whether there is anything to do.
[[ "${1:-}" != --check ]] || exit 1

# 3. Build. One build at a time per cache key.
mkdir -p "$VDIR" "$BIN" "$BUILD"
exec 9>"$VDIR/.lock"
if ! flock -n 9; then
    log "another build holds $VDIR/.lock; waiting"
    flock 9
    if [[ -f "$STAMP" ]] && have_all "$BIN"; then
        log "cache filled by the other build: $BIN"
        echo "$BIN"
        exit 0
    fi
fi

command -v go >/dev/null || { log "go is not installed"; exit 1; }
log "$(go version); GOMODCACHE=$(go env GOMODCACHE) GOCACHE=$(go env GOCACHE)"
log "building into $BIN (Kubernetes $K8S_VERSION, etcd $ETCD_VERSION, kwok $KWOK_VERSION)"
TOTAL_START=$SECONDS

step_start=0
step() { step_start=$SECONDS; log "START $*"; }
done_step() { log "DONE  $* in $((SECONDS - step_start))s"; }

gomod_of() {  # print the path of the downloaded go.mod of module@version
    go mod download -json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])'
}

check_go_line() {  # refuse modules that need a newer Go than the installed one
    local modfile=$1 need have
    need=$(sed -n 's/^go \([0-9.]*\).*/\1/p' "$modfile" | head -1)
    have=$(go env GOVERSION | sed 's/^go//')
    if [[ -n "$need" ]] && [[ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | tail -1)" != "$have" ]]; then
        log "$modfile needs go $need, installed is $have; pick an older version"
        exit 1
    fi
}

# --- Kubernetes control plane -------------------------------------------------
STAGING_VERSION="v0.${K8S_VERSION#v1.}"
MINOR=$(echo "$K8S_VERSION" | cut -d. -f2)
KDIR="$BUILD/kubernetes"
rm -rf "$KDIR"
mkdir -p "$KDIR"
(
    cd "$KDIR"
    step "kubernetes: fetch go.mod of k8s.io/kubernetes@$K8S_VERSION"
    modfile=$(gomod_of "k8s.io/kubernetes@$K8S_VERSION")
    check_go_line "$modfile"
    done_step "kubernetes go.mod"

    go mod init example.local/wharf-k8s-testbins >/dev/null 2>&1
    # Every staging module the kubernetes go.mod replaces with ./staging/src/... gets v0.Y.Z.
    mapfile -t staging < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\)[[:space:]]*=>[[:space:]]*\./staging/src/.*#\1#p' "$modfile")
    [[ ${#staging[@]} -gt 0 ]] || { log "no staging replaces found in $modfile"; exit 1; }
    args=()
    for m in "${staging[@]}"; do args+=("-replace=${m}=${m}@${STAGING_VERSION}"); done
    go mod edit "${args[@]}" "-require=k8s.io/kubernetes@${K8S_VERSION}"
    log "kubernetes: ${#staging[@]} staging modules replaced with $STAGING_VERSION"
    cat > tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
EOF

    step "kubernetes: module download (go mod tidy)"
    go mod tidy
    done_step "kubernetes module download"

    ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${K8S_VERSION}"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${MINOR}"
    ldflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
        step "build $cmd"
        go build -trimpath -ldflags "$ldflags" -o "$BIN/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
        mv -f "$BIN/$cmd.tmp" "$BIN/$cmd"
        done_step "build $cmd"
    done
)

# --- etcd ---------------------------------------------------------------------
EDIR="$BUILD/etcd"
rm -rf "$EDIR"
mkdir -p "$EDIR"
(
    cd "$EDIR"
    step "etcd: module download go.etcd.io/etcd/server/v3@$ETCD_VERSION"
    check_go_line "$(gomod_of "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
    go mod init example.local/wharf-etcd >/dev/null 2>&1
    cat > main.go <<'EOF'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
EOF
    go mod edit "-require=go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
    go mod tidy
    done_step "etcd module download"
    step "build etcd"
    go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" .
    mv -f "$BIN/etcd.tmp" "$BIN/etcd"
    done_step "build etcd"
)

# --- kwok ---------------------------------------------------------------------
step "kwok: check sigs.k8s.io/kwok@$KWOK_VERSION"
check_go_line "$(gomod_of "sigs.k8s.io/kwok@$KWOK_VERSION")"
done_step "kwok go.mod"
step "build kwok (go install, includes module download)"
GOBIN="$BIN" GOFLAGS= go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}"
done_step "build kwok"

# --- verify and stamp ---------------------------------------------------------
have_all "$BIN" || { log "missing binaries in $BIN"; exit 1; }
"$BIN/kube-apiserver" --version >&2
"$BIN/etcd" --version >&2 || true
"$BIN/kwok" --version >&2 || true
{
    echo "kubernetes=$K8S_VERSION"
    echo "etcd=$ETCD_VERSION"
    echo "kwok=$KWOK_VERSION"
    echo "go=$(go env GOVERSION)"
    echo "built=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "seconds=$((SECONDS - TOTAL_START))"
} > "$STAMP"
log "all binaries built in $((SECONDS - TOTAL_START))s"
echo "$BIN"

#!/usr/bin/env bash
# Provide the real CustomResourceDefinitions of the other projects whose objects Wharf's
# controller creates (Gateway API, the Gateway API Inference Extension, KEDA, Knative Serving,
# LeaderWorkerSet), at the versions pinned in versions.sh, taken from the Go modules those projects
# publish (the Go module proxy; no GitHub, nothing copied into this repository). Tests validate
# the controller's objects against them and install them on the test control plane.
#
# Source order:
#   1. $WHARF_THIRD_PARTY_CRDS  an existing directory holding every file listed below (used as is)
#   2. the cache                ${WHARF_CRD_CACHE:-$HOME/.cache/wharf/crds}/<versions> with a .complete stamp
#   3. a fetch                  `go mod download` of each module, then a copy of the CRD files
#
# The folder also gets a kustomization.yaml naming every CRD, so `kubectl apply -k <folder>` works.
# The last line of stdout is the folder:   crds=$(e2e/cluster/third-party-crds.sh | tail -1)
# Progress goes to stderr.
set -euo pipefail

source "$(dirname "${BASH_SOURCE[0]}")/versions.sh"

export GOFLAGS=-mod=mod
export GOTOOLCHAIN=local

log() { printf '[third-party-crds %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

# module@version | path of the CRD inside the module | file name in the folder
SOURCES=(
    "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}|config/crd/standard/gateway.networking.k8s.io_gatewayclasses.yaml|gateway.networking.k8s.io_gatewayclasses.yaml"
    "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}|config/crd/standard/gateway.networking.k8s.io_gateways.yaml|gateway.networking.k8s.io_gateways.yaml"
    "sigs.k8s.io/gateway-api@${GATEWAY_API_VERSION}|config/crd/standard/gateway.networking.k8s.io_httproutes.yaml|gateway.networking.k8s.io_httproutes.yaml"
    "sigs.k8s.io/gateway-api-inference-extension@${GIE_VERSION}|config/crd/bases/inference.networking.k8s.io_inferencepools.yaml|inference.networking.k8s.io_inferencepools.yaml"
    "sigs.k8s.io/gateway-api-inference-extension@${GIE_ALPHA_VERSION}|config/crd/bases/inference.networking.x-k8s.io_inferencepools.yaml|inference.networking.x-k8s.io_inferencepools.yaml"
    "github.com/kedacore/keda/v2@${KEDA_VERSION}|config/crd/bases/keda.sh_scaledobjects.yaml|keda.sh_scaledobjects.yaml"
    "knative.dev/serving@${KNATIVE_SERVING_VERSION}|config/core/300-resources/service.yaml|serving.knative.dev_services.yaml"
    "sigs.k8s.io/lws@${LWS_VERSION}|config/crd/bases/leaderworkerset.x-k8s.io_leaderworkersets.yaml|leaderworkerset.x-k8s.io_leaderworkersets.yaml"
)

have_all() {
    local dir=$1 entry
    for entry in "${SOURCES[@]}"; do
        [[ -s "$dir/${entry##*|}" ]] || return 1
    done
    [[ -s "$dir/kustomization.yaml" ]]
}

# 1. Pre-provided CRDs.
if [[ -n "${WHARF_THIRD_PARTY_CRDS:-}" ]]; then
    if have_all "$WHARF_THIRD_PARTY_CRDS"; then
        log "using WHARF_THIRD_PARTY_CRDS=$WHARF_THIRD_PARTY_CRDS"
        cd "$WHARF_THIRD_PARTY_CRDS" && pwd
        exit 0
    fi
    log "WHARF_THIRD_PARTY_CRDS=$WHARF_THIRD_PARTY_CRDS lacks kustomization.yaml or one of: ${SOURCES[*]##*|}"
    exit 1
fi

CACHE_ROOT="${WHARF_CRD_CACHE:-$HOME/.cache/wharf/crds}"
KEY="gateway-api${GATEWAY_API_VERSION}-gie${GIE_VERSION}-gie${GIE_ALPHA_VERSION}-keda${KEDA_VERSION}"
KEY+="-knative${KNATIVE_SERVING_VERSION}-lws${LWS_VERSION}"
DIR="$CACHE_ROOT/$KEY"
STAMP="$DIR/.complete"

# 2. Cache hit: the stamp is written only after every file was copied.
if [[ -f "$STAMP" ]] && have_all "$DIR"; then
    log "cache hit: $DIR"
    echo "$DIR"
    exit 0
fi

# --check (scripts/lib/test-setup.sh): only whether there is anything to do.
[[ "${1:-}" != --check ]] || exit 1

# 3. Fetch. One fetch at a time per cache key.
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
if ! flock -n 9; then
    log "another fetch holds $DIR/.lock; waiting"
    flock 9
    if [[ -f "$STAMP" ]] && have_all "$DIR"; then
        log "cache filled by the other fetch: $DIR"
        echo "$DIR"
        exit 0
    fi
fi

if ! command -v go >/dev/null; then
    # The Go distribution's usual place, for shells whose PATH lacks it (a plain `uv run pytest`).
    [[ -x /usr/local/go/bin/go ]] || { log "go is not installed"; exit 1; }
    PATH="/usr/local/go/bin:$PATH"
fi
log "$(go version); GOMODCACHE=$(go env GOMODCACHE)"

# A throwaway module as the working directory, so no go.mod above it is consulted.
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
cd "$WORK"
go mod init example.local/wharf-third-party-crds >/dev/null 2>&1

module_dir() {  # print the directory of the downloaded module@version
    go mod download -json "$1" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error", "no Dir")))'
}

declare -A DIRS=()
rm -f "$DIR"/*.yaml "$STAMP"
files=()
for entry in "${SOURCES[@]}"; do
    IFS='|' read -r mod path name <<<"$entry"
    if [[ -z "${DIRS[$mod]:-}" ]]; then
        log "download $mod"
        DIRS[$mod]=$(module_dir "$mod")
    fi
    src="${DIRS[$mod]}/$path"
    [[ -s "$src" ]] || { log "$mod has no $path"; exit 1; }
    grep -q '^kind: CustomResourceDefinition' "$src" || { log "$mod $path is not a CRD"; exit 1; }
    # The module cache is read-only; the copy is made writable so the cache can be refreshed.
    install -m 0644 "$src" "$DIR/$name.tmp"
    mv -f "$DIR/$name.tmp" "$DIR/$name"
    files+=("$name")
done

{
    echo "# Written by e2e/cluster/third-party-crds.sh: every CRD fetched into this folder."
    echo "apiVersion: kustomize.config.k8s.io/v1beta1"
    echo "kind: Kustomization"
    echo "resources:"
    printf '  - %s\n' "${files[@]}"
} > "$DIR/kustomization.yaml"

{
    for entry in "${SOURCES[@]}"; do
        IFS='|' read -r mod path name <<<"$entry"
        echo "$name=$mod/$path"
    done
    echo "fetched=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$STAMP"
log "${#files[@]} CRDs in $DIR"
echo "$DIR"

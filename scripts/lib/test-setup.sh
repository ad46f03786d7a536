#!/usr/bin/env bash
# The slow part of scripts/test's set-up, as one chain: the test tools (scripts/install-test-tools),
# the Kubernetes control plane (e2e/cluster/k8s-binaries.sh), the pinned kubectl and kustomize
# (e2e/cluster/kube-tools.sh) and the real third-party CRDs (e2e/cluster/third-party-crds.sh).
# Every step is a no-op once its cache is filled; the first run builds from the Go module proxy.
#
#     scripts/lib/test-setup.sh GATE_FOLDER
#
# scripts/test runs it in the background while the tests that need none of these run (or in the
# foreground with WHARF_SETUP_FOREGROUND=1); the pytest plugin (wharf_e2e.setup_gate) waits for it
# before the first test that needs it. It leaves in GATE_FOLDER:
#   env      one VAR=value line per variable a step provides (WHARF_K8S_BIN, WHARF_KUBE_TOOLS,
#            WHARF_THIRD_PARTY_CRDS); a variable already set in the environment is left alone and
#            its step skipped. The test tools need none: their tests look in ~/.cache/wharf.
#   status   one step=outcome line per step: its exit code, or `skipped`; written last, under
#            another name then renamed, so that its presence means the chain has ended.
# A failed step does not stop the others: the tests that need what it makes skip with the reason
# (or fail under CI), and the plugin shows the end of the log.
set -uo pipefail
gate="$1"
cd "$(dirname "$0")/../.." || exit 1
: >>"$gate/env"
statuses=()

note() { echo "scripts/test: $*" >&2; }

# provide STEP VAR COMMAND...: runs the command; the last line of its stdout becomes VAR.
provide() {
  local step="$1" var="$2" out rc=0
  shift 2
  out="$("$@" | tail -n 1)" || rc=$?
  if [ "$rc" -eq 0 ] && [ -z "$out" ]; then
    echo "$step printed no folder" >&2
    rc=1
  fi
  if [ "$rc" -eq 0 ]; then
    echo "$var=$out" >>"$gate/env"
  fi
  statuses+=("$step=$rc")
  return "$rc"
}

rc=0
bash scripts/install-test-tools || rc=$?
statuses+=("install-test-tools=$rc")
[ "$rc" -eq 0 ] || note "installing the storage emulators failed; their tests will skip"

if [ -n "${WHARF_K8S_BIN:-}" ]; then
  statuses+=("k8s-binaries=skipped")
elif command -v go >/dev/null 2>&1 || [ -n "${WHARF_K8S_ASSETS:-}" ]; then
  provide k8s-binaries WHARF_K8S_BIN bash e2e/cluster/k8s-binaries.sh \
    || note "building the Kubernetes control plane failed; tests marked 'kube' will be skipped"
else
  statuses+=("k8s-binaries=skipped")
  note "no Go toolchain and no WHARF_K8S_ASSETS: tests marked 'kube' will be skipped"
fi

if [ -n "${WHARF_KUBE_TOOLS:-}" ] || ! command -v go >/dev/null 2>&1; then
  statuses+=("kube-tools=skipped")
else
  provide kube-tools WHARF_KUBE_TOOLS bash e2e/cluster/kube-tools.sh \
    || note "building kubectl/kustomize failed; the deploy/ tests will skip"
fi

if [ -n "${WHARF_THIRD_PARTY_CRDS:-}" ]; then
  statuses+=("third-party-crds=skipped")
else
  provide third-party-crds WHARF_THIRD_PARTY_CRDS bash e2e/cluster/third-party-crds.sh \
    || note "fetching the third-party CRDs failed; the tests that need them will skip"
fi

printf '%s\n' "${statuses[@]}" >"$gate/status.tmp"
mv "$gate/status.tmp" "$gate/status"

#!/usr/bin/env bash
# The slow part of scripts/test's set-up, as one chain: the test tools (scripts/install-test-tools),
# the Kubernetes control plane (e2e/cluster/k8s-binaries.sh), the pinned kubectl and kustomize
# (e2e/cluster/kube-tools.sh) and the real third-party CRDs (e2e/cluster/third-party-crds.sh).
# Every step is a no-op once its cache is filled; the first run builds from the Go module proxy.
#
#     scripts/lib/test-setup.sh --check                   exit 0 when no step has anything to build
#     scripts/lib/test-setup.sh --foreground GATE_FOLDER  as scripts/test always did: a failed
#                                                         control-plane build stops here
#     scripts/lib/test-setup.sh GATE_FOLDER OWNER_PID     in the background: stops itself (its
#                                                         whole process group) once OWNER_PID is gone
#
# scripts/test runs it in the foreground when --check finds every cache filled (or with
# WHARF_SETUP_FOREGROUND=1), and in the background otherwise, while the tests that need none of
# these run; the pytest plugin (wharf_e2e.setup_gate) waits for it before the first test that
# needs it. It leaves in GATE_FOLDER:
#   env      one VAR=value line per variable a step provides (WHARF_K8S_BIN, WHARF_KUBE_TOOLS,
#            WHARF_THIRD_PARTY_CRDS); a variable already set in the environment is left alone and
#            its step skipped. The test tools need none: their tests look in ~/.cache/wharf.
#   status   one step=outcome line per step: its exit code, or `skipped`; written last, under
#            another name then renamed, so that its presence means the chain has ended.
# In the background a failed step does not stop the others: the tests that need what it makes skip
# with the reason (or fail under CI), and the plugin shows the end of the log.
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 1

mode=background gate="" owner=""
case "${1:-}" in
  --check) mode=check ;;
  --foreground) mode=foreground gate="${2:?usage: test-setup.sh --foreground GATE_FOLDER}" ;;
  *)
    gate="${1:?usage: test-setup.sh GATE_FOLDER OWNER_PID}"
    owner="${2:?usage: test-setup.sh GATE_FOLDER OWNER_PID}"
    ;;
esac

have_go() { command -v go >/dev/null 2>&1 || [ -x /usr/local/go/bin/go ]; }

if [ "$mode" = check ]; then
  # Each step's own cache check (its --check), under the same conditions as the steps below.
  bash scripts/install-test-tools --check || exit 1
  if [ -z "${WHARF_K8S_BIN:-}" ] && { command -v go >/dev/null 2>&1 || [ -n "${WHARF_K8S_ASSETS:-}" ]; }; then
    bash e2e/cluster/k8s-binaries.sh --check >/dev/null 2>&1 || exit 1
  fi
  if [ -z "${WHARF_KUBE_TOOLS:-}" ] && command -v go >/dev/null 2>&1; then
    bash e2e/cluster/kube-tools.sh --check >/dev/null 2>&1 || exit 1
  fi
  if [ -z "${WHARF_THIRD_PARTY_CRDS:-}" ] && have_go; then
    bash e2e/cluster/third-party-crds.sh --check >/dev/null 2>&1 || exit 1
  fi
  exit 0
fi

watchdog=""
if [ -n "$owner" ]; then
  # pytest killed outright (or ended before its plugin started) cannot stop the chain: this does.
  # scripts/test starts the chain as the leader of its own process group, so `kill 0` ends the
  # chain and everything it started, and nothing else.
  (
    while kill -0 "$owner" 2>/dev/null; do sleep 2; done
    kill -TERM 0
  ) &
  watchdog=$!
fi

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
  provide k8s-binaries WHARF_K8S_BIN bash e2e/cluster/k8s-binaries.sh || {
    rc=$?
    # As scripts/test always did in the foreground: no control plane, no test run.
    [ "$mode" = foreground ] && exit "$rc"
    note "building the Kubernetes control plane failed; tests marked 'kube' will be skipped"
  }
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
elif ! have_go; then
  # third-party-crds.sh also looks in /usr/local/go/bin, off PATH.
  statuses+=("third-party-crds=skipped")
  note "no Go toolchain: the tests that need the real third-party CRDs will skip"
else
  provide third-party-crds WHARF_THIRD_PARTY_CRDS bash e2e/cluster/third-party-crds.sh \
    || note "fetching the third-party CRDs failed; the tests that need them will skip"
fi

# Ended on its own: the watchdog must not outlive it (nor kill a reused process group).
[ -z "$watchdog" ] || kill "$watchdog" 2>/dev/null
printf '%s\n' "${statuses[@]}" >"$gate/status.tmp"
mv "$gate/status.tmp" "$gate/status"

# The pinned versions of the test cluster's binaries and of the tools that talk to it, in one
# place: sourced by k8s-binaries.sh (the control plane) and kube-tools.sh (kubectl, kustomize).
# Each can be overridden from the environment.
K8S_VERSION="${WHARF_K8S_VERSION:-v1.34.4}"            # go.mod: go 1.24.0
ETCD_VERSION="${WHARF_ETCD_VERSION:-v3.6.16}"          # go.etcd.io/etcd/server/v3, go.mod: go 1.26.0
KWOK_VERSION="${WHARF_KWOK_VERSION:-v0.8.0}"           # sigs.k8s.io/kwok, go.mod: go 1.26.0
# The kustomize that kubectl $K8S_VERSION embeds (k8s.io/kubectl's go.mod), so `kubectl apply -k`
# and `kustomize build` render the same objects.
KUSTOMIZE_VERSION="${WHARF_KUSTOMIZE_VERSION:-v5.7.1}"

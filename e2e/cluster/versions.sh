# The pinned versions of the test cluster's binaries and of the tools that talk to it, in one
# place: sourced by k8s-binaries.sh (the control plane), kube-tools.sh (kubectl, kustomize) and
# third-party-crds.sh (the CRDs of the other projects Wharf creates objects of).
# Each can be overridden from the environment.
K8S_VERSION="${WHARF_K8S_VERSION:-v1.34.4}"            # go.mod: go 1.24.0
ETCD_VERSION="${WHARF_ETCD_VERSION:-v3.6.16}"          # go.etcd.io/etcd/server/v3, go.mod: go 1.26.0
KWOK_VERSION="${WHARF_KWOK_VERSION:-v0.8.0}"           # sigs.k8s.io/kwok, go.mod: go 1.26.0
# The kustomize that kubectl $K8S_VERSION embeds (k8s.io/kubectl's go.mod), so `kubectl apply -k`
# and `kustomize build` render the same objects.
KUSTOMIZE_VERSION="${WHARF_KUSTOMIZE_VERSION:-v5.7.1}"
# The third-party projects whose CRDs Wharf's objects must pass (third-party-crds.sh), at the
# versions KServe's own e2e installs (kserve-deps.env), each as the Go module that carries them.
GATEWAY_API_VERSION="${WHARF_GATEWAY_API_VERSION:-v1.5.1}"        # sigs.k8s.io/gateway-api
GIE_VERSION="${WHARF_GIE_VERSION:-v1.5.0}"                        # inference.networking.k8s.io/v1
# GIE v1.5.0 no longer ships the inference.networking.x-k8s.io/v1alpha2 InferencePool; v1.4.0 is
# the last release that does (as served next to v1, for clusters that still hold alpha pools).
GIE_ALPHA_VERSION="${WHARF_GIE_ALPHA_VERSION:-v1.4.0}"
KEDA_VERSION="${WHARF_KEDA_VERSION:-v2.18.0}"                     # github.com/kedacore/keda/v2
# Knative Serving 1.21.1 is the Go module knative.dev/serving v0.48.1 (release 1.N = v0.(N+27)).
KNATIVE_SERVING_VERSION="${WHARF_KNATIVE_SERVING_VERSION:-v0.48.1}"
LWS_VERSION="${WHARF_LWS_VERSION:-v0.8.0}"                        # sigs.k8s.io/lws

// The version of k8s.io/kubernetes the oracle is built from. Build with
// scripts/build-kubelet-oracle.sh: it adds the staging-module replaces
// (derived from k8s.io/kubernetes' own go.mod) in a throw-away copy.
module pullwarden.dev/kubelet-oracle

go 1.26.0

require k8s.io/kubernetes v1.36.3

# shellcheck shell=bash disable=SC2034
# Pinned versions of the Kubernetes test environment (sourced, never run).
# Changing K8S_VERSION also needs `gen-k8s-gomod.sh <version>` to regenerate k8s/go.mod;
# the etcd and kwok versions must match the `require` lines of etcd/go.mod and kwok/go.mod.
K8S_VERSION=v1.34.4
ETCD_VERSION=v3.6.5
KWOK_VERSION=v0.8.0

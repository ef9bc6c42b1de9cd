#!/usr/bin/env bash
# Build one part of the Kubernetes test environment from the Go module proxy, keyed by
# version under ~/.cache/alertops/bin/<part>-<version>/. Does nothing when the binaries exist.
#
#   build.sh k8s|kubelet|etcd|kwok            build if missing; prints the binaries' directory
#   build.sh k8s|kubelet|etcd|kwok --check    exit 0 when the binaries are cached, 1 otherwise
#
# kubelet (the real node's) is built from the same wrapper module as the control plane, into a
# directory of its own so that adding it never invalidates the control plane's cached binaries.
#
# The binaries are written to a temporary directory and moved into place only when the whole
# build succeeded, so a half-finished or failed build is never mistaken for a cached one.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.sh
. "$here/versions.sh"
ALERTOPS_CACHE="${ALERTOPS_CACHE:-$HOME/.cache/alertops}"
export GOMODCACHE="${GOMODCACHE:-$ALERTOPS_CACHE/go/mod}"
export GOCACHE="${GOCACHE:-$ALERTOPS_CACHE/go/build}"
export GOFLAGS="${GOFLAGS:--buildvcs=false}" GOWORK=off CGO_ENABLED=0

part=${1:?usage: build.sh k8s|kubelet|etcd|kwok [--check]}
check_only=false
[ "${2:-}" != --check ] || check_only=true
case "$part" in
  k8s|kubelet)
    version=$K8S_VERSION
    if [ "$part" = k8s ]; then
      bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
      pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
            k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
    else
      bins=(kubelet)
      pkgs=(k8s.io/kubernetes/cmd/kubelet)
    fi
    moddir=k8s
    minor=${version#v1.}; minor=${minor%%.*}
    stamp=""
    # Both copies of the version variables: component-base (servers) and client-go (kubectl client side).
    for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      stamp+=" -X $p.gitVersion=$version -X $p.gitMajor=1 -X $p.gitMinor=$minor"
      stamp+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
    done
    ;;
  etcd)
    version=$ETCD_VERSION
    bins=(etcd)
    pkgs=(go.etcd.io/etcd/server/v3)
    stamp=""
    ;;
  kwok)
    version=$KWOK_VERSION
    bins=(kwok kwokctl)
    pkgs=(sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl)
    # kwokctl derives the default versions it would download from this; we never let it download.
    stamp=" -X sigs.k8s.io/kwok/pkg/consts.Version=${version#v}"
    ;;
  *) echo "build.sh: unknown part '$part' (k8s, kubelet, etcd, kwok)" >&2; exit 2 ;;
esac

out="$ALERTOPS_CACHE/bin/$part-$version"
have_all=true
for b in "${bins[@]}"; do [ -x "$out/$b" ] || have_all=false; done
if $have_all; then $check_only || echo "$out"; exit 0; fi
if $check_only; then exit 1; fi

tmp="$out.tmp.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
t0=$SECONDS
# One package: name the binary (go would call etcd's "server"); several: -o dir/ names each.
target="$tmp/"
if [ ${#pkgs[@]} -eq 1 ]; then target="$tmp/${bins[0]}"; fi
(cd "$here/${moddir:-$part}" && go build -p 2 -trimpath -ldflags "-s -w$stamp" -o "$target" "${pkgs[@]}")
for b in "${bins[@]}"; do [ -x "$tmp/$b" ] || { echo "build.sh: $part build did not produce $b" >&2; exit 1; }; done
# Kept next to the binaries: how long the cold build took, for the docs and the report.
echo "built $part $version with $(go env GOVERSION) on $(nproc) cores in $((SECONDS - t0))s at $(date -u +%FT%TZ)" >"$tmp/BUILD_INFO"
rm -rf "$out"; mv "$tmp" "$out"
echo "build.sh: $(cat "$out/BUILD_INFO")" >&2
echo "$out"

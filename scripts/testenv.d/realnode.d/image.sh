#!/usr/bin/env bash
# Build the real node's images without a registry or a Docker engine, into buildah's storage
# under ~/.cache/alertops/realnode/buildah, each tagged with a hash of its inputs so that an
# unchanged input is never rebuilt:
#
#   localhost/alertops-base:<key>      Debian bookworm (mmdebstrap minbase + python3, venv,
#                                      python-is-python3, passwd): the Dockerfile's BASE_IMAGE
#   localhost/alertops:<key>           the repository's Dockerfile, built on that base
#   localhost/alertops-examples:<key>  alertops + examples/models (a spec's model must be in the
#                                      image: what a user does with `FROM alertops` + `COPY`)
#   localhost/alertops-pause:<key>     the pod sandbox: busybox-static sleeping, FROM scratch
#
#   image.sh build     build what is missing; prints NAME=IMAGE lines (BASE, ALERTOPS, EXAMPLES, PAUSE)
#   image.sh names     print the same lines without building (the names today's inputs give)
#   image.sh export IMAGE FILE   write IMAGE as an OCI archive (for `ctr images import`)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../../.." && pwd)
ALERTOPS_CACHE="${ALERTOPS_CACHE:-$HOME/.cache/alertops}"
WORK=$ALERTOPS_CACHE/realnode
mkdir -p "$WORK"
# overlay, not vfs: vfs copies every layer in full (6 GB and minutes for this image); the kernel
# here has overlayfs and buildah runs as root, so overlay works (measured: see docs).
STORAGE_DRIVER=${ALERTOPS_BUILDAH_DRIVER:-overlay}
buildah_() {
  buildah --root "$WORK/buildah/$STORAGE_DRIVER" --runroot "$WORK/buildah/run-$STORAGE_DRIVER" \
    --storage-driver "$STORAGE_DRIVER" "$@"
}

SUITE=bookworm
BASE_PACKAGES=python3,python3-venv,python-is-python3,passwd
step() { printf '[image.sh] %s\n' "$*" >&2; }

sha() { sha256sum | cut -c1-12; }

# The build context as the Dockerfile sees it (.dockerignore keeps only these), hashed by content.
context_key() {
  (cd "$repo" && find Dockerfile .dockerignore pyproject.toml README.md step_runtime pipeline_operator \
      -type f ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | LC_ALL=C sort -z | xargs -0 sha256sum) | sha
}

names() {
  local base alertops examples pause
  base=localhost/alertops-base:$(echo "$SUITE $BASE_PACKAGES v1" | sha)
  alertops=localhost/alertops:$( { echo "$base"; context_key; } | sha)
  examples=localhost/alertops-examples:$( { echo "$alertops"; (cd "$repo" && find examples/models -type f -print0 |
      LC_ALL=C sort -z | xargs -0 sha256sum); } | sha)
  pause=localhost/alertops-pause:$( { echo sleep-v2; sha256sum /bin/busybox; } | sha)
  printf 'BASE=%s\nALERTOPS=%s\nEXAMPLES=%s\nPAUSE=%s\n' "$base" "$alertops" "$examples" "$pause"
}

have() { buildah_ inspect --type image "$1" >/dev/null 2>&1; }

build_base() {
  local image=$1 tar ctr
  tar=$(mktemp "$WORK/base.XXXXXX.tar")
  step "mmdebstrap $SUITE minbase + $BASE_PACKAGES (Debian packages, ~1.5 min cold)"
  # Documentation and translations are left out: nothing in the image reads them.
  mmdebstrap --quiet --variant=minbase --include="$BASE_PACKAGES" --aptopt='Acquire::Retries "3"' \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' "$SUITE" "$tar" >&2
  ctr=$(buildah_ from --quiet scratch)
  buildah_ add --quiet "$ctr" "$tar" / >/dev/null
  buildah_ config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' "$ctr"
  buildah_ commit --quiet --rm "$ctr" "$image" >/dev/null
  rm -f "$tar"
}

# The Dockerfile's `pip install` reaches PyPI from inside the build: it gets the host's CA bundle
# (this machine's egress re-signs TLS with a CA of its own) and a pip.conf pointing pip at it.
build_alertops() {
  local image=$1 base=$2 pipconf=$WORK/pip.conf
  printf '[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n' >"$pipconf"
  step "buildah bud $repo/Dockerfile (BASE_IMAGE=$base; cold ~6 min of pip downloads, a code change ~40 s)"
  buildah_ bud --quiet --isolation chroot --layers --build-arg "BASE_IMAGE=$base" \
    -v /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro -v "$pipconf:/etc/pip.conf:ro" \
    -t "$image" -f "$repo/Dockerfile" "$repo" >&2
}

build_examples() {
  local image=$1 from=$2 ctr
  ctr=$(buildah_ from --quiet "$from")
  buildah_ copy --quiet --chown 0:0 "$ctr" "$repo/examples/models" /opt/alertops-examples/models >/dev/null
  buildah_ commit --quiet --rm "$ctr" "$image" >/dev/null
}

build_pause() {
  local image=$1 ctr
  ctr=$(buildah_ from --quiet scratch)
  # busybox runs the applet its argv[0] names: the file is called sleep.
  buildah_ copy --quiet "$ctr" /bin/busybox /sleep >/dev/null
  buildah_ config --entrypoint '["/sleep", "2147483647"]' --user 65535:65535 "$ctr"
  buildah_ commit --quiet --rm "$ctr" "$image" >/dev/null
}

# prune REPO: keep the 4 newest tags of REPO. Every code change makes a new image, but they share
# the dependencies' layer, so old ones cost little; several checkouts on one machine (each with
# its own test environment) then keep their images instead of rebuilding each other's.
prune() {
  local repo_name=$1 img
  for img in $(buildah_ images --format '{{.CreatedAtRaw}}|{{.Name}}:{{.Tag}}' --filter "reference=$repo_name" \
      2>/dev/null | sort -r | tail -n +5 | cut -d'|' -f2); do
    buildah_ rmi "$img" >/dev/null 2>&1 || true
  done
}

cmd_build() {
  local BASE ALERTOPS EXAMPLES PAUSE
  eval "$(names)"
  have "$BASE" || build_base "$BASE"
  if ! have "$ALERTOPS"; then
    build_alertops "$ALERTOPS" "$BASE"
    prune localhost/alertops
  fi
  if ! have "$EXAMPLES"; then
    build_examples "$EXAMPLES" "$ALERTOPS"
    prune localhost/alertops-examples
  fi
  have "$PAUSE" || build_pause "$PAUSE"
  names
}

case "${1:-}" in
  build) cmd_build ;;
  names) names ;;
  export)
    [ $# -eq 3 ] || { echo "usage: image.sh export IMAGE FILE" >&2; exit 2; }
    rm -f "$3"
    # Uncompressed: gzip of a 1 GB layer costs more than writing it; the archive is read once.
    buildah_ push --quiet --disable-compression "$2" "oci-archive:$3:$2" >&2 ;;
  *) echo "usage: image.sh build|names|export IMAGE FILE" >&2; exit 2 ;;
esac

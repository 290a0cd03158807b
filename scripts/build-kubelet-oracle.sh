#!/usr/bin/env bash
# Builds tools/kubelet-oracle (the kubelet's own credential-selection code, see
# its main.go) into the cache shared with the control plane, keyed by the
# Kubernetes version. Builds only if missing. Prints the binary's path.
#
# Same wrapper-module approach as scripts/build-controlplane.sh: the oracle's
# go.mod requires k8s.io/kubernetes and replaces every staging module with its
# published tag. That replace list is derived from the downloaded go.mod of
# k8s.io/kubernetes here, so a release that adds a staging module cannot be
# built against a stale list; tools/kubelet-oracle/go.mod only pins the version.
set -euo pipefail
cd "$(dirname "$0")/.."

SRC="tools/kubelet-oracle"
KUBE_VERSION="$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$SRC/go.mod")"
[[ -n "$KUBE_VERSION" ]] || { echo "build-kubelet-oracle: no 'require k8s.io/kubernetes vX' line in $SRC/go.mod" >&2; exit 1; }
CACHE_ROOT="${PULLWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullwarden}"
# the source's digest is part of the key: an edited main.go is rebuilt
SRC_DIGEST="$(cat "$SRC/main.go" "$SRC/go.mod" | sha256sum | cut -c1-12)"
OUT_DIR="$CACHE_ROOT/kubelet-oracle/$KUBE_VERSION-$SRC_DIGEST"
BIN="$OUT_DIR/kubelet-oracle"

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "build-kubelet-oracle: $*" >&2; }

build() (
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "resolving k8s.io/kubernetes@$KUBE_VERSION"
  local modjson gomod
  modjson="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")"
  gomod="$(printf '%s' "$modjson" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod" ]] || { log "cannot find go.mod of k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
  local staging_tag="v0.${KUBE_VERSION#v1.}"
  local replaces bad mods n
  replaces="$(awk '/^replace \(/{inblock=1;next} inblock&&/^\)/{inblock=0} inblock{print} /^replace [^(]/{sub(/^replace /,"");print}' "$gomod")"
  bad="$(printf '%s\n' "$replaces" | grep -v '^[[:space:]]*$' | grep -v '=> ./staging/src/' || true)"
  if [[ -n "$bad" ]]; then
    log "unexpected non-staging replace in k8s.io/kubernetes go.mod:"; printf '%s\n' "$bad" >&2; exit 1
  fi
  mods="$(printf '%s\n' "$replaces" | awk '/=> .\/staging\/src\//{print $1}' | sort -u)"
  n="$(printf '%s\n' "$mods" | grep -c . || true)"
  [[ "$n" -ge 20 ]] || { log "only $n staging modules found; refusing"; exit 1; }
  log "$n staging modules, replaced with $staging_tag"
  cp "$SRC/main.go" "$work/"
  {
    echo "module pullwarden.dev/kubelet-oracle"
    echo "go 1.26.0"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    while read -r m; do echo "replace $m => $m $staging_tag"; done <<<"$mods"
  } >"$work/go.mod"
  cd "$work"
  go mod tidy >&2
  log "building kubelet-oracle against k8s.io/kubernetes $KUBE_VERSION"
  mkdir -p "$OUT_DIR"
  go build -trimpath -ldflags "-s -w" -o "$BIN.tmp" . >&2
  mv "$BIN.tmp" "$BIN"
)

[[ -x "$BIN" ]] || build
echo "$BIN"

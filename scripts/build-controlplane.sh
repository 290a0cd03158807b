#!/usr/bin/env bash
# Builds kube-apiserver, kubectl (same version) and etcd from the Go module proxy
# into a cache keyed by version. Builds only what is missing. Prints the bin dir.
#
# Why a wrapper module: `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` is
# refused because k8s.io/kubernetes requires its staging modules at v0.0.0 and
# replaces them with ./staging paths. We require k8s.io/kubernetes and replace
# every staging module with its published tag, deriving the list from the
# downloaded go.mod so that a new release cannot silently add one.
set -euo pipefail

KUBE_VERSION="${PULLWARDEN_KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${PULLWARDEN_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${PULLWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullwarden}"
BIN_DIR="$CACHE_ROOT/controlplane/kube-$KUBE_VERSION-etcd-$ETCD_VERSION/bin"

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "build-controlplane: $*" >&2; }

mkdir -p "$BIN_DIR"

# Each build runs in a subshell: it cds into a throw-away module and removes it
# on exit, without leaving the caller in a deleted directory.
build_kube() (
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "resolving k8s.io/kubernetes@$KUBE_VERSION"
  local modjson gomod
  modjson="$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")"
  gomod="$(printf '%s' "$modjson" | sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
  [[ -f "$gomod" ]] || { log "cannot find go.mod of k8s.io/kubernetes@$KUBE_VERSION"; exit 1; }
  local staging_tag="v0.${KUBE_VERSION#v1.}"
  # every replace line of k8s.io/kubernetes' go.mod must point into ./staging
  local replaces
  replaces="$(awk '/^replace \(/{inblock=1;next} inblock&&/^\)/{inblock=0} inblock{print} /^replace [^(]/{sub(/^replace /,"");print}' "$gomod")"
  local bad
  bad="$(printf '%s\n' "$replaces" | grep -v '^[[:space:]]*$' | grep -v '=> ./staging/src/' || true)"
  if [[ -n "$bad" ]]; then
    log "unexpected non-staging replace in k8s.io/kubernetes go.mod:"; printf '%s\n' "$bad" >&2; exit 1
  fi
  local mods
  mods="$(printf '%s\n' "$replaces" | awk '/=> .\/staging\/src\//{print $1}' | sort -u)"
  local n; n="$(printf '%s\n' "$mods" | grep -c . || true)"
  [[ "$n" -ge 20 ]] || { log "only $n staging modules found; refusing"; exit 1; }
  log "$n staging modules, replaced with $staging_tag"
  cd "$work"
  {
    echo "module pullwarden.dev/controlplane-build"
    echo "go 1.26.0"
    echo "require k8s.io/kubernetes $KUBE_VERSION"
    while read -r m; do echo "replace $m => $m $staging_tag"; done <<<"$mods"
  } >go.mod
  cat >tools.go <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
  go mod tidy >&2
  local major minor
  major="$(echo "$KUBE_VERSION" | sed 's/^v\([0-9]*\)\..*/\1/')"
  minor="$(echo "$KUBE_VERSION" | sed 's/^v[0-9]*\.\([0-9]*\)\..*/\1/')"
  local ld=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  done
  for cmd in kube-apiserver kubectl; do
    if [[ ! -x "$BIN_DIR/$cmd" ]]; then
      log "building $cmd $KUBE_VERSION (slow the first time)"
      go build -trimpath -ldflags "-s -w $ld" -o "$BIN_DIR/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd" >&2
      mv "$BIN_DIR/$cmd.tmp" "$BIN_DIR/$cmd"
    fi
  done
)

build_etcd() (
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  printf 'module pullwarden.dev/etcd-build\n\ngo 1.26.0\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "go.etcd.io/etcd/server/v3"\n' >tools.go
  go mod tidy >&2
  log "building etcd $ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
  mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
)

start=$(date +%s)
[[ -x "$BIN_DIR/etcd" ]] || build_etcd
[[ -x "$BIN_DIR/kube-apiserver" && -x "$BIN_DIR/kubectl" ]] || build_kube
end=$(date +%s)
if (( end - start > 5 )); then log "built in $((end - start)) s into $BIN_DIR"; fi
echo "$BIN_DIR"

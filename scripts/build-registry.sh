#!/usr/bin/env bash
# Builds the CNCF distribution registry (`registry` binary) from the Go module
# proxy into the same cache as the control plane, keyed by version. Builds only
# when missing. Prints the bin dir.
#
# A throw-away wrapper module requires github.com/distribution/distribution/v3
# at the pinned version and builds its cmd/registry package, so the module's
# own go.mod (and go.sum from the checksum database) decides every dependency.
set -euo pipefail

REGISTRY_VERSION="${PULLWARDEN_REGISTRY_VERSION:-v3.1.2}"
CACHE_ROOT="${PULLWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullwarden}"
BIN_DIR="$CACHE_ROOT/registry/distribution-$REGISTRY_VERSION/bin"

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "build-registry: $*" >&2; }

build_registry() (
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  cd "$work"
  printf 'module pullwarden.dev/registry-build\n\ngo 1.26.0\n\nrequire github.com/distribution/distribution/v3 %s\n' \
    "$REGISTRY_VERSION" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/distribution/distribution/v3/cmd/registry"\n' >tools.go
  go mod tidy >&2
  log "building registry $REGISTRY_VERSION"
  go build -trimpath \
    -ldflags "-s -w -X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" \
    -o "$BIN_DIR/registry.tmp" github.com/distribution/distribution/v3/cmd/registry >&2
  mv "$BIN_DIR/registry.tmp" "$BIN_DIR/registry"
)

mkdir -p "$BIN_DIR"
start=$(date +%s)
[[ -x "$BIN_DIR/registry" ]] || build_registry
end=$(date +%s)
if (( end - start > 5 )); then log "built in $((end - start)) s into $BIN_DIR"; fi
echo "$BIN_DIR"

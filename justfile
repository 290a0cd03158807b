# pullwarden: every developer and CI step. `just --list` shows them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Build, start a real control plane, run every test, stop every process.
test:
    scripts/test.sh

# Formatting and lints, as CI runs them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Build kube-apiserver, kubectl and etcd from the Go module proxy (cached by version).
controlplane:
    scripts/build-controlplane.sh

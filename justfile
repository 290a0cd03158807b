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

# Start a control plane in the background (state in .pullwarden-cluster/); prints `export KUBECONFIG=...`.
cluster-up:
    cargo run -q -p pullwarden-testenv --bin pullwarden-testenv -- up --dir .pullwarden-cluster

# Stop the control plane started by `just cluster-up`, by PID.
cluster-down:
    cargo run -q -p pullwarden-testenv --bin pullwarden-testenv -- down --dir .pullwarden-cluster

# The README's quick start: plan the OpenShift example against its committed snapshot (no cluster needed).
demo:
    cargo run -q -- plan examples/openshift-image-pull-secrets --live examples/live/openshift-image-pull-secrets.yaml

# Fuzz the workspace loader (needs nightly and cargo-fuzz); SECONDS defaults to 600.
fuzz SECONDS="600":
    cd fuzz && cargo +nightly fuzz run load -- -max_total_time={{SECONDS}} -jobs=1 -workers=1

# Check the CI examples (examples/ci/): actionlint (built once into the cache), GitLab YAML and flags, and their plan/drift steps run against the OpenShift example's snapshot; and examples/in-cluster/ (manifests, run's flags, the workspace, RBAC). No cluster needed.
lint-ci:
    scripts/lint-ci-examples.sh

# Fault-injection run: 200 seeded fault schedules through the fault proxy (SEEDS to change; PULLWARDEN_CHAOS_SEED=S replays one), plus restarts mid-apply.
chaos SEEDS="200":
    PULLWARDEN_CHAOS_SEEDS={{SEEDS}} PULLWARDEN_CONTROLPLANE_BIN="$(scripts/build-controlplane.sh)" cargo test --test chaos_cluster -- --nocapture --test-threads 1

# Benchmark against kubectl on a real control plane (PULLWARDEN_BENCH_SIZES="200 2000", see BENCHMARKS.md).
bench:
    scripts/bench.sh

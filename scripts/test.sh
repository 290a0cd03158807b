#!/usr/bin/env bash
# The one test command (`just test`): builds what it needs, runs every test,
# checks that the cluster tests ran, and that no control-plane process outlives
# the run, also one whose test process was killed.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { echo "test.sh: $*" >&2; }

# kube-apiserver, kubectl and etcd from the Go module proxy, cached by version
PULLWARDEN_CONTROLPLANE_BIN="$(scripts/build-controlplane.sh)"
export PULLWARDEN_CONTROLPLANE_BIN
# the kubelet's own credential lookup, for the differential test (kubelet_oracle), same cache
PULLWARDEN_KUBELET_ORACLE="$(scripts/build-kubelet-oracle.sh)"; export PULLWARDEN_KUBELET_ORACLE
# the distribution registry (registry_* tests), same cache
PULLWARDEN_REGISTRY_BIN="$(scripts/build-registry.sh)"; export PULLWARDEN_REGISTRY_BIN

# every control plane of this run keeps its state under one root
root="$(mktemp -d "${TMPDIR:-/tmp}/pullwarden-test-run.XXXXXX")"
export PULLWARDEN_TESTENV_ROOT="$root"

# PIDs of live (non-zombie) processes whose command line mentions $root
leftovers() {
  local p
  for p in /proc/[0-9]*; do
    if tr "\\0" " " 2>/dev/null <"$p/cmdline" | grep -qF "$root" \
      && ! grep -q '^State:[[:space:]]*Z' "$p/status" 2>/dev/null; then
      echo "${p#/proc/}"
    fi
  done
}
assert_no_leftovers() {
  local i
  for i in $(seq 1 300); do
    [[ -z "$(leftovers)" ]] && return 0
    sleep 0.1
  done
  log "processes outlived $1:"
  for p in $(leftovers); do tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-200 >&2; echo >&2; done
  exit 1
}

out="$root/cargo-test.out"
# --no-fail-fast: one failing crate must not hide whether the cluster tests ran
set +e
cargo test --workspace --all-targets --no-fail-fast 2>&1 | tee "$out"
status="${PIPESTATUS[0]}"
set -e

# no silent skips: the cluster tests ran, and not fewer than before
min="$(cat crates/pullwarden-testenv/tests/cluster-test-count.min)"
passed="$(grep -cE '^test ([a-z_]+::)*cluster_[a-z0-9_]+ \.\.\. ok$' "$out" || true)"
log "$passed cluster tests passed against a real kube-apiserver (minimum $min)"
if (( passed == 0 || passed < min )); then
  log "expected at least $min cluster tests to pass; update crates/pullwarden-testenv/tests/cluster-test-count.min only when removing tests on purpose"
  exit 1
fi
assert_no_leftovers "the test run"

# a test process killed with SIGKILL takes its control plane with it
killed="$root/killed"
mkdir -p "$killed"
# cargo does not always list the test binary last: pick the `cluster` test target's artifact.
test_bin="$(cargo test -p pullwarden-testenv --test cluster --no-run --message-format=json 2>/dev/null \
  | grep '"kind":\["test"\]' | grep '"name":"cluster"' \
  | sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)"
[[ -x "$test_bin" ]] || { log "cannot find the cluster test binary"; exit 1; }
PULLWARDEN_TESTENV_ROOT="$killed" "$test_bin" --test-threads=1 --skip lifetime >/dev/null 2>&1 &
victim=$!
for _ in $(seq 1 1200); do
  compgen -G "$killed/pullwarden-testenv-*/kube-apiserver.pid" >/dev/null && break
  sleep 0.1
done
sleep 2
# the check below must not pass vacuously: the servers are up now
[[ -n "$(leftovers)" ]] || { log "no control-plane process seen before the kill"; exit 1; }
kill -KILL "$victim" || { log "the test process ended before it could be killed"; exit 1; }
wait "$victim" 2>/dev/null || true
assert_no_leftovers "a test process killed with SIGKILL"
log "no etcd or kube-apiserver outlived the run, nor a killed test process"
rm -rf "$root"
if (( status != 0 )); then
  log "cargo test failed (exit $status)"
  exit "$status"
fi

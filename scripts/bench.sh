#!/usr/bin/env bash
# `just bench`: pullwarden against kubectl on a real control plane, in one run.
#
# For each size N (PULLWARDEN_BENCH_SIZES, default "200 2000" namespaces):
#   1. pullwarden-bench-gen writes a workspace, a cluster fixture and the
#      equivalent plain manifests (crates/pullwarden-bench);
#   2. control plane A (pullwarden): load the fixture, then measure
#      cold `pullwarden apply --auto-approve`, `pullwarden plan` with no
#      changes, the floor (`kubectl get namespaces,secrets,serviceaccounts,
#      rolebindings -A -o json`), then `kubectl replace -f drift.yaml` (1% of
#      the managed Secrets' data, 1% of the ServiceAccounts lose a link) and
#      `pullwarden plan` with that drift; stop A;
#   3. control plane B (kubectl), loaded with the same fixture: measure cold
#      `kubectl apply --server-side` of the equivalent manifests, then
#      `kubectl diff --server-side` of them (no changes); stop B.
# Each measurement: wall time (median of PULLWARDEN_BENCH_REPEATS, default 3;
# cold applies run once), peak RSS (GNU time %M) and the API requests the
# server counted (apiserver_request_total from /metrics, summed over all
# labels, before and after; the scrapes themselves are excluded, see below).
#
# Env: PULLWARDEN_BENCH_SIZES, PULLWARDEN_BENCH_REPEATS, PULLWARDEN_BENCH_DIFF_REPEATS (1),
#      PULLWARDEN_BENCH_OUT (results file, default target/bench/results.md),
#      PULLWARDEN_BENCH_KEEP=1 keeps the work dir (fixtures, logs, outputs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

SIZES="${PULLWARDEN_BENCH_SIZES:-200 2000}"
REPEATS="${PULLWARDEN_BENCH_REPEATS:-3}"
# kubectl diff takes minutes at N=2000: once by default
DIFF_REPEATS="${PULLWARDEN_BENCH_DIFF_REPEATS:-1}"
OUT="${PULLWARDEN_BENCH_OUT:-$repo/target/bench/results.md}"

log() { echo "bench.sh: $*" >&2; }

# ---- tools ---------------------------------------------------------------
if ! /usr/bin/time -f %M true >/dev/null 2>&1; then
  log "installing GNU time"
  apt-get install -y time >/dev/null || { apt-get update >/dev/null && apt-get install -y time >/dev/null; }
fi
log "building release binaries"
cargo build --release -q -p pullwarden -p pullwarden-bench -p pullwarden-testenv
# what was built (others may commit while the benchmark runs)
built="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src crates Cargo.toml Cargo.lock || echo ' + uncommitted changes')"
rel="$repo/target/release"
PW="$rel/pullwarden"
GEN="$rel/pullwarden-bench-gen"
TESTENV="$rel/pullwarden-testenv"
PULLWARDEN_CONTROLPLANE_BIN="$(scripts/build-controlplane.sh)"
export PULLWARDEN_CONTROLPLANE_BIN
KUBECTL="$PULLWARDEN_CONTROLPLANE_BIN/kubectl" # v1.36.3, not the machine's

# ---- work dir, control planes, cleanup -----------------------------------
work="$(mktemp -d "${TMPDIR:-/tmp}/pullwarden-bench.XXXXXX")"
started=()
leftovers() {
  local p
  for p in /proc/[0-9]*; do
    if tr "\\0" " " 2>/dev/null <"$p/cmdline" | grep -qF "$work" \
      && ! grep -q '^State:[[:space:]]*Z' "$p/status" 2>/dev/null; then
      echo "${p#/proc/}"
    fi
  done
}
cleanup() {
  local status=$? dir
  for dir in "${started[@]}"; do "$TESTENV" down --dir "$dir" 2>/dev/null || true; done
  local left; left="$(leftovers)"
  if [[ -n "$left" ]]; then
    log "still running after down, killing by PID: $left"
    # shellcheck disable=SC2086
    kill -KILL $left 2>/dev/null || true
  fi
  if [[ "${PULLWARDEN_BENCH_KEEP:-0}" == 1 ]]; then log "kept $work"; else rm -rf "$work"; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cluster_up() { # dir
  "$TESTENV" up --dir "$1" >/dev/null
  started+=("$1")
}
cluster_down() { # dir
  "$TESTENV" down --dir "$1" 2>/dev/null
  local d kept=()
  for d in "${started[@]}"; do [[ "$d" == "$1" ]] || kept+=("$d"); done
  started=("${kept[@]}")
}

# k: this cluster's kubectl (admin context, its own discovery cache)
k() { "$KUBECTL" --kubeconfig "$kcfg" --context pullwarden-admin --cache-dir "$kcache" "$@"; }

# Sum of apiserver_request_total over every label set.
# The server's own background traffic is left out: its lease renewals (every
# 10 s) and its OpenAPI v3 aggregation (openapi/v3 GETs); neither tool
# writes leases, and kubectl's own OpenAPI fetches (a few per run) are lost
# with them. /metrics, /version and discovery are not in this counter.
scrape() {
  k get --raw /metrics | awk '/^apiserver_request_total\{/ && !/resource="leases"/ && !/subresource="openapi\/v3"/ {s += $NF}
    END {printf "%d\n", s}'
}

# What one scrape adds to the counter (the scrape itself, and anything the
# server does on its own meanwhile), measured on this cluster before use.
calibrate() {
  local a c
  a="$(scrape)"; scrape >/dev/null; c="$(scrape)"
  scrape_cost=$(( (c - a) / 2 ))
}

load_fixture() { # gen dir
  local t0=$SECONDS
  k create -f "$1/fixture/00-cluster.yaml" >/dev/null
  # the namespaces exist: the objects load in parallel, one kubectl per file
  printf '%s\n' "$1"/fixture/objects-*.yaml \
    | xargs -P 2 -I{} "$KUBECTL" --kubeconfig "$kcfg" --context pullwarden-admin \
        --cache-dir "$kcache" create -f {} >/dev/null
  local n
  n="$(k get namespaces,secrets,serviceaccounts,rolebindings -A --no-headers 2>/dev/null | wc -l)"
  log "  fixture loaded in $((SECONDS - t0)) s ($n namespaces+secrets+serviceaccounts+rolebindings)"
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else print v[int((NR + 1) / 2)]}'; }
minmax() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%s–%s", lo, hi}'; }

# measure LABEL RUNS EXPECTED_EXIT CMD...: records wall, RSS, requests, exit code.
# Appends "N|label|runs|wall_median|wall_range|rss_mb_max|requests_median|exits" to $rows.
rows="$work/rows"
: >"$rows"
measure() {
  local label="$1" runs="$2" expect="$3"; shift 3
  local i walls="" rss="" reqs="" exits="" before after rc tfile="$work/time.out"
  for ((i = 1; i <= runs; i++)); do
    before="$(scrape)"
    set +e
    /usr/bin/time -f '%e %M' -o "$tfile" "$@" >"$work/last.stdout" 2>"$work/last.stderr"
    rc=$?
    set -e
    after="$(scrape)"
    # GNU time puts "Command exited with non-zero status N" first: the figures are the last line
    read -r wall kb < <(tail -1 "$tfile")
    walls+="$wall"$'\n'
    rss+="$kb"$'\n'
    reqs+="$(( after - before - scrape_cost ))"$'\n'
    exits+="$rc "
    cp "$work/last.stdout" "$work/$n-$label-$i.stdout"
    cp "$work/last.stderr" "$work/$n-$label-$i.stderr"
    if [[ "$rc" != "$expect" ]]; then
      log "  $label: exit $rc, expected $expect; stderr:"
      tail -20 "$work/last.stderr" >&2
      exit 1
    fi
    log "  $label run $i: ${wall}s, $((kb / 1024)) MB, $(( after - before - scrape_cost )) requests"
  done
  printf '%s|%s|%s|%s|%s|%s|%s|%s\n' "$n" "$label" "$runs" \
    "$(printf '%s' "$walls" | median)" "$(printf '%s' "$walls" | minmax)" \
    "$(printf '%s' "$rss" | sort -g | tail -1 | awk '{printf "%.0f", $1 / 1024}')" \
    "$(printf '%s' "$reqs" | median)" "${exits% }" >>"$rows"
}

plan_line() { grep -h '^Plan:' "$1" | head -1 || echo "(no Plan: line)"; }
notes="$work/notes"
: >"$notes"
note() { echo "- N=$n: $*" >>"$notes"; log "  $*"; }

# ---- the run -------------------------------------------------------------
log "work dir $work; sizes: $SIZES; repeats: $REPEATS"
for n in $SIZES; do
  gen="$work/gen-$n"
  "$GEN" --namespaces "$n" --out "$gen" --chunks 4
  # shellcheck disable=SC1091
  source "$gen/expected.env"
  log "N=$n: $FIXTURE_OBJECTS fixture objects, $APPLY_CHANGES changes to apply, $DRIFT_CHANGES drifted"

  # -- A: pullwarden ---------------------------------------------------------
  dir="$work/pw-$n"
  cluster_up "$dir"
  kcfg="$dir/kubeconfig" kcache="$work/kcache-pw-$n"
  load_fixture "$gen"
  calibrate
  note "one /metrics scrape adds $scrape_cost to apiserver_request_total (subtracted)"
  pwflags=(--kubeconfig "$kcfg" --context pullwarden-admin --color never)
  measure "pullwarden apply (cold)" 1 0 "$PW" apply "$gen/workspace" --auto-approve "${pwflags[@]}"
  note "apply: $(grep -h '^Apply complete' "$work/last.stderr" || plan_line "$work/last.stdout")"
  measure "pullwarden plan (no changes)" "$REPEATS" 0 "$PW" plan "$gen/workspace" --detailed-exitcode "${pwflags[@]}"
  measure "floor: kubectl get -A -o json" "$REPEATS" 0 \
    bash -c '"$@" >/dev/null' _ "$KUBECTL" --kubeconfig "$kcfg" --context pullwarden-admin \
    --cache-dir "$kcache" get namespaces,secrets,serviceaccounts,rolebindings -A -o json
  k replace -f "$gen/drift.yaml" >/dev/null
  measure "pullwarden plan (1% drift)" "$REPEATS" 2 "$PW" plan "$gen/workspace" --detailed-exitcode "${pwflags[@]}"
  note "drift plan: $(plan_line "$work/last.stdout") (expected $DRIFT_SECRETS updates, $DRIFT_LINKS links)"
  cluster_down "$dir"

  # -- B: kubectl --------------------------------------------------------------
  dir="$work/kubectl-$n"
  cluster_up "$dir"
  kcfg="$dir/kubeconfig" kcache="$work/kcache-kubectl-$n"
  load_fixture "$gen"
  calibrate
  kc=("$KUBECTL" --kubeconfig "$kcfg" --context pullwarden-admin --cache-dir "$kcache")
  measure "kubectl apply --server-side (cold)" 1 0 \
    bash -c '"$@" >/dev/null' _ "${kc[@]}" apply --server-side --force-conflicts -f "$gen/equivalent.yaml"
  measure "kubectl diff --server-side (no changes)" "$DIFF_REPEATS" 0 \
    "${kc[@]}" diff --server-side --force-conflicts -f "$gen/equivalent.yaml"
  cluster_down "$dir"
done

# ---- report --------------------------------------------------------------
get() { awk -F'|' -v n="$1" -v l="$2" -v c="$3" '$1 == n && $2 == l {print $c}' "$rows"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
mkdir -p "$(dirname "$OUT")"
{
  echo "# pullwarden benchmark results"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); binaries built from: $built"
  echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/^Mem:/ {print $2}') GB RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- kubectl and kube-apiserver $("$KUBECTL" version --client -o json 2>/dev/null | awk -F'"' '/gitVersion/ {print $4; exit}'), etcd v3.6.16; repeats: $REPEATS (median wall; cold applies once, kubectl diff $DIFF_REPEATS)"
  echo
  echo "| N | command | runs | wall median (s) | wall range (s) | peak RSS (MB) | API requests (server-counted, median) | exit |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | --- |"
  awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8}' "$rows"
  echo
  echo "## Ratios"
  echo
  echo "| N | plan / floor (target ≤ 1.2) | kubectl diff / plan (target ≥ 20) | kubectl apply / pullwarden apply (target ≥ 3) | pullwarden max peak RSS MB (target < 300) |"
  echo "| ---: | ---: | ---: | ---: | ---: |"
  for n in $SIZES; do
    plan="$(get "$n" "pullwarden plan (no changes)" 4)"
    floor="$(get "$n" "floor: kubectl get -A -o json" 4)"
    diff="$(get "$n" "kubectl diff --server-side (no changes)" 4)"
    papply="$(get "$n" "pullwarden apply (cold)" 4)"
    kapply="$(get "$n" "kubectl apply --server-side (cold)" 4)"
    rss="$(awk -F'|' -v n="$n" '$1 == n && $2 ~ /^pullwarden/ {print $6}' "$rows" | sort -g | tail -1)"
    echo "| $n | $(ratio "$plan" "$floor") | $(ratio "$diff" "$plan") | $(ratio "$kapply" "$papply") | $rss |"
  done
  echo
  echo "## Requests by size"
  echo
  echo "| command | ${SIZES// / | } |"
  echo "| --- |$(for _ in $SIZES; do printf ' ---: |'; done)"
  for label in "pullwarden apply (cold)" "pullwarden plan (no changes)" "pullwarden plan (1% drift)" \
    "floor: kubectl get -A -o json" "kubectl apply --server-side (cold)" "kubectl diff --server-side (no changes)"; do
    printf '| %s |' "$label"
    for n in $SIZES; do printf ' %s |' "$(get "$n" "$label" 7)"; done
    echo
  done
  echo
  echo "## Notes"
  echo
  cat "$notes"
} >"$OUT"
cat "$OUT"
log "results in $OUT"

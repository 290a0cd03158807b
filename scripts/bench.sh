#!/usr/bin/env bash
# `just bench`: pullwarden on a real control plane (and against kubectl), in one run.
#
# For each size N (PULLWARDEN_BENCH_SIZES, default "200 2000" namespaces):
#   1. pullwarden-bench-gen writes a workspace, a cluster fixture, noise
#      (PULLWARDEN_BENCH_NOISE Helm releases of ~100 KB, TLS and Opaque
#      Secrets, twice as many RoleBindings per namespace; default 2; none for
#      N > PULLWARDEN_BENCH_NOISE_MAX_N, default 2000) and the equivalent plain
#      manifests (crates/pullwarden-bench);
#   2. control plane A (pullwarden): load the fixture (timed), then measure
#      cold `pullwarden apply --auto-approve`, `pullwarden plan` with no
#      changes, the floor (pullwarden-bench-floor: the same paginated LISTs
#      over plain HTTP, bodies counted and not decoded), `pullwarden drift`
#      (in sync); `pullwarden snapshot` and `plan --live snapshot --format
#      json`, compared byte for byte with `plan --format json` against the
#      cluster (N >= PULLWARDEN_BENCH_SNAPSHOT_MIN_N); then load the noise (timed) and measure plan and the floor
#      again, and the floor listing every Secret (what the read sent before
#      #13); then `kubectl replace -f drift.yaml` (1% of the managed Secrets'
#      data, 1% of the ServiceAccounts lose a link) and `pullwarden plan`
#      with that drift; stop A;
#   3. control plane B (kubectl; PULLWARDEN_BENCH_KUBECTL=0 skips it), loaded
#      with the same fixture: measure cold `kubectl apply --server-side` of
#      the equivalent manifests, then `kubectl diff --server-side` of them
#      (no changes); stop B.
# Each measurement: wall time (median of PULLWARDEN_BENCH_REPEATS, default 3;
# cold applies and snapshots run once), user+system CPU time, peak RSS (GNU
# time), the API requests the server counted (apiserver_request_total from
# /metrics, summed over all labels, before and after; the scrapes themselves
# are excluded, see below) and the response bytes it sent
# (apiserver_response_sizes_sum of component="apiserver", leases excluded).
# PULLWARDEN_BENCH_PERF=1 also records `perf record` of one plan with noise
# (flat profile by symbol, in the work dir and the results).
#
# Then `pullwarden run` (#12), on control plane C with an audit log of every
# request (reads too), loaded with the fixture of PULLWARDEN_BENCH_RUN_N
# namespaces (default 2000; 0 skips this part) and converged by one apply:
# `pullwarden run` (as the unprivileged user, bound to cluster-admin, so the
# audit log tells its requests apart; --resync PULLWARDEN_BENCH_RUN_RESYNC,
# default 2m, so that full reconciles fall inside the idle window) while
# pullwarden-bench-latency creates PULLWARDEN_BENCH_RUN_NEW namespaces
# (default 200) at PULLWARDEN_BENCH_RUN_RATE per second (default 4), each
# with the three ServiceAccounts the workspace links, and times each from
# its last ServiceAccount to its two pull secrets, every link and its two
# RoleBindings (median, p90, p99, max); then PULLWARDEN_BENCH_RUN_IDLE
# seconds (default 300) with nothing happening, counting pullwarden's
# requests by verb in the audit log; its peak RSS (VmHWM) is read before
# SIGTERM. Then the same latency measurement with `pullwarden apply
# --auto-approve` in a loop every PULLWARDEN_BENCH_POLL seconds (default 10,
# as the pull-secret operators poll; 0 skips it) instead of `run`.
#
# Env: PULLWARDEN_BENCH_SIZES, PULLWARDEN_BENCH_REPEATS, PULLWARDEN_BENCH_DIFF_REPEATS (1),
#      PULLWARDEN_BENCH_NOISE (2), PULLWARDEN_BENCH_NOISE_MAX_N (2000),
#      PULLWARDEN_BENCH_KUBECTL (1), PULLWARDEN_BENCH_PERF (0),
#      PULLWARDEN_BENCH_SNAPSHOT_MIN_N (10000: the snapshot check runs at N >= it),
#      PULLWARDEN_BENCH_COMPARE_BIN (another pullwarden binary whose plan is measured
#      beside this one's, with and without noise) and PULLWARDEN_BENCH_COMPARE_LABEL,
#      PULLWARDEN_BENCH_RUN_N (2000), PULLWARDEN_BENCH_RUN_NEW (200), PULLWARDEN_BENCH_RUN_RATE (4),
#      PULLWARDEN_BENCH_RUN_IDLE (300), PULLWARDEN_BENCH_RUN_RESYNC (2m), PULLWARDEN_BENCH_POLL (10),
#      PULLWARDEN_BENCH_FLEET_N (1000; 0 skips the fleet: three control planes loaded with
#      the same N-namespace fixture and applied, `plan` of each cluster on its own, then
#      `plan` of a workspace naming the three (spec.clusters) against the slowest single
#      plan, target <= 1.3x; requests and MB are counted on the first cluster only),
#      PULLWARDEN_BENCH_FLEET_RTT_MS (25; 0 skips it: the same single and fleet plans again,
#      each cluster reached through its own `pullwarden-testenv proxy` holding every answer
#      that many ms, as a remote cluster's round trip would; as a cluster-admin
#      ServiceAccount's token, since client certificates cannot pass the proxy),
#      PULLWARDEN_BENCH_OUT (results file, default target/bench/results.md),
#      PULLWARDEN_BENCH_KEEP=1 keeps the work dir (fixtures, logs, outputs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$(pwd)"

SIZES="${PULLWARDEN_BENCH_SIZES-200 2000}" # empty: none (only the run part)
REPEATS="${PULLWARDEN_BENCH_REPEATS:-3}"
# kubectl diff takes minutes at N=2000: once by default
DIFF_REPEATS="${PULLWARDEN_BENCH_DIFF_REPEATS:-1}"
NOISE="${PULLWARDEN_BENCH_NOISE:-2}"
NOISE_MAX_N="${PULLWARDEN_BENCH_NOISE_MAX_N:-2000}"
KUBECTL_HALF="${PULLWARDEN_BENCH_KUBECTL:-1}"
PERF="${PULLWARDEN_BENCH_PERF:-0}"
SNAPSHOT_MIN_N="${PULLWARDEN_BENCH_SNAPSHOT_MIN_N:-10000}"
COMPARE_BIN="${PULLWARDEN_BENCH_COMPARE_BIN:-}"
COMPARE_LABEL="${PULLWARDEN_BENCH_COMPARE_LABEL:-another build}"
OUT="${PULLWARDEN_BENCH_OUT:-$repo/target/bench/results.md}"
RUN_N="${PULLWARDEN_BENCH_RUN_N:-2000}"
RUN_NEW="${PULLWARDEN_BENCH_RUN_NEW:-200}"
RUN_RATE="${PULLWARDEN_BENCH_RUN_RATE:-4}"
RUN_IDLE="${PULLWARDEN_BENCH_RUN_IDLE:-300}"
RUN_RESYNC="${PULLWARDEN_BENCH_RUN_RESYNC:-2m}"
POLL="${PULLWARDEN_BENCH_POLL:-10}"

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
rel="${CARGO_TARGET_DIR:-$repo/target}/release"
PW="$rel/pullwarden"
GEN="$rel/pullwarden-bench-gen"
FLOOR="$rel/pullwarden-bench-floor"
LATENCY="$rel/pullwarden-bench-latency"
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

cluster_up() { # dir [audit: writes|all]
  PULLWARDEN_TESTENV_AUDIT="${2:-}" "$TESTENV" up --dir "$1" >/dev/null
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

# "REQUESTS BYTES": the sum of apiserver_request_total over every label set,
# and of apiserver_response_sizes_sum over the API's own resources
# (component="apiserver": GETs and LISTs of objects).
# The server's own background traffic is left out: its lease renewals (every
# 10 s) and its OpenAPI v3 aggregation (openapi/v3 GETs); neither tool
# writes leases, and kubectl's own OpenAPI fetches (a few per run) are lost
# with them. /metrics, /version and discovery are not in these counters.
scrape() {
  k get --raw /metrics | awk '
    /^apiserver_request_total\{/ && !/resource="leases"/ && !/subresource="openapi\/v3"/ {s += $NF}
    /^apiserver_response_sizes_sum\{/ && /component="apiserver"/ && !/resource="leases"/ {b += $NF}
    END {printf "%d %.0f\n", s, b}'
}

# What one scrape adds to the counter (the scrape itself, and anything the
# server does on its own meanwhile), measured on this cluster before use.
calibrate() {
  local a c
  read -r a _ < <(scrape); scrape >/dev/null; read -r c _ < <(scrape)
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
  fixture_seconds=$((SECONDS - t0))
}

load_noise() { # gen dir
  local t0=$SECONDS
  # kubectl warns about the fake certificates of the TLS Secrets: not shown
  printf '%s\n' "$1"/fixture/noise-*.yaml \
    | xargs -P 2 -I{} "$KUBECTL" --kubeconfig "$kcfg" --context pullwarden-admin \
        --cache-dir "$kcache" create -f {} >/dev/null 2>"$work/noise-load.stderr" \
    || { grep -v 'x509' "$work/noise-load.stderr" >&2; return 1; }
  noise_seconds=$((SECONDS - t0))
  log "  noise loaded in $noise_seconds s"
}

median() { sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else print v[int((NR + 1) / 2)]}'; }
minmax() { sort -g | awk 'NR==1{lo=$1} {hi=$1} END {printf "%s–%s", lo, hi}'; }

# measure LABEL RUNS EXPECTED_EXIT CMD...: records wall, CPU, RSS, requests, bytes, exit code.
# Appends "N|label|runs|wall_median|wall_range|rss_mb_max|requests_median|exits|cpu_median|mb_median" to $rows.
rows="$work/rows"
: >"$rows"
measure() {
  local label="$1" runs="$2" expect="$3"; shift 3
  local i walls="" rss="" reqs="" cpus="" mbs="" exits="" before after bbefore bafter rc tfile="$work/time.out"
  for ((i = 1; i <= runs; i++)); do
    read -r before bbefore < <(scrape)
    set +e
    /usr/bin/time -f '%e %M %U %S' -o "$tfile" "$@" >"$work/last.stdout" 2>"$work/last.stderr"
    rc=$?
    set -e
    read -r after bafter < <(scrape)
    # GNU time puts "Command exited with non-zero status N" first: the figures are the last line
    read -r wall kb usr sys < <(tail -1 "$tfile")
    walls+="$wall"$'\n'
    rss+="$kb"$'\n'
    reqs+="$(( after - before - scrape_cost ))"$'\n'
    cpus+="$(awk -v u="$usr" -v s="$sys" 'BEGIN {printf "%.2f", u + s}')"$'\n'
    mbs+="$(awk -v a="$bbefore" -v b="$bafter" 'BEGIN {printf "%.1f", (b - a) / 1e6}')"$'\n'
    exits+="$rc "
    cp "$work/last.stdout" "$work/$n-$label-$i.stdout"
    cp "$work/last.stderr" "$work/$n-$label-$i.stderr"
    if [[ "$rc" != "$expect" ]]; then
      log "  $label: exit $rc, expected $expect; stderr:"
      tail -20 "$work/last.stderr" >&2
      exit 1
    fi
    log "  $label run $i: ${wall}s, $((kb / 1024)) MB, $(( after - before - scrape_cost )) requests, $(printf '%s' "$mbs" | tail -1) MB sent by the server"
  done
  printf '%s|%s|%s|%s|%s|%s|%s|%s|%s|%s\n' "$n" "$label" "$runs" \
    "$(printf '%s' "$walls" | median)" "$(printf '%s' "$walls" | minmax)" \
    "$(printf '%s' "$rss" | sort -g | tail -1 | awk '{printf "%.0f", $1 / 1024}')" \
    "$(printf '%s' "$reqs" | median)" "${exits% }" \
    "$(printf '%s' "$cpus" | median)" "$(printf '%s' "$mbs" | median)" >>"$rows"
}

plan_line() { grep -h '^Plan:' "$1" | head -1 || echo "(no Plan: line)"; }
notes="$work/notes"
: >"$notes"
note() { echo "- N=$n: $*" >>"$notes"; log "  $*"; }

# ---- the run -------------------------------------------------------------
log "work dir $work; sizes: $SIZES; repeats: $REPEATS; noise: $NOISE (up to N=$NOISE_MAX_N)"
for n in $SIZES; do
  gen="$work/gen-$n"
  noise=0
  if ((n <= NOISE_MAX_N)); then noise="$NOISE"; fi
  "$GEN" --namespaces "$n" --out "$gen" --chunks 4 --noise "$noise"
  # shellcheck disable=SC1091
  source "$gen/expected.env"
  log "N=$n: $FIXTURE_OBJECTS fixture objects, $NOISE_OBJECTS noise objects ($((NOISE_BYTES / 1000000)) MB), $APPLY_CHANGES changes to apply, $DRIFT_CHANGES drifted"

  # -- A: pullwarden ---------------------------------------------------------
  dir="$work/pw-$n"
  cluster_up "$dir"
  kcfg="$dir/kubeconfig" kcache="$work/kcache-pw-$n"
  load_fixture "$gen"
  note "fixture: $FIXTURE_OBJECTS objects loaded in $fixture_seconds s"
  calibrate
  note "one /metrics scrape adds $scrape_cost to apiserver_request_total (subtracted)"
  pwflags=(--kubeconfig "$kcfg" --context pullwarden-admin --color never)
  floor=("$FLOOR" --kubeconfig "$kcfg" --context pullwarden-admin)
  measure "pullwarden apply (cold)" 1 0 "$PW" apply "$gen/workspace" --auto-approve "${pwflags[@]}"
  note "apply: $(grep -hi '^apply complete' "$work/last.stderr" || plan_line "$work/last.stdout")"
  measure "pullwarden plan (no changes)" "$REPEATS" 0 "$PW" plan "$gen/workspace" --detailed-exitcode "${pwflags[@]}"
  measure "floor: the same LISTs, not decoded" "$REPEATS" 0 "${floor[@]}"
  note "floor: $(cat "$work/last.stdout")"
  if [[ -n "$COMPARE_BIN" ]]; then
    measure "pullwarden plan (no changes), $COMPARE_LABEL" "$REPEATS" 0 "$COMPARE_BIN" plan "$gen/workspace" --detailed-exitcode "${pwflags[@]}"
  fi
  measure "pullwarden drift (in sync)" "$REPEATS" 0 "$PW" drift "$gen/workspace" "${pwflags[@]}"
  # #11: the access matrix reads a few more kinds (RBAC) and computes locally; --verify asks
  # one SubjectAccessReview per allowed project cell (its request count is in the table).
  measure "pullwarden access" "$REPEATS" 0 "$PW" access "$gen/workspace" "${pwflags[@]}"
  measure "pullwarden access --verify" 1 0 "$PW" access "$gen/workspace" --verify "${pwflags[@]}"
  # #16: a snapshot plans through --live exactly like the cluster (at the
  # largest sizes only: the snapshot digests every distinct credential with
  # PBKDF2, ~100 s for the 6,000 service-account tokens of N=2000)
  if ((n >= SNAPSHOT_MIN_N)); then
  measure "pullwarden snapshot" 1 0 "$PW" snapshot --out "$work/snap-$n.json" "${pwflags[@]}"
  measure "pullwarden plan --live snapshot (json)" 1 0 "$PW" plan "$gen/workspace" --live "$work/snap-$n.json" --format json "${pwflags[@]}"
  cp "$work/last.stdout" "$work/plan-live-$n.json"
  "$PW" plan "$gen/workspace" --format json "${pwflags[@]}" >"$work/plan-cluster-$n.json"
  if cmp -s "$work/plan-live-$n.json" "$work/plan-cluster-$n.json"; then
    note "snapshot check: \`plan --live snapshot --format json\` and \`plan --format json\` against the cluster are identical ($(wc -c <"$work/plan-cluster-$n.json") bytes; snapshot $(($(wc -c <"$work/snap-$n.json") / 1000000)) MB)"
  else
    note "snapshot check FAILED: the plans differ"
    diff "$work/plan-live-$n.json" "$work/plan-cluster-$n.json" | head -40 >&2
    exit 1
  fi
  fi
  if ((noise > 0)); then
    load_noise "$gen"
    note "noise: $NOISE_OBJECTS objects ($((NOISE_BYTES / 1000000)) MB of manifests) loaded in $noise_seconds s"
    measure "pullwarden plan (no changes, noise)" "$REPEATS" 0 "$PW" plan "$gen/workspace" --detailed-exitcode "${pwflags[@]}"
    if [[ -n "$COMPARE_BIN" ]]; then
      measure "pullwarden plan (no changes, noise), $COMPARE_LABEL" "$REPEATS" 0 "$COMPARE_BIN" plan "$gen/workspace" --detailed-exitcode "${pwflags[@]}"
    fi
    if [[ "$PERF" == 1 ]]; then
      perf record -q -F 1999 -o "$work/perf-$n.data" -- "$PW" plan "$gen/workspace" "${pwflags[@]}" >/dev/null 2>&1
      perf report -i "$work/perf-$n.data" --no-children --sort dso,symbol --percent-limit 0.7 --stdio 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -45 >"$work/perf-$n.txt"
      perf report -i "$work/perf-$n.data" --no-children --sort dso --stdio 2>/dev/null \
        | grep -v '^#' | grep -v '^$' | head -12 >"$work/perf-dso-$n.txt"
    fi
    measure "floor: the same LISTs, not decoded (noise)" "$REPEATS" 0 "${floor[@]}"
    note "floor with noise: $(cat "$work/last.stdout")"
    measure "floor: every Secret, not decoded (noise; the read before #13)" 1 0 "${floor[@]}" --secrets all
    note "floor of every Secret with noise: $(cat "$work/last.stdout")"
    measure "pullwarden drift (in sync, noise)" 1 0 "$PW" drift "$gen/workspace" "${pwflags[@]}"
  fi
  k replace -f "$gen/drift.yaml" >/dev/null
  measure "pullwarden plan (1% drift)" "$REPEATS" 2 "$PW" plan "$gen/workspace" --detailed-exitcode "${pwflags[@]}"
  note "drift plan: $(plan_line "$work/last.stdout") (expected $DRIFT_SECRETS updates, $DRIFT_LINKS links)"
  measure "pullwarden drift (1% drift)" 1 2 "$PW" drift "$gen/workspace" "${pwflags[@]}"
  cluster_down "$dir"

  [[ "$KUBECTL_HALF" == 1 ]] || continue
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

# ---- pullwarden run (#12) ---------------------------------------------------
run_rows="$work/run-rows"
: >"$run_rows"
# "WRITES READS WATCHES" of user $1 in audit log $2 from byte $3: writes and
# gets/lists completed, watches started (one line per request at that stage).
audit_counts() {
  tail -c +"$(($3 + 1))" "$2" | grep -F "\"username\":\"$1\"" | awk '
    { verb = ""; stage = ""
      if (match($0, /"verb":"[a-z]+"/)) verb = substr($0, RSTART + 8, RLENGTH - 9)
      if (match($0, /"stage":"[A-Za-z]+"/)) stage = substr($0, RSTART + 9, RLENGTH - 10) }
    stage == "ResponseComplete" && verb ~ /^(create|update|patch|delete|deletecollection)$/ {w++}
    stage == "ResponseComplete" && verb ~ /^(get|list)$/ {r++}
    stage == "ResponseStarted" && verb == "watch" {x++}
    END {printf "%d %d %d\n", w, r, x}'
}
# the body of GET /metrics at $1 (host:port)
metrics_of() {
  local host="${1%:*}" port="${1##*:}"
  exec 3<>"/dev/tcp/$host/$port"
  printf 'GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n' "$1" >&3
  sed '1,/^\r*$/d' <&3
  exec 3<&-
}
latency() { # label prefix
  "$LATENCY" --kubeconfig "$kcfg" --context pullwarden-admin --prefix "$2" --count "$RUN_NEW" --rate "$RUN_RATE" \
    --service-accounts builder,default,deployer --secrets bench-internal,bench-quay --role-bindings 2 \
    --timeout-s 120 --out "$work/latency-$2.txt" >"$work/latency-$2.line"
  log "  $1: $(cat "$work/latency-$2.line")"
  echo "$1|$(cat "$work/latency-$2.line")" >>"$run_rows"
}
if ((RUN_N > 0)); then
  n=$RUN_N
  gen="$work/gen-run-$n"
  "$GEN" --namespaces "$n" --out "$gen" --chunks 4 --noise 0
  dir="$work/run-$n"
  cluster_up "$dir" all
  kcfg="$dir/kubeconfig" kcache="$work/kcache-run-$n"
  load_fixture "$gen"
  k create clusterrolebinding bench-pullwarden-run --clusterrole=cluster-admin --user=pullwarden-dev-user >/dev/null
  "$PW" apply "$gen/workspace" --auto-approve --kubeconfig "$kcfg" --context pullwarden-admin --color never >/dev/null 2>"$work/run-apply.stderr"
  log "pullwarden run: $n namespaces applied; starting run (--resync $RUN_RESYNC)"
  "$PW" run "$gen/workspace" --kubeconfig "$kcfg" --context pullwarden-user --metrics-addr 127.0.0.1:0 \
    --resync "$RUN_RESYNC" --log-format json 2>"$work/run.log" &
  runpid=$!
  for _ in $(seq 600); do grep -q '"msg":"in sync"' "$work/run.log" && break; sleep 0.2; done
  grep -q '"msg":"in sync"' "$work/run.log" || { log "run did not get in sync:"; tail -20 "$work/run.log" >&2; exit 1; }
  maddr="$(grep -o '"addr":"[^"]*"' "$work/run.log" | head -1 | cut -d'"' -f4)"
  latency "pullwarden run" bench-run
  sleep 5 # its own writes' events settle
  audit="$dir/audit.log"
  offset="$(stat -c %s "$audit")"
  before_metrics="$(metrics_of "$maddr")"
  log "  idle for $RUN_IDLE s"
  sleep "$RUN_IDLE"
  read -r idle_writes idle_reads idle_watches < <(audit_counts pullwarden-dev-user "$audit" "$offset")
  after_metrics="$(metrics_of "$maddr")"
  scoped_of() { awk -v s="$2" '$1 == "pullwarden_reconciles_by_scope_total{scope=\""s"\"}" {print $2}' <<<"$1"; }
  idle_full=$(( $(scoped_of "$after_metrics" full) - $(scoped_of "$before_metrics" full) ))
  idle_scoped=$(( $(scoped_of "$after_metrics" namespaces) - $(scoped_of "$before_metrics" namespaces) ))
  run_rss_mb=$(( $(awk '/^VmHWM:/ {print $2}' "/proc/$runpid/status") / 1024 ))
  total_full="$(scoped_of "$after_metrics" full)" total_scoped="$(scoped_of "$after_metrics" namespaces)"
  kill -TERM "$runpid"; wait "$runpid" || { log "run exited non-zero"; exit 1; }
  log "  idle $RUN_IDLE s: $idle_writes writes, $idle_reads gets/lists, $idle_watches watches started by pullwarden; reconciles meanwhile: $idle_full full, $idle_scoped scoped; peak RSS $run_rss_mb MB"
  read -r end_writes _ _ < <(audit_counts pullwarden-dev-user "$audit" 0)
  if ((POLL > 0)); then
    ( while :; do
        "$PW" apply "$gen/workspace" --auto-approve --kubeconfig "$kcfg" --context pullwarden-admin --color never >/dev/null 2>&1 || true
        sleep "$POLL"
      done ) &
    pollpid=$!
    latency "\`pullwarden apply\` every $POLL s" bench-poll
    kill "$pollpid" 2>/dev/null || true
    wait "$pollpid" 2>/dev/null || true
  fi
  cluster_down "$dir"
fi

# ---- fleet: three clusters in one plan -----------------------------------
FLEET_N="${PULLWARDEN_BENCH_FLEET_N:-1000}"
FLEET_RTT_MS="${PULLWARDEN_BENCH_FLEET_RTT_MS:-25}"
if ((FLEET_N > 0)); then
  n="fleet"
  gen="$work/gen-fleet"
  "$GEN" --namespaces "$FLEET_N" --out "$gen" --chunks 4 --noise 0
  log "fleet: three control planes, $FLEET_N namespaces each"
  clusters_yaml="  clusters:"
  for c in a b c; do
    dir="$work/fleet-$c"
    cluster_up "$dir"
    kcfg="$dir/kubeconfig" kcache="$work/kcache-fleet-$c"
    load_fixture "$gen"
    "$PW" apply "$gen/workspace" --auto-approve --kubeconfig "$kcfg" --context pullwarden-admin --color never >/dev/null 2>&1
    clusters_yaml+=$'\n'"    - {name: $c, context: pullwarden-admin, kubeconfig: \"$kcfg\"}"
  done
  # the same workspace, naming the three clusters
  fleet_ws="$work/fleet-workspace"
  cp -r "$gen/workspace" "$fleet_ws"
  awk -v add="$clusters_yaml" '{print} $0 == "  prune: true" && !done {print add; done = 1}' \
    "$gen/workspace/workspace.yaml" >"$fleet_ws/workspace.yaml"
  # requests and bytes are scraped on cluster a
  kcfg="$work/fleet-a/kubeconfig" kcache="$work/kcache-fleet-a"
  calibrate
  for c in a b c; do
    measure "pullwarden plan, cluster $c alone (no changes)" "$REPEATS" 0 \
      "$PW" plan "$gen/workspace" --detailed-exitcode --kubeconfig "$work/fleet-$c/kubeconfig" --context pullwarden-admin --color never
  done
  measure "pullwarden plan, fleet of a+b+c (no changes)" "$REPEATS" 0 \
    "$PW" plan "$fleet_ws" --detailed-exitcode --color never
  note "fleet plan: $(grep -h '^Plan:' "$work/last.stdout" | tail -1) over $(grep -c '^=== cluster' "$work/last.stdout") clusters"

  # emulated remote clusters: each reached through a proxy holding every answer RTT ms
  if ((FLEET_RTT_MS > 0)); then
    log "fleet: the same plans through proxies adding $FLEET_RTT_MS ms to every request"
    rtt_pids=()
    rtt_yaml="  clusters:"
    for c in a b c; do
      dir="$work/fleet-$c"
      kcfg="$dir/kubeconfig" kcache="$work/kcache-fleet-$c"
      rm -f "$dir/proxy-url"
      "$TESTENV" proxy --dir "$dir" --delay-ms "$FLEET_RTT_MS" 2>"$dir/proxy.log" &
      rtt_pids+=($!)
      for _ in $(seq 100); do [[ -s "$dir/proxy-url" ]] && break; sleep 0.1; done
      [[ -s "$dir/proxy-url" ]] || { log "proxy of $c did not start:"; cat "$dir/proxy.log" >&2; exit 1; }
      # a token (client certificates cannot pass the proxy), never shown
      k create serviceaccount pullwarden-bench -n default >/dev/null
      k create clusterrolebinding pullwarden-bench --clusterrole cluster-admin \
        --serviceaccount default:pullwarden-bench >/dev/null
      token="$(k create token pullwarden-bench -n default --duration 2h)"
      (umask 077; printf '%s\n' "apiVersion: v1" "kind: Config" \
        "clusters: [{name: rtt, cluster: {server: \"$(cat "$dir/proxy-url")\", certificate-authority: \"$dir/pki/ca.crt\"}}]" \
        "users: [{name: rtt, user: {token: \"$token\"}}]" \
        "contexts: [{name: pullwarden-rtt, context: {cluster: rtt, user: rtt}}]" \
        "current-context: pullwarden-rtt" >"$dir/kubeconfig-rtt")
      unset token
      rtt_yaml+=$'\n'"    - {name: $c, context: pullwarden-rtt, kubeconfig: \"$dir/kubeconfig-rtt\"}"
    done
    rtt_ws="$work/fleet-rtt-workspace"
    cp -r "$gen/workspace" "$rtt_ws"
    awk -v add="$rtt_yaml" '{print} $0 == "  prune: true" && !done {print add; done = 1}' \
      "$gen/workspace/workspace.yaml" >"$rtt_ws/workspace.yaml"
    kcfg="$work/fleet-a/kubeconfig" kcache="$work/kcache-fleet-a"
    calibrate
    for c in a b c; do
      measure "pullwarden plan, cluster $c alone, +$FLEET_RTT_MS ms per request (no changes)" "$REPEATS" 0 \
        "$PW" plan "$gen/workspace" --detailed-exitcode --kubeconfig "$work/fleet-$c/kubeconfig-rtt" --context pullwarden-rtt --color never
    done
    measure "pullwarden plan, fleet of a+b+c, +$FLEET_RTT_MS ms per request (no changes)" "$REPEATS" 0 \
      "$PW" plan "$rtt_ws" --detailed-exitcode --color never
    note "fleet plan through the proxies: $(grep -h '^Plan:' "$work/last.stdout" | tail -1) over $(grep -c '^=== cluster' "$work/last.stdout") clusters"
    kill -TERM "${rtt_pids[@]}" 2>/dev/null || true
    wait "${rtt_pids[@]}" 2>/dev/null || true
    for c in a b c; do note "proxy of $c: $(tail -1 "$work/fleet-$c/proxy.log")"; done
  fi
  for c in a b c; do cluster_down "$work/fleet-$c"; done
fi

# ---- report --------------------------------------------------------------
get() { awk -F'|' -v n="$1" -v l="$2" -v c="$3" '$1 == n && $2 == l {print $c}' "$rows"; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (a != "" && b > 0) printf "%.2f", a / b; else print "-"}'; }
mkdir -p "$(dirname "$OUT")"
{
  echo "# pullwarden benchmark results"
  echo
  echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ); binaries built from: $built"
  echo "- machine: $(nproc) cores, $(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo), $(free -g | awk '/^Mem:/ {print $2}') GB RAM; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- kubectl and kube-apiserver $("$KUBECTL" version --client -o json 2>/dev/null | awk -F'"' '/gitVersion/ {print $4; exit}'), etcd v3.6.16; repeats: $REPEATS (median wall; cold applies once, kubectl diff $DIFF_REPEATS)"
  echo
  echo "| N | command | runs | wall median (s) | wall range (s) | CPU user+sys median (s) | peak RSS (MB) | API requests (server-counted, median) | response MB (server-counted, median) | exit |"
  echo "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"
  awk -F'|' '{printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5, $9, $6, $7, $10, $8}' "$rows"
  echo
  echo "## Ratios"
  echo
  echo "| N | plan noise / plan (target ≤ 1.2) | plan / floor (target ≤ 1.3) | plan noise / floor noise (target ≤ 1.3) | plan peak RSS with noise MB (target < 100 at 2000) | plan MB sent, no noise / noise | every Secret MB (noise) | pullwarden max peak RSS MB |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for n in $SIZES; do
    plan="$(get "$n" "pullwarden plan (no changes)" 4)"
    plann="$(get "$n" "pullwarden plan (no changes, noise)" 4)"
    floor="$(get "$n" "floor: the same LISTs, not decoded" 4)"
    floorn="$(get "$n" "floor: the same LISTs, not decoded (noise)" 4)"
    rssn="$(get "$n" "pullwarden plan (no changes, noise)" 6)"
    mb="$(get "$n" "pullwarden plan (no changes)" 10)"
    mbn="$(get "$n" "pullwarden plan (no changes, noise)" 10)"
    allmb="$(get "$n" "floor: every Secret, not decoded (noise; the read before #13)" 10)"
    rss="$(awk -F'|' -v n="$n" '$1 == n && $2 ~ /^pullwarden/ {print $6}' "$rows" | sort -g | tail -1)"
    echo "| $n | $(ratio "$plann" "$plan") | $(ratio "$plan" "$floor") | $(ratio "$plann" "$floorn") | ${rssn:--} | ${mb:--} / ${mbn:--} | ${allmb:--} | $rss |"
  done
  if [[ "$KUBECTL_HALF" == 1 ]]; then
    echo
    echo "| N | kubectl diff / plan (target ≥ 20) | kubectl apply / pullwarden apply (target ≥ 3) |"
    echo "| ---: | ---: | ---: |"
    for n in $SIZES; do
      plan="$(get "$n" "pullwarden plan (no changes)" 4)"
      diff="$(get "$n" "kubectl diff --server-side (no changes)" 4)"
      papply="$(get "$n" "pullwarden apply (cold)" 4)"
      kapply="$(get "$n" "kubectl apply --server-side (cold)" 4)"
      echo "| $n | $(ratio "$diff" "$plan") | $(ratio "$kapply" "$papply") |"
    done
  fi
  echo
  if ((FLEET_N > 0)); then
    slowest="$(for c in a b c; do get fleet "pullwarden plan, cluster $c alone (no changes)" 4; done | sort -g | tail -1)"
    fleetplan="$(get fleet "pullwarden plan, fleet of a+b+c (no changes)" 4)"
    echo "## Fleet"
    echo
    sum="$(for c in a b c; do get fleet "pullwarden plan, cluster $c alone (no changes)" 4; done | awk '{s += $1} END {printf "%.2f", s}')"
    cpusum="$(for c in a b c; do get fleet "pullwarden plan, cluster $c alone (no changes)" 9; done | awk '{s += $1} END {printf "%.2f", s}')"
    echo "| namespaces per cluster | slowest single-cluster plan (s) | the three one after another (s) | fleet plan of 3 (s) | fleet / slowest (target ≤ 1.3) | fleet / the three one after another | CPU: fleet / the three (s) | fleet peak RSS MB |"
    echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
    echo "| $FLEET_N | $slowest | $sum | $fleetplan | $(ratio "$fleetplan" "$slowest") | $(ratio "$fleetplan" "$sum") | $(get fleet "pullwarden plan, fleet of a+b+c (no changes)" 9) / $cpusum | $(get fleet "pullwarden plan, fleet of a+b+c (no changes)" 6) |"
    echo
    if ((FLEET_RTT_MS > 0)); then
      rtt=", +$FLEET_RTT_MS ms per request"
      slowest="$(for c in a b c; do get fleet "pullwarden plan, cluster $c alone$rtt (no changes)" 4; done | sort -g | tail -1)"
      fleetplan="$(get fleet "pullwarden plan, fleet of a+b+c$rtt (no changes)" 4)"
      sum="$(for c in a b c; do get fleet "pullwarden plan, cluster $c alone$rtt (no changes)" 4; done | awk '{s += $1} END {printf "%.2f", s}')"
      cpusum="$(for c in a b c; do get fleet "pullwarden plan, cluster $c alone$rtt (no changes)" 9; done | awk '{s += $1} END {printf "%.2f", s}')"
      echo "Each cluster reached through a proxy holding every answer $FLEET_RTT_MS ms (emulated remote clusters):"
      echo
      echo "| namespaces per cluster | added per request (ms) | slowest single-cluster plan (s) | the three one after another (s) | fleet plan of 3 (s) | fleet / slowest (target ≤ 1.3) | fleet / the three one after another | CPU: fleet / the three (s) | fleet peak RSS MB |"
      echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
      echo "| $FLEET_N | $FLEET_RTT_MS | $slowest | $sum | $fleetplan | $(ratio "$fleetplan" "$slowest") | $(ratio "$fleetplan" "$sum") | $(get fleet "pullwarden plan, fleet of a+b+c$rtt (no changes)" 9) / $cpusum | $(get fleet "pullwarden plan, fleet of a+b+c$rtt (no changes)" 6) |"
      echo
    fi
  fi
  echo "## Growth per namespace"
  echo
  echo "| N | apply s / 1000 ns | plan s / 1000 ns | drift s / 1000 ns | apply RSS MB | plan RSS MB | drift RSS MB |"
  echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
  for n in $SIZES; do
    per() { awk -v a="$1" -v n="$n" 'BEGIN {if (a == "") print "-"; else printf "%.2f", a * 1000 / n}'; }
    echo "| $n | $(per "$(get "$n" "pullwarden apply (cold)" 4)") | $(per "$(get "$n" "pullwarden plan (no changes)" 4)") | $(per "$(get "$n" "pullwarden drift (in sync)" 4)") | $(get "$n" "pullwarden apply (cold)" 6) | $(get "$n" "pullwarden plan (no changes)" 6) | $(get "$n" "pullwarden drift (in sync)" 6) |"
  done
  echo
  echo "## Requests by size"
  echo
  echo "| command | ${SIZES// / | } |"
  echo "| --- |$(for _ in $SIZES; do printf ' ---: |'; done)"
  cut -d'|' -f2 "$rows" | awk '!seen[$0]++' | while read -r label; do
    printf '| %s |' "$label"
    for n in $SIZES; do v="$(get "$n" "$label" 7)"; printf ' %s |' "${v:--}"; done
    echo
  done
  echo
  if [[ "$PERF" == 1 ]]; then
    for n in $SIZES; do
      [[ -f "$work/perf-$n.txt" ]] || continue
      echo "## perf: one \`pullwarden plan\` with noise at N=$n (samples by shared object, then by symbol)"
      echo
      echo '```'
      cat "$work/perf-dso-$n.txt"
      echo
      cat "$work/perf-$n.txt"
      echo '```'
      echo
    done
  fi
  if ((RUN_N > 0)); then
    echo "## pullwarden run (#12) at N=$RUN_N"
    echo
    echo "Latency from a namespace's last ServiceAccount create to its 2 pull secrets, 3 linked ServiceAccounts and 2 RoleBindings, over $RUN_NEW namespaces created at $RUN_RATE/s (target p99 ≤ 1 s):"
    echo
    echo "| reconciler | namespaces | done | median (ms) | p90 (ms) | p99 (ms) | max (ms) |"
    echo "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"
    while IFS='|' read -r label line; do
      f() { tr ' ' '\n' <<<"$line" | awk -F= -v k="$1" '$1 == k {print $2}'; }
      echo "| $label | $(f count) | $(f done) | $(f median_ms) | $(f p90_ms) | $(f p99_ms) | $(f max_ms) |"
    done <"$run_rows"
    echo
    echo "- idle $RUN_IDLE s (\`--resync $RUN_RESYNC\`), counted by the API server's audit log for pullwarden's user: $idle_writes writes (target 0), $idle_reads gets/lists, $idle_watches watches started; reconciles meanwhile: $idle_full full, $idle_scoped scoped"
    echo "- \`pullwarden run\` peak RSS (VmHWM, at the end): $run_rss_mb MB (target < 300); reconciles over its whole run: $total_full full, $total_scoped scoped; writes over its whole run (audit): $end_writes"
    echo
  fi
  echo "## Notes"
  echo
  cat "$notes"
} >"$OUT"
cat "$OUT"
log "results in $OUT"

#!/usr/bin/env bash
# Checks the CI examples in examples/ci/ (`just lint-ci`):
#
# 1. actionlint (built from the Go module proxy into a cache, only when missing;
#    it also runs shellcheck on every `run:` when shellcheck is on PATH) on the
#    GitHub Actions workflow;
# 2. the GitLab pipeline parses as YAML and has the jobs and keywords it promises;
# 3. every `pullwarden ...` command in both files uses a subcommand and flags
#    that the built binary has (read from its `--help`);
# 4. the workflow's validate/plan/drift steps and the GitLab plan/drift job
#    scripts run here, unchanged, against examples/openshift-image-pull-secrets,
#    with a `pullwarden` shim on PATH that adds
#    `--live examples/live/openshift-image-pull-secrets.yaml` to plan and drift
#    (no cluster needed). Expected: validate 0, plan step passes with plan exit 2
#    and a markdown plan, drift step fails with 2 and writes drift.xml; on a
#    broken workspace the validate and plan steps fail;
# 5. the same plan and drift steps on the fleet example (examples/fleet, three
#    clusters) with `--live examples/live/fleet`: one job, one markdown plan
#    with a section per cluster, a JUnit test suite per cluster;
# 6. examples/in-cluster (`pullwarden run` as a Deployment): every manifest
#    parses and has the kinds it promises; the Deployment runs the
#    ServiceAccount the bindings name, mounts the ConfigMap where its workspace
#    argument points, provides every `fromEnv` variable (env or envFrom) and
#    serves the probes on the port of --metrics-addr; every flag in its args is
#    one `pullwarden run --help` lists (a listed value where there are choices),
#    and the args, run here with the ConfigMap's workspace and no cluster, get
#    past argument parsing to the cluster connection; the ConfigMap's workspace
#    passes `pullwarden validate`; the ClusterRole and the Lease Role grant
#    every request `run` makes (the list below, evaluated as RBAC evaluates
#    rules) and nothing more (no wildcard, no verb or resource outside it).
#    That the grants are enough on a real API server is
#    `cluster_run_in_cluster_example_rbac_is_enough` (tests/run_cluster.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

ACTIONLINT_VERSION="${PULLWARDEN_ACTIONLINT_VERSION:-v1.7.12}"
PYYAML_VERSION="6.0.3"
CACHE_ROOT="${PULLWARDEN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pullwarden}"
TOOLS="$CACHE_ROOT/tools"

log() { echo "lint-ci: $*" >&2; }

# --- actionlint, from the Go module proxy, cached by version
actionlint="$TOOLS/actionlint-$ACTIONLINT_VERSION/actionlint"
if [[ ! -x "$actionlint" ]]; then
  log "building actionlint $ACTIONLINT_VERSION from the Go module proxy (about a minute)"
  mkdir -p "$(dirname "$actionlint")"
  GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS=-mod=mod \
    GOBIN="$(dirname "$actionlint")" go install "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION"
fi
if command -v shellcheck >/dev/null 2>&1; then
  log "actionlint $ACTIONLINT_VERSION (+ $(shellcheck --version | sed -n 's/^version: /shellcheck /p'))"
else
  log "actionlint $ACTIONLINT_VERSION (shellcheck not on PATH: run: scripts are not shellchecked)"
fi
"$actionlint" -no-color examples/ci/github/pullwarden.yml
log "actionlint: examples/ci/github/pullwarden.yml ok"

# --- PyYAML: the system's, else a venv in the cache
python=python3
if ! python3 -c 'import yaml' 2>/dev/null; then
  venv="$TOOLS/pyyaml-$PYYAML_VERSION"
  if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import yaml' 2>/dev/null; then
    log "installing PyYAML $PYYAML_VERSION into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "pyyaml==$PYYAML_VERSION"
  fi
  python="$venv/bin/python"
fi

# --- the binary the commands are checked against and run with
if [[ -z "${PULLWARDEN_BIN:-}" ]]; then
  cargo build -q --bin pullwarden
  PULLWARDEN_BIN="${CARGO_TARGET_DIR:-$repo/target}/debug/pullwarden"
fi
[[ -x "$PULLWARDEN_BIN" ]] || { log "no pullwarden binary at $PULLWARDEN_BIN"; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/pullwarden-lint-ci.XXXXXX")"
trap 'rm -rf "$work"' EXIT

export PULLWARDEN_BIN REPO="$repo" WORK="$work"
"$python" - <<'PY'
import os, re, shlex, shutil, subprocess, sys
import yaml

repo, work, binary = os.environ["REPO"], os.environ["WORK"], os.environ["PULLWARDEN_BIN"]
github_path = os.path.join(repo, "examples/ci/github/pullwarden.yml")
gitlab_path = os.path.join(repo, "examples/ci/gitlab/.gitlab-ci.yml")
example = os.path.join(repo, "examples/openshift-image-pull-secrets")
live = os.path.join(repo, "examples/live/openshift-image-pull-secrets.yaml")
failures = []

def fail(msg):
    failures.append(msg)
    print(f"lint-ci: FAIL {msg}", file=sys.stderr)

def ok(msg):
    print(f"lint-ci: ok   {msg}", file=sys.stderr)

# ---- flags the binary has, from `pullwarden <sub> --help`
def help_text(*args):
    return subprocess.run([binary, *args, "--help"], capture_output=True, text=True, check=True).stdout

top = help_text()
subcommands = set(re.findall(r"^  ([a-z][a-z-]*)\s", top.split("Commands:")[1].split("Options:")[0], re.M))
flags, values = {}, {}
for sub in subcommands - {"help"}:
    text = help_text(sub)
    flags[sub] = set(re.findall(r"(--[a-z][a-z0-9-]*)", text)) | {"-q", "-v", "-h", "-V"}
    # one block per option (an option line and its wrapped description)
    for block in re.split(r"\n(?=\s{2,}-)", text):
        block = " ".join(block.split())
        m = re.match(r"(?:-\w, )?(--[a-z][a-z0-9-]*) <[A-Z_]+>.*\[possible values: ([^\]]+)\]", block)
        if m:
            values[(sub, m.group(1))] = {c.strip() for c in m.group(2).split(",")}
if values.get(("plan", "--format")) != {"text", "markdown", "json"}:
    raise SystemExit(f"lint-ci: cannot read the possible values of `plan --format` from --help: {values}")

def check_commands(where, script):
    """Every `pullwarden SUB ...` in a shell script uses flags SUB has."""
    joined = script.replace("\\\n", " ")
    found = 0
    for line in joined.splitlines():
        for m in re.finditer(r"(?:^|[;&|(]\s*|\s)pullwarden\s+([^;&|#]*)", line):
            try:
                words = shlex.split(m.group(1))
            except ValueError as e:
                fail(f"{where}: cannot split `{line.strip()}`: {e}")
                continue
            words = [w for w in words if not re.match(r"^\d?[<>]", w)]
            if not words:
                continue
            sub = words[0]
            if sub.startswith("-"):   # pullwarden --version
                if sub not in ("--version", "-V", "--help", "-h"):
                    fail(f"{where}: unknown global flag {sub}")
                continue
            found += 1
            if sub not in flags:
                fail(f"{where}: unknown subcommand `pullwarden {sub}`")
                continue
            for i, w in enumerate(words[1:], 1):
                if w.startswith("-"):
                    name = w.split("=", 1)[0]
                    if name not in flags[sub]:
                        fail(f"{where}: `pullwarden {sub}` has no flag {name}")
                    choice = w.split("=", 1)[1] if "=" in w else (words[i + 1] if i + 1 < len(words) else None)
                    allowed = values.get((sub, name))
                    if allowed and choice not in allowed:
                        fail(f"{where}: `pullwarden {sub} {name} {choice}`: not one of {sorted(allowed)}")
    return found

# ---- GitHub Actions workflow
gh = yaml.safe_load(open(github_path))
gh_on = gh.get("on", gh.get(True))  # PyYAML reads a bare `on` as True
if not {"pull_request", "push", "schedule"} <= set(gh_on):
    fail(f"workflow triggers {sorted(gh_on)}: want pull_request, push, schedule")
jobs = gh["jobs"]
if jobs.get("plan", {}).get("permissions", {}).get("pull-requests") != "write":
    fail("workflow: plan job lacks `pull-requests: write`")
if not jobs.get("apply", {}).get("concurrency", {}).get("group"):
    fail("workflow: apply job has no concurrency group")
n = 0
for name, job in jobs.items():
    for i, step in enumerate(job.get("steps", [])):
        if "run" in step:
            n += check_commands(f"github {name}/{step.get('name', i)}", step["run"])
ok(f"github workflow: jobs {sorted(jobs)}, {n} pullwarden commands use existing flags")

# ---- GitLab pipeline
gl = yaml.safe_load(open(gitlab_path))
reserved = {"variables", "stages", "default", "include", "workflow", "image", "services", "cache", "before_script", "after_script"}
gl_jobs = {k: v for k, v in gl.items() if k not in reserved and not k.startswith(".")}
def resolved(job):
    out = {}
    parents = job.get("extends", [])
    for p in [parents] if isinstance(parents, str) else parents:
        out.update(resolved(gl[p]))
    out.update(job)
    return out
n = 0
for name, job in gl_jobs.items():
    job = resolved(job)
    if job.get("stage") not in gl.get("stages", []):
        fail(f"gitlab {name}: stage {job.get('stage')!r} not in stages")
    if not job.get("script"):
        fail(f"gitlab {name}: no script")
    for key in ("before_script", "script"):
        lines = job.get(key, [])
        for line in [lines] if isinstance(lines, str) else lines:
            n += check_commands(f"gitlab {name}/{key}", line)
for want, check in [
    ("plan on merge requests", lambda j: "merge_request_event" in str(j.get("rules"))),
    ("apply with resource_group", lambda j: j.get("resource_group")),
    ("drift with artifacts:reports:junit", lambda j: j.get("artifacts", {}).get("reports", {}).get("junit")),
]:
    job = want.split()[0]
    if job not in gl_jobs or not check(resolved(gl_jobs[job])):
        fail(f"gitlab: want {want}")
ok(f"gitlab pipeline: jobs {sorted(gl_jobs)}, {n} pullwarden commands use existing flags")

# ---- run the steps, unchanged, with a shim that adds --live
shim_dir = os.path.join(work, "bin")
os.makedirs(shim_dir)
with open(os.path.join(shim_dir, "pullwarden"), "w") as f:
    f.write(f"""#!/usr/bin/env bash
case "$1" in
  plan|drift) exec {shlex.quote(binary)} "$@" --live "${{LINT_LIVE:-{live}}}" ;;
  *) exec {shlex.quote(binary)} "$@" ;;
esac
""")
os.chmod(os.path.join(shim_dir, "pullwarden"), 0o755)
broken = os.path.join(work, "broken")
shutil.copytree(example, broken)
with open(os.path.join(broken, "broken.yaml"), "w") as f:
    f.write("apiVersion: pullwarden.dev/v1alpha1\nkind: PullSecret\nmetadata: {name: oops}\nspec:\n  registries: [no-such-registry]\n  namespaces: [project-a]\n")

def run_script(what, script, workspace, extra_env=None):
    cwd = os.path.join(work, re.sub(r"\W+", "-", what))
    os.makedirs(cwd)
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
    env.update({
        "PATH": shim_dir + os.pathsep + env["PATH"],
        "WORKSPACE": workspace,
        "NO_COLOR": "1",
        "KUBECONFIG": "/nonexistent/kubeconfig",  # nothing may reach a cluster
    })
    env.update(extra_env or {})
    p = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                       cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return p, cwd

def gh_step(job, step_id=None, name=None):
    for step in jobs[job]["steps"]:
        if (step_id and step.get("id") == step_id) or (name and step.get("name") == name):
            return step["run"]
    raise SystemExit(f"lint-ci: workflow job {job} has no step {step_id or name}")

def gh_env(cwd_hint):
    d = os.path.join(work, "gh-" + cwd_hint)
    os.makedirs(d)
    out, summary = os.path.join(d, "output"), os.path.join(d, "summary.md")
    open(out, "w").close(); open(summary, "w").close()
    return {"GITHUB_ACTIONS": "true", "GITHUB_OUTPUT": out, "GITHUB_STEP_SUMMARY": summary}, out, summary

def expect(what, p, code):
    if p.returncode != code:
        fail(f"{what}: exited {p.returncode}, want {code}\n{p.stdout}\n{p.stderr}")
        return False
    ok(f"{what}: exited {code}")
    return True

# GitHub: validate and plan steps on the example, then on a broken copy.
for label, ws, want_validate, want_plan, want_code in [
    ("example", example, 0, 0, "2"),
    ("broken", broken, 1, 1, "1"),
]:
    env, out, summary = gh_env(label)
    p, _ = run_script(f"github validate {label}", gh_step("plan", "validate"), ws, env)
    expect(f"github plan/Validate step on the {label} workspace", p, want_validate)
    p, cwd = run_script(f"github plan {label}", gh_step("plan", "plan"), ws, env)
    expect(f"github plan/Plan step on the {label} workspace", p, want_plan)
    outputs = open(out).read()
    if f"exitcode={want_code}\n" not in outputs:
        fail(f"github plan/Plan step on the {label} workspace: GITHUB_OUTPUT {outputs!r}, want exitcode={want_code}")
    else:
        ok(f"github plan/Plan step on the {label} workspace: GITHUB_OUTPUT exitcode={want_code}")
    if label == "example":
        plan_md = open(os.path.join(cwd, "plan.md")).read()
        if "quay-pull" not in plan_md or "|" not in plan_md:
            fail(f"github plan.md is not the markdown plan:\n{plan_md}")
        elif plan_md not in open(summary).read():
            fail("github plan.md was not appended to the job summary")
        else:
            ok(f"github plan.md: markdown plan ({len(plan_md)} bytes), also in the job summary")

env, out, summary = gh_env("drift")
p, cwd = run_script("github drift", gh_step("drift", name="Drift"), example, env)
expect("github drift/Drift step (pending work against the snapshot)", p, 2)
junit = os.path.join(cwd, "drift.xml")
if not os.path.exists(junit) or "<failure" not in open(junit).read():
    fail("github drift step wrote no drift.xml with failures")
elif "::error" not in p.stdout + p.stderr and "::warning" not in p.stdout + p.stderr:
    fail(f"github drift step: no annotations under GITHUB_ACTIONS=true\n{p.stdout}")
else:
    ok("github drift/Drift step: drift.xml with failures, ::error/::warning annotations, job summary "
       + ("written" if open(summary).read() else "EMPTY"))

# GitLab: the plan and drift jobs' script lines as one shell, as the runner does.
def gl_script(name):
    lines = resolved(gl_jobs[name])["script"]
    return "\n".join([lines] if isinstance(lines, str) else lines)
for label, ws, want in [("example", example, 0), ("broken", broken, 1)]:
    p, cwd = run_script(f"gitlab plan {label}", gl_script("plan"), ws, {"PULLWARDEN_NOTE_TOKEN": ""})
    if expect(f"gitlab plan job on the {label} workspace", p, want) and label == "example":
        if "pullwarden plan exited 2" not in p.stdout:
            fail(f"gitlab plan job: want `pullwarden plan exited 2`\n{p.stdout}")
        elif "quay-pull" not in open(os.path.join(cwd, "plan.md")).read():
            fail("gitlab plan.md is not the plan")
        else:
            ok("gitlab plan job: plan exited 2, plan.md is the markdown plan (the artifact)")
p, _ = run_script("gitlab validate", gl_script("validate"), example)
expect("gitlab validate job on the example", p, 0)
p, cwd = run_script("gitlab drift", gl_script("drift"), example)
expect("gitlab drift job (pending work against the snapshot)", p, 2)
if not os.path.exists(os.path.join(cwd, "drift.xml")):
    fail("gitlab drift job wrote no drift.xml")

# A fleet: the same GitHub plan and drift steps on examples/fleet, against its
# per-cluster snapshots; one plan comment with a section per cluster.
fleet = os.path.join(repo, "examples/fleet")
fleet_env = {"LINT_LIVE": os.path.join(repo, "examples/live/fleet"),
             "QUAY_PROD_TOKEN": "lint-prod", "QUAY_PREPROD_TOKEN": "lint-preprod"}
env, out, summary = gh_env("fleet")
env.update(fleet_env)
p, cwd = run_script("github plan fleet", gh_step("plan", "plan"), fleet, env)
if expect("github plan/Plan step on the fleet example", p, 0):
    plan_md = open(os.path.join(cwd, "plan.md")).read()
    missing = [c for c in ("dev", "staging", "prod-eu") if f"#### cluster `{c}`" not in plan_md]
    if "exitcode=2\n" not in open(out).read():
        fail(f"github plan/Plan step on the fleet example: GITHUB_OUTPUT {open(out).read()!r}, want exitcode=2")
    elif missing or "| **total** |" not in plan_md:
        fail(f"github fleet plan.md: no section for {missing} or no total row:\n{plan_md}")
    else:
        ok(f"github plan/Plan step on the fleet example: one markdown plan, a section per cluster ({len(plan_md)} bytes)")
env, out, summary = gh_env("fleet-drift")
env.update(fleet_env)
p, cwd = run_script("github drift fleet", gh_step("drift", name="Drift"), fleet, env)
if expect("github drift/Drift step on the fleet example", p, 2):
    junit = open(os.path.join(cwd, "drift.xml")).read()
    missing = [c for c in ("dev", "staging", "prod-eu") if f'<testsuite name="cluster {c}"' not in junit]
    if missing:
        fail(f"github fleet drift.xml: no test suite for {missing}")
    elif "(cluster prod-eu)" not in p.stdout:
        fail(f"github fleet drift: annotations do not name the cluster\n{p.stdout}")
    else:
        ok("github drift/Drift step on the fleet example: a JUnit test suite and annotations per cluster")

# ---- examples/in-cluster: `pullwarden run` as a Deployment
incluster = os.path.join(repo, "examples/in-cluster")
docs = []
for name in sorted(os.listdir(incluster)):
    if name.endswith(".yaml"):
        try:
            for doc in yaml.safe_load_all(open(os.path.join(incluster, name))):
                if doc is not None:
                    docs.append((name, doc))
        except yaml.YAMLError as e:
            fail(f"in-cluster {name}: not YAML: {e}")
by_kind = {}
for name, doc in docs:
    if not (isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind") and (doc.get("metadata") or {}).get("name")):
        fail(f"in-cluster {name}: a document without apiVersion, kind and metadata.name: {doc!r:.80}")
        continue
    by_kind.setdefault(doc["kind"], []).append(doc)
want_kinds = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
              "ConfigMap", "Deployment", "PodDisruptionBudget"]
missing = [k for k in want_kinds if len(by_kind.get(k, [])) != 1]
if missing:
    fail(f"in-cluster: want exactly one of each of {missing}, have {sorted((k, len(v)) for k, v in by_kind.items())}")
else:
    ok(f"in-cluster: {len(docs)} manifests parse: {', '.join(want_kinds)}")
    deploy, cm, sa = by_kind["Deployment"][0], by_kind["ConfigMap"][0], by_kind["ServiceAccount"][0]
    ns = deploy["metadata"].get("namespace")
    pod = deploy["spec"]["template"]["spec"]
    containers = pod.get("containers", [])
    if len(containers) != 1:
        fail(f"in-cluster Deployment: want one container, have {len(containers)}")
    container = containers[0] if containers else {}
    args = [str(a) for a in container.get("command", [])[1:] + container.get("args", [])]
    if pod.get("serviceAccountName") != sa["metadata"]["name"] or sa["metadata"].get("namespace") != ns:
        fail(f"in-cluster Deployment: runs as {pod.get('serviceAccountName')!r}, the manifests create {ns}/{sa['metadata']['name']}")
    # the flags, against `pullwarden run --help`
    opts, lease_ns = {}, None
    if not args or args[0] != "run":
        fail(f"in-cluster Deployment: args {args} do not start with `run`")
    else:
        i, positional = 1, []
        while i < len(args):
            a = args[i]
            if a.startswith("-"):
                name, _, value = a.partition("=")
                if name not in flags["run"]:
                    fail(f"in-cluster Deployment: `pullwarden run` has no flag {name}")
                takes_value = re.search(rf"{re.escape(name)} <", help_text("run")) is not None
                if takes_value and not _:
                    value = args[i + 1] if i + 1 < len(args) else ""
                    i += 1
                allowed = values.get(("run", name))
                if allowed and value not in allowed:
                    fail(f"in-cluster Deployment: `{name} {value}`: not one of {sorted(allowed)}")
                opts[name] = value
            else:
                positional.append(a)
            i += 1
        ok(f"in-cluster Deployment: args {args[1:]}: every flag is in `pullwarden run --help`")
        # the workspace argument is a key of the mounted ConfigMap
        path = positional[0] if positional else "."
        mounts = {m["name"]: m["mountPath"].rstrip("/") for m in container.get("volumeMounts", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        mounted = [(mounts[n], v) for n, v in volumes.items() if n in mounts and v.get("configMap", {}).get("name") == cm["metadata"]["name"]]
        if cm["metadata"].get("namespace") != ns or len(mounted) != 1:
            fail(f"in-cluster Deployment: the ConfigMap {cm['metadata']['name']} is not mounted once in its namespace")
        else:
            where, _ = mounted[0]
            key = os.path.relpath(path, where)
            if key not in cm.get("data", {}):
                fail(f"in-cluster Deployment: workspace argument {path} is not a key of the ConfigMap mounted at {where} (keys {sorted(cm.get('data', {}))})")
            else:
                ok(f"in-cluster Deployment: workspace {path} is the ConfigMap's key {key}")
        # probes on the port --metrics-addr serves
        port = opts.get("--metrics-addr", "127.0.0.1:9464").rpartition(":")[2]
        if opts.get("--metrics-addr", "127.0.0.1:9464").startswith("127."):
            fail("in-cluster Deployment: --metrics-addr is loopback: the kubelet's probes cannot reach it")
        ports = {str(p.get("name")): str(p["containerPort"]) for p in container.get("ports", [])}
        for probe, want_path in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")]:
            get = container.get(probe, {}).get("httpGet", {})
            got = ports.get(str(get.get("port")), str(get.get("port")))
            if get.get("path") != want_path or got != port:
                fail(f"in-cluster Deployment: {probe} is {get}, want {want_path} on port {port}")
        # leader election in the Deployment's namespace (POD_NAMESPACE)
        env_names = {e["name"] for e in container.get("env", [])}
        if "--leader-elect" not in opts:
            fail("in-cluster Deployment: two replicas without --leader-elect")
        lease_ns = opts.get("--lease-namespace") or (ns if "POD_NAMESPACE" in env_names else "default")
    # the ConfigMap's workspace: valid, and its environment provided
    ws_dir = os.path.join(work, "in-cluster-workspace")
    os.makedirs(ws_dir)
    for key, text in cm.get("data", {}).items():
        open(os.path.join(ws_dir, key), "w").write(text)
    p = subprocess.run([binary, "validate", ws_dir], capture_output=True, text=True)
    if p.returncode != 0:
        fail(f"in-cluster ConfigMap: `pullwarden validate` exited {p.returncode}\n{p.stdout}{p.stderr}")
    else:
        ok(f"in-cluster ConfigMap: {(p.stdout + p.stderr).strip().splitlines()[-1]}")
    wanted_env = set()
    for text in cm.get("data", {}).values():
        for doc in yaml.safe_load_all(text):
            for found in re.findall(r"'fromEnv': '([A-Za-z_][A-Za-z0-9_]*)'", repr(doc)):
                wanted_env.add(found)
    has_env_from = any("secretRef" in e or "configMapRef" in e for e in container.get("envFrom", []))
    unprovided = sorted(v for v in wanted_env if v not in env_names and not has_env_from)
    if unprovided:
        fail(f"in-cluster Deployment: the workspace reads {unprovided} from the environment; the container sets none of them")
    else:
        ok(f"in-cluster Deployment: the workspace's variables {sorted(wanted_env)} come from env/envFrom")
    # the args, run: past parsing to the cluster connection (there is none)
    if args and args[0] == "run":
        run_args = [os.path.join(ws_dir, os.path.basename(a)) if not a.startswith("-") and a.startswith("/") else a for a in args]
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env.update({"KUBECONFIG": "/nonexistent/kubeconfig", "HOME": work, "NO_COLOR": "1", "POD_NAMESPACE": ns or "default"})
        env.update({v: "lint-ci-placeholder" for v in wanted_env})
        p = subprocess.run([binary, *run_args], capture_output=True, text=True, env=env, timeout=60)
        if p.returncode != 1 or "cannot load the cluster configuration" not in p.stderr:
            fail(f"in-cluster Deployment: `pullwarden {' '.join(run_args)}` exited {p.returncode} before reaching the cluster\n{p.stderr}")
        else:
            ok("in-cluster Deployment: its args parse; run stops only at the (absent) cluster")
    # RBAC: every request `run` makes, granted; nothing beyond them.
    # (verb, apiGroup, resource, resourceName or None); from pullwarden-kube's
    # reads and apply, pullwarden-controller's watches, Events and Lease.
    needs = [(v, "", "namespaces", None) for v in ("list", "watch")]
    needs += [(v, "", "secrets", None) for v in ("get", "list", "watch", "create", "update", "delete")]
    needs += [(v, "", "serviceaccounts", None) for v in ("get", "list", "watch", "create", "update")]
    needs += [(v, "rbac.authorization.k8s.io", "rolebindings", None) for v in ("get", "list", "watch", "create", "update", "delete")]
    needs += [("create", "", "events", None)]
    needs += [("bind", "rbac.authorization.k8s.io", "clusterroles", r) for r in ("system:image-puller", "system:image-pusher", "system:image-builder")]
    lease_needs = [(v, "coordination.k8s.io", "leases", None) for v in ("get", "create", "update")]
    def allows(rules, verb, group, resource, name):
        for r in rules or []:
            if (group in r.get("apiGroups", []) or "*" in r.get("apiGroups", [])) \
               and (resource in r.get("resources", []) or "*" in r.get("resources", [])) \
               and (verb in r.get("verbs", []) or "*" in r.get("verbs", [])) \
               and (not r.get("resourceNames") or name in r["resourceNames"]):
                return True
        return False
    def beyond(rules, needed):
        extra = []
        for r in rules or []:
            for g in r.get("apiGroups", []):
                for res in r.get("resources", []):
                    for v in r.get("verbs", []):
                        for n in r.get("resourceNames") or [None]:
                            if not any((v, g, res) == (nv, ng, nr) and (nn is None or nn == n) for nv, ng, nr, nn in needed):
                                extra.append(f"{v} {g or 'core'}/{res}" + (f" {n}" if n else ""))
        return extra
    def bound(role_kind, role, binding_kind, namespace):
        return any(b["roleRef"]["kind"] == role_kind and b["roleRef"]["name"] == role["metadata"]["name"]
                   and b["metadata"].get("namespace") == namespace
                   and any(s.get("kind") == "ServiceAccount" and s.get("name") == sa["metadata"]["name"]
                           and s.get("namespace") == ns for s in b.get("subjects", []))
                   for b in by_kind[binding_kind])
    cluster_role, lease_role = by_kind["ClusterRole"][0], by_kind["Role"][0]
    if not bound("ClusterRole", cluster_role, "ClusterRoleBinding", None):
        fail(f"in-cluster RBAC: no ClusterRoleBinding of {cluster_role['metadata']['name']} to the ServiceAccount")
    if not bound("Role", lease_role, "RoleBinding", lease_role["metadata"].get("namespace")):
        fail(f"in-cluster RBAC: no RoleBinding of {lease_role['metadata']['name']} to the ServiceAccount")
    if lease_role["metadata"].get("namespace") != lease_ns:
        fail(f"in-cluster RBAC: the Lease Role is in {lease_role['metadata'].get('namespace')}, the Lease in {lease_ns}")
    for rules, needed, what in [(cluster_role.get("rules"), needs, "ClusterRole"), (lease_role.get("rules"), lease_needs, "Lease Role")]:
        lacking = [f"{v} {g or 'core'}/{r}" + (f" {n}" if n else "") for v, g, r, n in needed if not allows(rules, v, g, r, n)]
        if lacking:
            fail(f"in-cluster RBAC: the {what} does not grant {lacking}")
        extra = beyond(rules, needed)
        if extra:
            fail(f"in-cluster RBAC: the {what} grants more than run needs: {extra}")
        if not lacking and not extra:
            ok(f"in-cluster RBAC: the {what} grants exactly the {len(needed)} requests run makes")

if failures:
    print(f"lint-ci: {len(failures)} problem(s)", file=sys.stderr)
    sys.exit(1)
print("lint-ci: the CI and in-cluster examples are consistent with pullwarden and behave as documented", file=sys.stderr)
PY

//! The planner, case by case: a workspace and a kubectl-style snapshot of the
//! cluster go in, a plan comes out, as the `plan` command chains them
//! (load → resolve → read live → desired → plan → render).
//!
//! Fixtures live in `tests/fixtures/plan/<case>/`:
//! - `workspace/`: the workspace (credentials in `workspace/creds/`, all fake);
//! - `live.yaml`: the cluster, as `kubectl get ns,secrets,serviceaccounts,rolebindings -A -o yaml` writes it;
//! - `options` (optional): `adopt`;
//! - `expect.txt`: the counts that matter (`create=1 ... errors=0 warnings=1`);
//! - `about.txt`: what the case covers (the snapshot's description).
//!
//! Each case's text plan is snapshot-tested (`tests/snapshots/plan@<case>.snap`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pullwarden_core::dockerconfig::{self, ConfigFormat, Entry};
use pullwarden_core::live::LiveState;
use pullwarden_core::model::ResolvedRegistry;
use pullwarden_core::plan::{self, Action, Detail, Plan, PlanOptions};
use pullwarden_core::render::{self, Style};
use pullwarden_core::secret::DigestKey;
use pullwarden_spec::credentials::{self, ProcessEnvironment};

const FIXTURES: &str = "tests/fixtures/plan";

/// Every fake credential of the fixtures contains this marker.
const FAKE_MARKER: &str = "FAKE";

fn case_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn case_name(dir: &Path) -> String {
    dir.file_name()
        .expect("case folder name")
        .to_string_lossy()
        .into_owned()
}

/// One case planned and rendered.
struct Planned {
    plan: Plan,
    live: LiveState,
    registries: BTreeMap<String, ResolvedRegistry>,
    text: String,
    markdown: String,
    json: String,
}

fn options(dir: &Path) -> Result<PlanOptions, String> {
    let mut options = PlanOptions::default();
    let Ok(text) = std::fs::read_to_string(dir.join("options")) else {
        return Ok(options);
    };
    for word in text.split_whitespace() {
        match word {
            "adopt" => options.adopt = true,
            other => return Err(format!("unknown option `{other}` in `options`")),
        }
    }
    Ok(options)
}

/// Runs the whole chain for one case, like `pullwarden plan --live live.yaml`.
fn plan_case(dir: &Path) -> Result<Planned, String> {
    let env = ProcessEnvironment;
    let loaded = pullwarden_spec::load(&dir.join("workspace"), &env);
    let errors: Vec<String> = loaded
        .problems
        .iter()
        .filter(|p| p.is_error())
        .map(|p| format!("{}: {}", p.code, p.message))
        .collect();
    if !errors.is_empty() {
        return Err(format!("workspace errors: {errors:?}"));
    }
    let ws = loaded.workspace.ok_or("no workspace")?;
    let (registries, problems) = credentials::resolve(&ws, &env);
    if !problems.is_empty() {
        let problems: Vec<String> = problems
            .iter()
            .map(|p| format!("{}: {}", p.code, p.message))
            .collect();
        return Err(format!("credential problems: {problems:?}"));
    }
    let live = pullwarden_kube::read_live_files(&dir.join("live.yaml"))
        .map_err(|e| format!("live.yaml: {e}"))?;
    let desired = plan::desired(&ws, &registries, &live);
    let plan = plan::plan(
        &ws,
        &desired,
        &live,
        options(dir)?,
        &DigestKey::from_bytes([7; 32]),
    );
    Ok(Planned {
        text: render::text(&plan, Style { color: false }),
        markdown: render::markdown(&plan),
        json: render::json(&plan),
        plan,
        live,
        registries,
    })
}

fn expected_counts(dir: &Path) -> Result<BTreeMap<String, usize>, String> {
    let text = std::fs::read_to_string(dir.join("expect.txt")).map_err(|e| e.to_string())?;
    text.split_whitespace()
        .map(|pair| {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not key=value"))?;
            let value = value
                .parse()
                .map_err(|_| format!("`{pair}`: not a count"))?;
            Ok((key.to_string(), value))
        })
        .collect()
}

fn actual_counts(plan: &Plan) -> BTreeMap<String, usize> {
    let s = plan.summary();
    [
        ("create", s.create),
        ("update", s.update),
        ("replace", s.replace),
        ("delete", s.delete),
        ("adopt", s.adopt),
        ("link", s.link),
        ("unlink", s.unlink),
        ("errors", plan.errors.len()),
        ("warnings", plan.warnings.len()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(B64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The forms a leaked value could take: itself, its base64 at all three
/// alignments (only the characters that depend on the value alone), and
/// base64 of its base64.
fn canary_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    for encoded in [
        base64(value.as_bytes()),
        base64(base64(value.as_bytes()).as_bytes()),
    ] {
        forms.push(encoded.trim_end_matches('=').to_string());
    }
    for shift in 0..3 {
        let mut bytes = vec![0u8; shift];
        bytes.extend_from_slice(value.as_bytes());
        let encoded = base64(&bytes);
        // The first group mixes in the prefix, the last one what follows.
        let start = if shift == 0 { 0 } else { 4 };
        let end = encoded.len().saturating_sub(4).max(start);
        if end - start >= 8 {
            forms.push(encoded[start..end].to_string());
        }
    }
    forms
}

fn entry_canaries(entry: &Entry, username_sensitive: bool, out: &mut Vec<String>) {
    out.extend(canary_forms(entry.password.expose()));
    out.push(entry.auth().expose().to_string());
    if username_sensitive {
        out.extend(canary_forms(entry.username.expose()));
    }
}

/// Every credential a case holds: resolved from the workspace, and read from
/// the live Secrets (old passwords, other workspaces', OpenShift's tokens).
fn canaries(planned: &Planned) -> Vec<String> {
    let mut out = Vec::new();
    for registry in planned.registries.values() {
        for entry in &registry.entries {
            entry_canaries(entry, !registry.usernames_public, &mut out);
        }
    }
    for secret in &planned.live.secrets {
        for (key, data) in &secret.data {
            let format = if key == ".dockercfg" {
                ConfigFormat::Dockercfg
            } else {
                ConfigFormat::ConfigJson
            };
            out.extend(canary_forms(data.expose()));
            if let Ok(entries) = dockerconfig::parse(data.expose(), format) {
                for entry in &entries {
                    entry_canaries(entry, false, &mut out);
                }
            }
        }
    }
    out.retain(|c| c.len() >= 6);
    out.sort();
    out.dedup();
    out
}

/// Checks one fixture: expected counts, errors said, determinism, no
/// credential in any format; then snapshots the text, markdown and JSON plans.
fn check_case(name: &str) {
    let dir = Path::new(FIXTURES).join(name);
    let mut failures = Vec::new();
    let planned = match plan_case(&dir) {
        Ok(planned) => planned,
        Err(e) => panic!("{name}: {e}"),
    };
    match expected_counts(&dir) {
        Ok(expected) => {
            let actual = actual_counts(&planned.plan);
            let wrong: Vec<String> = expected
                .iter()
                .filter(|(k, v)| actual.get(*k) != Some(v))
                .map(|(k, v)| format!("{k}: expected {v}, got {:?}", actual.get(k)))
                .collect();
            if expected.is_empty() || !wrong.is_empty() {
                failures.push(format!("{name}: {}\n{}", wrong.join(", "), planned.text));
            }
        }
        Err(e) => failures.push(format!("{name}: expect.txt: {e}")),
    }
    // A plan with errors never claims the cluster is in sync.
    if !planned.plan.errors.is_empty()
        && (planned.text.contains("matches the workspace")
            || planned.markdown.contains("matches the workspace")
            || !planned.text.contains("apply would refuse it")
            || !planned.markdown.contains("apply would refuse it"))
    {
        failures.push(format!(
            "{name}: a plan with errors must say it cannot be applied\n{}\n{}",
            planned.text, planned.markdown
        ));
    }
    // Deterministic: the whole chain again gives byte-identical output.
    match plan_case(&dir) {
        Ok(again) => {
            if again.text != planned.text
                || again.json != planned.json
                || again.markdown != planned.markdown
            {
                failures.push(format!("{name}: planning twice gave different output"));
            }
        }
        Err(e) => failures.push(format!("{name}: second run: {e}")),
    }
    // No credential in any output.
    for (format, output) in [
        ("text", &planned.text),
        ("markdown", &planned.markdown),
        ("json", &planned.json),
    ] {
        if output.contains(FAKE_MARKER) {
            failures.push(format!(
                "{name}: the {format} plan contains `{FAKE_MARKER}`"
            ));
        }
        for canary in canaries(&planned) {
            if output.contains(&canary) {
                failures.push(format!(
                    "{name}: the {format} plan contains a credential (a form of length {})",
                    canary.len()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    let about = std::fs::read_to_string(dir.join("about.txt")).unwrap_or_default();
    // What `drift` would report for the same plan, in every format it has.
    let report = pullwarden_core::drift::classify(&planned.plan, &planned.live);
    let drift = format!(
        "--- text\n{}--- markdown\n{}--- junit\n{}--- github annotations\n{}--- json\n{}\n",
        pullwarden_core::drift::text(&report),
        pullwarden_core::drift::markdown(&report),
        pullwarden_core::drift::junit(&report),
        pullwarden_core::drift::github_annotations(&report),
        serde_json::to_string_pretty(&report).expect("a report serializes"),
    );
    for (snapshot, text) in [
        ("plan", &planned.text),
        ("plan-markdown", &planned.markdown),
        ("plan-json", &planned.json),
        ("drift", &drift),
    ] {
        insta::with_settings!({
            snapshot_suffix => name,
            prepend_module_to_snapshot => false,
            description => about.trim(),
            omit_expression => true,
        }, {
            insta::assert_snapshot!(snapshot, text);
        });
    }
}

/// One named test per fixture, so a case runs (and fails) by its name:
/// `cargo test --test plan -- fixture::update_password`.
macro_rules! fixtures {
    ($($test:ident => $dir:literal,)*) => {
        mod fixture {
            $(
                #[test]
                fn $test() {
                    super::check_case($dir);
                }
            )*
        }

        const LISTED: &[&str] = &[$($dir),*];
    };
}

fixtures! {
    adopt_unlabelled_rolebinding => "adopt-unlabelled-rolebinding",
    adopt_unlabelled_secret => "adopt-unlabelled-secret",
    all_service_accounts_glob => "all-service-accounts-glob",
    conflict_openshift_secret_adopt => "conflict-openshift-secret-adopt",
    conflict_other_workspace_adopt => "conflict-other-workspace-adopt",
    conflict_unlabelled_rolebinding => "conflict-unlabelled-rolebinding",
    conflict_unlabelled_secret => "conflict-unlabelled-secret",
    create_fresh => "create-fresh",
    glob_matches_nothing => "glob-matches-nothing",
    globs_scope_exclude => "globs-scope-exclude",
    grant_subject_already_granted => "grant-subject-already-granted",
    if_missing_create => "if-missing-create",
    if_missing_error => "if-missing-error",
    if_missing_mixed => "if-missing-mixed",
    if_missing_skip => "if-missing-skip",
    immutable_unchanged => "immutable-unchanged",
    link_preexisting_unrecorded => "link-preexisting-unrecorded",
    link_several_secrets => "link-several-secrets",
    missing_namespace => "missing-namespace",
    namespace_left_scope => "namespace-left-scope",
    no_change => "no-change",
    openshift_foreign_entries => "openshift-foreign-entries",
    openshift_image_pullers_satisfied => "openshift-image-pullers-satisfied",
    prune_keeps_created_sa => "prune-keeps-created-sa",
    prune_managed_only => "prune-managed-only",
    prune_off => "prune-off",
    reformatted_json_no_change => "reformatted-json-no-change",
    replace_grant_role => "replace-grant-role",
    replace_immutable_data => "replace-immutable-data",
    replace_leftover_prune_off => "replace-leftover-prune-off",
    replace_type_dockercfg_to_json => "replace-type-dockercfg-to-json",
    replace_type_json_to_dockercfg => "replace-type-json-to-dockercfg",
    selector_exact_target_opted_out => "selector-exact-target-opted-out",
    selector_grants => "selector-grants",
    selector_relabel => "selector-relabel",
    unlink_recorded_only => "unlink-recorded-only",
    update_email => "update-email",
    update_grant_subjects => "update-grant-subjects",
    update_password => "update-password",
    update_registry_added => "update-registry-added",
    update_registry_removed => "update-registry-removed",
}

/// Every fixture folder has its named test above (a new folder must be listed).
#[test]
fn every_plan_fixture_plans_as_expected() {
    let dirs = case_dirs();
    assert!(dirs.len() >= 30, "only {} plan fixtures", dirs.len());
    let names: Vec<String> = dirs.iter().map(|d| case_name(d)).collect();
    assert_eq!(names, LISTED, "list every fixture folder in `fixtures!`");
}

/// The canary scan itself finds what it looks for.
#[test]
fn canary_forms_find_base64_at_every_alignment() {
    let secret = "FAKE-canary-value-42";
    for prefix in ["", "x", "xy"] {
        let encoded = base64(format!("{prefix}{secret}").as_bytes());
        assert!(
            canary_forms(secret).iter().any(|c| encoded.contains(c)),
            "alignment {}",
            prefix.len()
        );
    }
    assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    assert_eq!(base64(b"ab"), "YWI=");
}

fn planned(case: &str) -> Planned {
    plan_case(&Path::new(FIXTURES).join(case)).unwrap_or_else(|e| panic!("{case}: {e}"))
}

/// A role change creates the new binding first and names the old one, with
/// what apply may assume of it; the old binding is not also pruned.
#[test]
fn a_role_change_replaces_the_binding_and_names_the_old_one() {
    let planned = planned("replace-grant-role");
    let [change] = planned.plan.changes.as_slice() else {
        panic!("one change expected: {:#?}", planned.plan.changes);
    };
    assert_eq!(change.action, Action::Replace);
    assert_eq!(
        change.name,
        "pullwarden:acme:a-pulls-from-b:system:image-pusher"
    );
    let Detail::RoleBinding(diff) = &change.detail else {
        panic!("a RoleBinding change expected");
    };
    let old = diff.replaces.as_ref().expect("replaces");
    assert_eq!(
        old.name,
        "pullwarden:acme:a-pulls-from-b:system:image-puller"
    );
    assert_eq!(old.role, "system:image-puller");
    let live = &planned.live.role_bindings[0].meta;
    assert_eq!(old.assumed.uid, live.uid);
    assert_eq!(old.assumed.resource_version, live.resource_version);
}

/// Conflicts record the object in the way, so apply can check it did not move.
#[test]
fn conflicts_record_the_object_in_the_way() {
    for case in [
        "conflict-unlabelled-secret",
        "conflict-unlabelled-rolebinding",
        "conflict-other-workspace-adopt",
        "conflict-openshift-secret-adopt",
    ] {
        let planned = planned(case);
        assert!(!planned.plan.errors.is_empty(), "{case}");
        for error in &planned.plan.errors {
            assert_eq!(error.code.as_str(), "pullwarden::plan::conflict", "{case}");
            let assumed = error.assumed.as_ref().expect("assumed");
            assert!(!assumed.uid.is_empty() && !assumed.resource_version.is_empty());
        }
    }
}

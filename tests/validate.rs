//! `pullwarden validate`: every invalid fixture reports exactly its one problem
//! at the right place; every example is valid; the CLI keeps its contract.
//!
//! Fixtures live in `tests/fixtures/invalid/<case>/`: the workspace files and
//! `expect.txt` (`<code> <file>:<line>:<column>`, or `-` for no location).

use std::path::{Path, PathBuf};
use std::process::Command;

use miette::{GraphicalReportHandler, GraphicalTheme};
use pullwarden_spec::credentials::ProcessEnvironment;

const FIXTURES: &str = "tests/fixtures/invalid";

fn fixture_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .expect("fixture folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn render(report: &miette::Report) -> String {
    let mut out = String::new();
    GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
        .with_width(100)
        .render_report(&mut out, report.as_ref())
        .expect("render");
    out
}

#[test]
fn every_invalid_fixture_reports_its_one_problem_where_it_is() {
    let dirs = fixture_dirs();
    assert!(dirs.len() >= 40, "only {} fixtures", dirs.len());
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let expect = std::fs::read_to_string(dir.join("expect.txt")).expect("expect.txt");
        let (code, location) = expect.trim().split_once(' ').expect("`<code> <location>`");
        let loaded = pullwarden_spec::load(dir, &ProcessEnvironment);
        let errors: Vec<_> = loaded.problems.iter().filter(|p| p.is_error()).collect();
        let got: Vec<String> = errors
            .iter()
            .map(|p| {
                let data = p.to_data(&loaded.sources);
                let location = match (&data.file, data.line, data.column) {
                    (Some(file), Some(line), Some(column)) => {
                        let file = Path::new(file)
                            .strip_prefix(dir)
                            .map_or(file.clone(), |p| p.display().to_string());
                        format!("{file}:{line}:{column}")
                    }
                    _ => "-".to_string(),
                };
                format!("{} {location}", data.code)
            })
            .collect();
        if got != [format!("{code} {location}")] {
            failures.push(format!("{name}: expected [{code} {location}], got {got:?}"));
            continue;
        }
        let rendered: String = loaded
            .problems
            .iter()
            .map(|p| render(&p.to_report(&loaded.sources)))
            .collect();
        insta::with_settings!({snapshot_suffix => name.clone(), prepend_module_to_snapshot => false}, {
            insta::assert_snapshot!("invalid", rendered);
        });
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_example_is_valid() {
    let mut count = 0;
    for entry in std::fs::read_dir("examples").expect("examples/") {
        let dir = entry.expect("entry").path();
        if !dir.is_dir() || !dir.join("workspace.yaml").exists() {
            continue;
        }
        let loaded = pullwarden_spec::load(&dir, &ProcessEnvironment);
        let errors: Vec<String> = loaded
            .problems
            .iter()
            .filter(|p| p.is_error())
            .map(|p| render(&p.to_report(&loaded.sources)))
            .collect();
        assert!(
            errors.is_empty(),
            "{}:\n{}",
            dir.display(),
            errors.join("\n")
        );
        assert!(loaded.workspace.is_some());
        count += 1;
    }
    assert!(
        count >= 2,
        "expected at least the two documented examples, found {count}"
    );
}

#[test]
fn the_committed_schema_is_the_generated_one() {
    let committed = std::fs::read_to_string("schemas/pullwarden.v1alpha1.schema.json")
        .expect("committed schema");
    let output = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .arg("schema")
        .output()
        .expect("run pullwarden schema");
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        committed,
        "schema drifted: run `cargo run -- schema > schemas/pullwarden.v1alpha1.schema.json`"
    );
}

#[test]
fn examples_carry_the_schema_modeline() {
    for entry in walk("examples") {
        if entry.extension().is_some_and(|e| e == "yaml") {
            let text = std::fs::read_to_string(&entry).unwrap();
            // Workspace files: a top-level pullwarden document (not one embedded in a ConfigMap).
            if text
                .lines()
                .any(|l| l.starts_with("apiVersion: pullwarden.dev/"))
            {
                let first = text.lines().next().unwrap_or("");
                assert!(
                    first.starts_with("# yaml-language-server: $schema=")
                        && first.ends_with("schemas/pullwarden.v1alpha1.schema.json"),
                    "{} lacks the schema modeline",
                    entry.display()
                );
                let target = first.split("$schema=").nth(1).unwrap();
                assert!(
                    entry.parent().unwrap().join(target).exists(),
                    "{}: modeline points at a missing file",
                    entry.display()
                );
            }
        }
    }
}

fn walk(dir: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::from(dir)];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

fn pullwarden(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("run pullwarden")
}

#[test]
fn three_mistakes_in_two_files_are_all_reported() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: demo\nspec:\n  namespaces:\n    include: [\"team-*\"]\n---\napiVersion: pullwarden.dev/v1alpha1\nkind: Registry\nmetadata:\n  name: quay\nspec:\n  server: quay.io\n  username: robot\n  password: hunter2-canary\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("b.yaml"),
        "apiVersion: pullwarden.dev/v1alpha1\nkind: PullSecret\nmetadata:\n  name: pull\nspec:\n  registries: [quya]\n  namespace: [\"team-a\"]\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let out = pullwarden(&["validate", path]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    for expected in [
        "a.yaml:16:13]",
        "b.yaml:7:3]",
        "b.yaml:6:16]",
        "pullwarden::spec::literal_password",
        "pullwarden::spec::unknown_field",
        "pullwarden::spec::unknown_registry",
        "is invalid: 3 errors",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("hunter2-canary"),
        "a literal password was echoed"
    );

    let json = pullwarden(&["validate", path, "--format", "json"]);
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["valid"], false);
    let problems = report["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 3);
    let places: Vec<(String, u64, u64)> = problems
        .iter()
        .map(|p| {
            let file = p["file"].as_str().unwrap();
            let name = Path::new(file)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string();
            (
                name,
                p["line"].as_u64().unwrap(),
                p["column"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        places,
        [
            ("a.yaml".into(), 16, 13),
            ("b.yaml".into(), 7, 3),
            ("b.yaml".into(), 6, 16)
        ]
    );
    assert!(!String::from_utf8_lossy(&json.stdout).contains("hunter2-canary"));
}

#[test]
fn validate_exit_codes_and_missing_paths() {
    let ok = pullwarden(&["validate", "examples/openshift-image-pull-secrets"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ok = pullwarden(&["validate", "examples/multi-team"]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let missing = pullwarden(&["validate", "does/not/exist"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such file or directory"));
}

#[test]
fn validate_resolve_reports_missing_credentials_by_name_only() {
    let out = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args(["validate", "--resolve", "examples/multi-team"])
        .env("NO_COLOR", "1")
        .env_remove("QUAY_TOKEN")
        .env_remove("GHCR_TOKEN")
        .env("GHCR_USER", "")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("`QUAY_TOKEN`, which is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("`GHCR_USER`, which is empty"), "{stderr}");
    assert!(stderr.contains("artifactory-config.json"), "{stderr}");

    let resolved = Command::new(env!("CARGO_BIN_EXE_pullwarden"))
        .args([
            "validate",
            "--resolve",
            "examples/openshift-image-pull-secrets",
        ])
        .output()
        .unwrap();
    assert_eq!(
        resolved.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&resolved.stderr)
    );
}

#[test]
fn validate_lists_the_clusters_of_a_fleet_and_warns_about_empty_limits() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("workspace.yaml"),
        "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata:\n  name: fleet\nspec:\n  clusters:\n    - name: prod-eu\n      labels: {env: prod}\n    - name: prod-us\n      context: admin@prod-us\n    - name: dev\n---\napiVersion: pullwarden.dev/v1alpha1\nkind: Registry\nmetadata: {name: quay}\nspec: {server: quay.io, username: robot, password: {fromEnv: QUAY_TOKEN}}\n---\napiVersion: pullwarden.dev/v1alpha1\nkind: PullSecret\nmetadata: {name: pull}\nspec:\n  registries: [quay]\n  namespaces: [team-a]\n  clusters: [{matchLabels: {env: staging}}]\n",
    )
    .unwrap();
    let path = dir.path().to_str().unwrap();
    let out = pullwarden(&["validate", path]);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "1 pull secret, 0 pull grants in 1 file; 3 clusters: prod-eu, prod-us, dev (1 warning)"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("pullwarden::spec::no_cluster_chosen"),
        "{stderr}"
    );
    assert!(stderr.contains("workspace.yaml:24:14]"), "{stderr}");

    // A single-cluster workspace's summary names no cluster.
    let one = pullwarden(&["validate", "examples/multi-team"]);
    let stderr = String::from_utf8(one.stderr).unwrap();
    assert!(stderr.contains(" is valid: "), "{stderr}");
    assert!(!stderr.contains("cluster"), "{stderr}");
}

//! Fuzzes the workspace loader: any UTF-8 text as a single workspace file,
//! with an environment where every variable is set and every credential file
//! exists (so credential-file parsing runs too). Loading, rendering every
//! problem (as data and as a miette report) and resolving credentials must
//! never panic.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pullwarden_spec::credentials::{self, Environment};

/// A fake docker `config.json`, returned for every file read.
const DOCKER_CONFIG: &str = r#"{
  "auths": {
    "registry.example.com:5000": {
      "auth": "dXNlcjpwYXNzd29yZA==",
      "email": "fuzz@example.com"
    },
    "quay.io": {"username": "robot", "password": "secret"}
  }
}"#;

struct FakeEnvironment;

impl Environment for FakeEnvironment {
    fn var(&self, _name: &str) -> Option<String> {
        Some("x".to_owned())
    }
    fn read(&self, _path: &Path) -> Result<String, pullwarden_input::InputError> {
        Ok(DOCKER_CONFIG.to_owned())
    }
    fn exists(&self, _path: &Path) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = FakeEnvironment;
    let loaded = pullwarden_spec::load_str(Path::new("fuzz/workspace.yaml"), text, &env);

    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    for problem in &loaded.problems {
        let data = problem.to_data(&loaded.sources);
        let _ = serde_json::to_string(&data);
        let report = problem.to_report(&loaded.sources);
        let mut out = String::new();
        let _ = handler.render_report(&mut out, report.as_ref());
    }

    if let Some(ws) = &loaded.workspace {
        for cluster in &ws.clusters {
            let _ = ws.for_cluster(cluster);
        }
        let (_resolved, problems) = credentials::resolve(ws, &env);
        for problem in &problems {
            let _ = problem.to_data(&loaded.sources);
            let report = problem.to_report(&loaded.sources);
            let mut out = String::new();
            let _ = handler.render_report(&mut out, report.as_ref());
        }
    }
});

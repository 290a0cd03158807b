//! The pure core stays pure: no I/O crate among its dependencies, and no
//! filesystem, environment, process, network, clock or randomness in its code.

#[test]
fn pullwarden_core_does_no_io() {
    let manifest = std::fs::read_to_string("crates/pullwarden-core/Cargo.toml").unwrap();
    let dependencies = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    for forbidden in [
        "tokio",
        "kube",
        "k8s-openapi",
        "walkdir",
        "rand",
        "reqwest",
        "hyper",
    ] {
        assert!(
            !dependencies
                .lines()
                .any(|l| l.trim_start().starts_with(forbidden)),
            "pullwarden-core depends on {forbidden}"
        );
    }
    let mut checked = 0;
    // every .rs file under src/, subfolders included
    let mut pending = vec![std::path::PathBuf::from("crates/pullwarden-core/src")];
    let mut files = Vec::new();
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    assert!(
        files.iter().any(|p| p.components().count() > 4),
        "no file in a subfolder of src/ was found"
    );
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        for forbidden in [
            "std::fs",
            "std::env",
            "std::process",
            "std::net",
            "SystemTime",
            "Instant::now",
            "thread_rng",
        ] {
            assert!(
                !text.contains(forbidden),
                "{} uses {forbidden}",
                path.display()
            );
        }
        checked += 1;
    }
    assert!(checked >= 10, "only {checked} files checked");
}

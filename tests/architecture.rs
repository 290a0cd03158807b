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
    for entry in std::fs::read_dir("crates/pullwarden-core/src").unwrap() {
        let path = entry.unwrap().path();
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

use super::*;

const SMALL: Limit = Limit {
    bytes: 16,
    what: "test files",
};

fn fifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(status.success());
}

#[test]
fn reads_a_regular_file_and_one_behind_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a.txt");
    std::fs::write(&file, "hello").unwrap();
    std::os::unix::fs::symlink(&file, dir.path().join("link")).unwrap();
    assert_eq!(read_to_string(&file, SMALL).unwrap(), "hello");
    assert_eq!(
        read_to_string(&dir.path().join("link"), SMALL).unwrap(),
        "hello"
    );
}

#[test]
fn a_file_over_the_limit_is_refused_with_the_limit_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big");
    std::fs::write(&file, [b'x'; 17]).unwrap();
    let error = read(&file, SMALL).unwrap_err();
    assert_eq!(error.kind(), &InputErrorKind::TooLarge { limit: SMALL });
    assert_eq!(error.path(), file);
    assert_eq!(
        error.to_string(),
        "it is larger than 16 bytes, the limit for test files"
    );
    std::fs::write(&file, [b'x'; 16]).unwrap();
    assert_eq!(read(&file, SMALL).unwrap().len(), 16);
}

#[test]
fn devices_are_refused_before_reading() {
    for device in ["/dev/zero", "/dev/urandom", "/dev/null"] {
        let error = read(Path::new(device), Limit::CREDENTIAL_FILE).unwrap_err();
        assert_eq!(
            error.kind(),
            &InputErrorKind::NotRegularFile {
                is: "a character device"
            },
            "{device}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("config.json");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let error = read(&link, Limit::CREDENTIAL_FILE).unwrap_err();
    assert_eq!(
        error.to_string(),
        "it is a character device, not a regular file"
    );
}

#[test]
fn a_fifo_is_refused_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pipe.yaml");
    fifo(&path);
    // Opening a FIFO without a writer blocks forever: the check must come first.
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(read(&probe, SMALL));
    });
    let result = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("read returns instead of blocking on the FIFO");
    assert_eq!(
        result.unwrap_err().to_string(),
        "it is a FIFO (named pipe), not a regular file"
    );
}

#[test]
fn a_directory_a_missing_file_and_a_looping_symlink_are_named() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(
        read(dir.path(), SMALL).unwrap_err().to_string(),
        "it is a directory, not a regular file"
    );
    assert_eq!(
        read(&dir.path().join("nope"), SMALL).unwrap_err().kind(),
        &InputErrorKind::NotFound
    );
    let a = dir.path().join("a");
    std::os::unix::fs::symlink(dir.path().join("b"), &a).unwrap();
    std::os::unix::fs::symlink(&a, dir.path().join("b")).unwrap();
    assert_eq!(
        read(&a, SMALL).unwrap_err().kind(),
        &InputErrorKind::SymlinkLoop
    );
}

#[test]
fn text_must_be_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bin");
    std::fs::write(&file, [0xff, 0xfe]).unwrap();
    assert_eq!(
        read_to_string(&file, SMALL).unwrap_err().kind(),
        &InputErrorKind::NotUtf8
    );
}

fn yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

#[test]
fn find_files_follows_symlinked_folders_and_skips_hidden_ones() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    let shared = dir.path().join("shared");
    std::fs::create_dir_all(root.join(".git")).unwrap();
    std::fs::create_dir_all(&shared).unwrap();
    std::fs::write(root.join("a.yaml"), "").unwrap();
    std::fs::write(root.join(".git/x.yaml"), "").unwrap();
    std::fs::write(root.join("notes.txt"), "").unwrap();
    std::fs::write(shared.join("b.yml"), "").unwrap();
    std::os::unix::fs::symlink(&shared, root.join("team")).unwrap();
    let files = find_files(&root, &yaml).unwrap();
    assert_eq!(files, [root.join("a.yaml"), root.join("team/b.yml")]);
}

#[test]
fn find_files_reads_a_mounted_config_map() {
    // What the kubelet writes for a ConfigMap volume.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = root.join("..2026_11_29_10_00_00.123456789");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(data.join("workspace.yaml"), "").unwrap();
    std::os::unix::fs::symlink("..2026_11_29_10_00_00.123456789", root.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/workspace.yaml", root.join("workspace.yaml")).unwrap();
    assert_eq!(
        find_files(root, &yaml).unwrap(),
        [root.join("workspace.yaml")]
    );
}

#[test]
fn find_files_reports_what_it_cannot_read() {
    // A broken symlink named like a wanted file.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("gone.yaml", dir.path().join("team.yaml")).unwrap();
    let error = find_files(dir.path(), &yaml).unwrap_err();
    assert_eq!(error.path(), dir.path().join("team.yaml"));
    assert_eq!(error.kind(), &InputErrorKind::NotFound);

    // A broken symlink without an extension could have been a folder.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("gone", dir.path().join("team")).unwrap();
    assert!(find_files(dir.path(), &yaml).is_err());

    // ... but one named like another kind of file, or hidden, is not ours.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("gone", dir.path().join("notes.txt")).unwrap();
    std::os::unix::fs::symlink("gone", dir.path().join(".cache")).unwrap();
    assert_eq!(
        find_files(dir.path(), &yaml).unwrap(),
        Vec::<PathBuf>::new()
    );

    // A looping symlink named like a wanted file.
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink("loop.yaml", dir.path().join("loop.yaml")).unwrap();
    let error = find_files(dir.path(), &yaml).unwrap_err();
    assert_eq!(error.kind(), &InputErrorKind::SymlinkLoop);

    // A folder that contains itself through a symlink.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::os::unix::fs::symlink("..", dir.path().join("sub/up")).unwrap();
    let error = find_files(dir.path(), &yaml).unwrap_err();
    assert_eq!(error.kind(), &InputErrorKind::SymlinkLoop);
    assert_eq!(error.path(), dir.path().join("sub/up"));

    // A FIFO named like a wanted file is listed, and reading it says what it is.
    let dir = tempfile::tempdir().unwrap();
    fifo(&dir.path().join("pipe.yaml"));
    let files = find_files(dir.path(), &yaml).unwrap();
    assert_eq!(files, [dir.path().join("pipe.yaml")]);
    assert!(matches!(
        read(&files[0], SMALL).unwrap_err().kind(),
        InputErrorKind::NotRegularFile { .. }
    ));
}

#[test]
fn resolves_inside_follows_symlinks_and_dot_dots() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ws");
    std::fs::create_dir_all(root.join("creds")).unwrap();
    std::fs::write(root.join("creds/pw"), "x").unwrap();
    std::fs::write(dir.path().join("outside"), "x").unwrap();
    std::os::unix::fs::symlink("/etc/hostname", root.join("creds/escape")).unwrap();
    assert!(resolves_inside(&root, &root.join("creds/pw")));
    assert!(resolves_inside(&root, &root.join("creds/../creds/pw")));
    assert!(resolves_inside(&root, &root.join("creds/absent-yet")));
    assert!(!resolves_inside(&root, &root.join("../outside")));
    assert!(!resolves_inside(&root, &root.join("creds/../../outside")));
    assert!(!resolves_inside(&root, &root.join("creds/escape")));
    assert!(!resolves_inside(&root, Path::new("/etc/passwd")));
    assert!(!resolves_inside(&root, &root.join("absent/../../x")));
}

#[test]
fn messages_for_yaml_limits_are_for_people() {
    assert_eq!(
        YamlLimits::SNAPSHOT.exceeded(YamlLimit::Nodes),
        "it holds more than 100,000,000 YAML nodes (mappings, lists and values), the limit for a snapshot document"
    );
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1000), "1,000");
    assert_eq!(human_size(Limit::SNAPSHOT_FILE.bytes), "1 GiB");
    assert_eq!(human_size(Limit::WORKSPACE_FILE.bytes), "16 MiB");
}

#[test]
fn shown_values_are_capped_and_have_no_control_characters() {
    assert_eq!(shown("team-a", 200), "team-a");
    assert_eq!(shown("a\u{1b}[31mred\0\nx", 200), "a?[31mred??x");
    assert_eq!(shown("\u{202e}evil", 200), "?evil");
    let long = "n".repeat(20_000_000);
    let short = shown(&long, 200);
    assert_eq!(short.chars().count(), 201);
    assert!(short.ends_with('…'));
}

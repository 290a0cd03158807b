//! No server outlives its owner, even one killed with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pullwarden_testenv::{BIN_DIR_ENV, STATE_ROOT_ENV, controlplane_bin_dir, process_is_running};

/// PIDs of live processes whose command line mentions `dir`.
fn processes_mentioning(dir: &Path) -> Vec<i32> {
    let needle = dir.display().to_string();
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&needle))
                && process_is_running(*pid)
        })
        .collect()
}

#[test]
fn cluster_servers_die_when_their_owner_is_killed() {
    let bin_dir = controlplane_bin_dir().expect("control-plane binaries");
    // under the run's state root, so that `scripts/test.sh` checks it too
    let root = std::env::var_os(STATE_ROOT_ENV).map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&root).expect("state root");
    let state = tempfile::tempdir_in(&root).expect("tempdir");
    let dir = state.path().join("plane");
    let mut owner = Command::new(env!("CARGO_BIN_EXE_pullwarden-testenv"))
        .args(["serve", "--dir"])
        .arg(&dir)
        .env(BIN_DIR_ENV, &bin_dir)
        .env("PULLWARDEN_TESTENV_STDIN_OWNER", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the owner");
    let deadline = Instant::now() + Duration::from_secs(180);
    while !dir.join("ready").exists() {
        assert!(
            owner.try_wait().expect("wait").is_none(),
            "owner exited early; see {}",
            dir.display()
        );
        assert!(
            Instant::now() < deadline,
            "control plane not ready; see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let server_pids: Vec<i32> = ["etcd", "kube-apiserver"]
        .iter()
        .map(|n| {
            std::fs::read_to_string(dir.join(format!("{n}.pid")))
                .expect("pid file")
                .trim()
                .parse()
                .expect("pid")
        })
        .collect();
    assert!(server_pids.iter().all(|p| process_is_running(*p)));
    assert!(
        processes_mentioning(&dir).len() >= 4,
        "servers and supervisors"
    );

    let owner_pid = i32::try_from(owner.id()).expect("pid");
    kill(Pid::from_raw(owner_pid), Signal::SIGKILL).expect("SIGKILL the owner");
    owner.wait().expect("reap the owner");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !processes_mentioning(&dir).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        processes_mentioning(&dir),
        Vec::<i32>::new(),
        "outlived their killed owner"
    );
    assert!(server_pids.iter().all(|p| !process_is_running(*p)));
}

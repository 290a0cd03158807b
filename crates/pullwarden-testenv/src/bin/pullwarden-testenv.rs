//! `pullwarden-testenv up|down|serve [--dir DIR]`: a control plane for manual
//! work and demos (`just cluster-up` / `just cluster-down`).
//! `pullwarden-testenv proxy --dir DIR --delay-ms MS`: an HTTPS proxy in front
//! of that control plane holding every answer MS milliseconds (an emulated
//! remote cluster, for `scripts/bench.sh`).
//!
//! `up` builds the binaries if missing, starts `serve` detached, waits until it
//! is ready and prints `export KUBECONFIG=...` on stdout. `serve` owns the
//! servers until SIGTERM/SIGINT. `down` stops `serve` by its PID, and the
//! servers by theirs should anything be left.
//!
//! `proxy` runs in the foreground until SIGTERM/SIGINT. It serves the API
//! server's certificate (the test CA's, for 127.0.0.1) and writes its URL to
//! `DIR/proxy-url` when it listens. Client certificates cannot pass it (it
//! terminates TLS): clients must use a bearer token.
//!
//! `PULLWARDEN_TESTENV_AUDIT=writes|all` (read by `serve`, passed on by `up`):
//! an audit log `DIR/audit.log` of every write, or of every write and read.

use std::io::Write as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use pullwarden_testenv::{
    ADMIN_CONTEXT, BIN_DIR_ENV, ControlPlane, FaultProxy, Options, Schedule, USER_CONTEXT,
    controlplane_bin_dir, process_is_running,
};

const STDIN_OWNER_ENV: &str = "PULLWARDEN_TESTENV_STDIN_OWNER";
const AUDIT_ENV: &str = "PULLWARDEN_TESTENV_AUDIT";
const USAGE: &str =
    "usage: pullwarden-testenv up|down|serve [--dir DIR] | proxy --dir DIR --delay-ms MS";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pullwarden-testenv: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [command, flag, dir, delay_flag, delay] = args.as_slice()
        && command == "proxy"
        && flag == "--dir"
        && delay_flag == "--delay-ms"
    {
        let delay: u64 = delay
            .parse()
            .with_context(|| format!("--delay-ms {delay:?}: expected milliseconds"))?;
        return proxy(Path::new(dir), Duration::from_millis(delay));
    }
    let (command, dir) = match args.as_slice() {
        [command] => (command.as_str(), PathBuf::from(".pullwarden-cluster")),
        [command, flag, dir] if flag == "--dir" => (command.as_str(), PathBuf::from(dir)),
        _ => bail!("{USAGE}"),
    };
    match command {
        "up" => up(&dir),
        "down" => down(&dir),
        "serve" => serve(&dir),
        _ => bail!("{USAGE}"),
    }
}

fn read_pid(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn up(dir: &Path) -> Result<()> {
    if let Some(pid) = read_pid(&dir.join("serve.pid")).filter(|p| process_is_running(*p)) {
        bail!(
            "a control plane is already running (pid {pid}); `just cluster-down` stops it\nexport KUBECONFIG={}",
            dir.join("kubeconfig").display()
        );
    }
    let bin_dir = controlplane_bin_dir()?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    let dir = dir.canonicalize()?;
    let log = std::fs::File::create(dir.join("serve.log"))?;
    let mut serve = Command::new(std::env::current_exe()?)
        .args(["serve", "--dir"])
        .arg(&dir)
        .env(BIN_DIR_ENV, &bin_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        // its own process group: Ctrl-C in this terminal does not reach it
        .process_group(0)
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while !dir.join("ready").exists() {
        if let Some(status) = serve.try_wait()? {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            bail!("the control plane did not start ({status}):\n{log}");
        }
        if Instant::now() > deadline {
            bail!(
                "the control plane is not ready after 300 s; see {}",
                dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let kubeconfig = dir.join("kubeconfig");
    let mut err = std::io::stderr();
    writeln!(
        err,
        "control plane up (pid {}); contexts: {ADMIN_CONTEXT} (system:masters), {USER_CONTEXT} (unprivileged); logs in {}",
        serve.id(),
        dir.display()
    )?;
    writeln!(
        std::io::stdout(),
        "export KUBECONFIG={}",
        kubeconfig.display()
    )?;
    Ok(())
}

fn serve(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("serve.pid"), std::process::id().to_string())?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async {
        let bin_dir = controlplane_bin_dir()?;
        // PULLWARDEN_TESTENV_AUDIT=writes|all: an audit log (dir/audit.log) of
        // every write, or of every write and read (benchmarks count requests by user).
        let options = match std::env::var(AUDIT_ENV).ok().as_deref() {
            None | Some("" | "off") => Options::default(),
            Some("writes") => Options {
                audit: true,
                ..Options::default()
            },
            Some("all") => Options {
                audit: true,
                audit_reads: true,
            },
            Some(other) => bail!("{AUDIT_ENV}={other:?}: expected writes, all or off"),
        };
        let mut plane = ControlPlane::start_with(&bin_dir, dir, options).await?;
        std::fs::write(dir.join("ready"), plane.base_url.as_bytes())?;
        writeln!(std::io::stderr(), "ready at {}", plane.base_url)?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        // With PULLWARDEN_TESTENV_STDIN_OWNER set, the process that started us
        // owns us through our stdin: EOF means it is gone, so we stop too.
        let owner_gone = async {
            if std::env::var_os(STDIN_OWNER_ENV).is_some() {
                let _ = tokio::task::spawn_blocking(|| {
                    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
                })
                .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
            () = owner_gone => {}
        }
        plane.stop();
        let _ = std::fs::remove_file(dir.join("ready"));
        let _ = std::fs::remove_file(dir.join("serve.pid"));
        anyhow::Ok(())
    })
}

fn proxy(dir: &Path, delay: Duration) -> Result<()> {
    let base_url = std::fs::read_to_string(dir.join("ready")).with_context(|| {
        format!(
            "no control plane ready in {} (`pullwarden-testenv up --dir` it first)",
            dir.display()
        )
    })?;
    let pki = dir.join("pki");
    let read = |name: &str| {
        std::fs::read_to_string(pki.join(name))
            .with_context(|| format!("reading {}", pki.join(name).display()))
    };
    let proxy = FaultProxy::start(
        base_url.trim(),
        &read("ca.crt")?,
        &read("serving.crt")?,
        &read("serving.key")?,
    )?;
    proxy.set_schedule(Schedule::fixed_delay(delay));
    std::fs::write(dir.join("proxy-url"), proxy.url())?;
    writeln!(
        std::io::stderr(),
        "proxy at {} in front of {}, every answer held {delay:?}",
        proxy.url(),
        base_url.trim()
    )?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        anyhow::Ok(())
    })?;
    writeln!(
        std::io::stderr(),
        "proxy stopped after {} requests",
        proxy.requests()
    )?;
    let _ = std::fs::remove_file(dir.join("proxy-url"));
    Ok(())
}

fn down(dir: &Path) -> Result<()> {
    let mut pids = Vec::new();
    if let Some(pid) = read_pid(&dir.join("serve.pid")).filter(|p| process_is_running(*p)) {
        kill(Pid::from_raw(pid), Signal::SIGTERM)?;
        pids.push(pid);
    }
    wait_gone(&pids, Duration::from_secs(30));
    // should the owner have been killed without its supervisors noticing yet
    for name in ["kube-apiserver", "etcd"] {
        if let Some(pid) =
            read_pid(&dir.join(format!("{name}.pid"))).filter(|p| process_is_running(*p))
        {
            kill(Pid::from_raw(pid), Signal::SIGKILL)?;
            pids.push(pid);
        }
    }
    wait_gone(&pids, Duration::from_secs(10));
    let left: Vec<i32> = pids
        .into_iter()
        .filter(|p| process_is_running(*p))
        .collect();
    if !left.is_empty() {
        bail!("processes still running: {left:?}");
    }
    writeln!(std::io::stderr(), "control plane stopped")?;
    Ok(())
}

fn wait_gone(pids: &[i32], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|p| process_is_running(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
}

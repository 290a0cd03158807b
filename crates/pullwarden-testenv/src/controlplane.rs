//! Starting etcd and kube-apiserver, and making sure they never outlive their owner.
//!
//! Every server runs under a tiny `sh` supervisor whose stdin is a pipe held by
//! the owning process. When the owner exits for any reason (normal exit, panic,
//! SIGKILL) the kernel closes the pipe, the supervisor reads EOF and stops its
//! server by PID: SIGTERM, then SIGKILL after 10 s. [`ControlPlane::stop`] does
//! the same on purpose and waits for it.

use std::fmt::Write as _;
use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::pki::Pki;
use crate::{ADMIN_CONTEXT, UNPRIVILEGED_USER, USER_CONTEXT};

/// How long start-up may take before it is an error (2 shared cores are slow).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(180);

/// The supervisor: `sh -c SUPERVISOR sh <pidfile> <logfile> <cleanup-dir|-> <cmd> <args>...`.
const SUPERVISOR: &str = r#"
pidfile=$1; log=$2; cleanup=$3; shift 3
"$@" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
# Block until the owner closes our stdin: it stopped us, exited or was killed.
while read -r _; do :; done
kill -TERM "$pid" 2>/dev/null
n=0
while [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
  n=$((n + 1))
  if [ "$n" -eq 100 ]; then kill -KILL "$pid" 2>/dev/null; fi
  sleep 0.1
done
wait "$pid" 2>/dev/null
if [ "$cleanup" != "-" ]; then rm -rf "$cleanup"; fi
"#;

/// A supervised server process.
struct Supervised {
    name: &'static str,
    supervisor: Child,
    pid_file: PathBuf,
    log_file: PathBuf,
    /// What started it, to start it again ([`ControlPlane::restart`]).
    program: PathBuf,
    args: Vec<String>,
    cleanup: Option<PathBuf>,
}

impl Supervised {
    fn spawn(
        name: &'static str,
        state_dir: &Path,
        cleanup: Option<&Path>,
        program: &Path,
        args: &[String],
    ) -> Result<Supervised> {
        let pid_file = state_dir.join(format!("{name}.pid"));
        let log_file = state_dir.join(format!("{name}.log"));
        // A restart reuses the file: until the new supervisor records its
        // server, a stale PID (of the killed server) would read as "exited
        // during start-up" (seen on a loaded machine).
        let _ = fs::remove_file(&pid_file);
        let cleanup_arg = cleanup.map_or_else(|| "-".to_owned(), |p| p.display().to_string());
        let supervisor = Command::new("sh")
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sh")
            .arg(&pid_file)
            .arg(&log_file)
            .arg(cleanup_arg)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("spawning the supervisor of {name}"))?;
        Ok(Supervised {
            name,
            supervisor,
            pid_file,
            log_file,
            program: program.to_owned(),
            args: args.to_vec(),
            cleanup: cleanup.map(Path::to_owned),
        })
    }

    /// The server's PID, once its supervisor has recorded it.
    fn pid(&self) -> Option<i32> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    /// Whether the server is still running (a zombie counts as exited).
    fn is_running(&self) -> bool {
        self.pid().is_none_or(process_is_running)
    }

    fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Closes the supervisor's stdin and waits for it to stop the server.
    fn stop(&mut self) {
        drop(self.supervisor.stdin.take());
        let _ = self.supervisor.wait();
    }
}

/// Whether `pid` names a live, non-zombie process.
pub fn process_is_running(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// How a control plane is started. The default is what every shared test
/// environment runs with.
#[derive(Clone, Copy, Debug, Default)]
pub struct Options {
    /// Record every write in an audit log (`state_dir/audit.log`, policy
    /// [`crate::audit::AUDIT_POLICY`]), read back with [`ControlPlane::audit_log`].
    pub audit: bool,
    /// With `audit`: record reads too (get, list, watch), with
    /// [`crate::audit::AUDIT_POLICY_WITH_READS`].
    pub audit_reads: bool,
}

/// One of the two server processes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Etcd,
    KubeApiserver,
}

impl Server {
    fn name(self) -> &'static str {
        match self {
            Server::Etcd => "etcd",
            Server::KubeApiserver => "kube-apiserver",
        }
    }
}

/// A running etcd + kube-apiserver pair and the files describing it.
pub struct ControlPlane {
    pub state_dir: PathBuf,
    pub kubeconfig: PathBuf,
    pub base_url: String,
    servers: Vec<Supervised>,
    /// Supervisors of servers killed by [`ControlPlane::kill`]: kept (their
    /// stdin open) until the plane stops, since closing it would make them
    /// remove etcd's data directory, which the restarted etcd uses.
    retired: Vec<Supervised>,
    audit_log: Option<PathBuf>,
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver from `bin_dir` with state in `state_dir`,
    /// writes `state_dir/kubeconfig` and waits for `/readyz`.
    pub async fn start(bin_dir: &Path, state_dir: &Path) -> Result<ControlPlane> {
        Self::start_with(bin_dir, state_dir, Options::default()).await
    }

    /// [`ControlPlane::start`] with options.
    pub async fn start_with(
        bin_dir: &Path,
        state_dir: &Path,
        options: Options,
    ) -> Result<ControlPlane> {
        fs::create_dir_all(state_dir)?;
        let state_dir = state_dir.canonicalize()?;
        let pki = Pki::generate(
            &state_dir.join("pki"),
            "pullwarden-admin",
            UNPRIVILEGED_USER,
        )?;
        let etcd_client = free_port()?;
        let etcd_peer = free_port()?;
        let secure_port = free_port()?;
        let base_url = format!("https://127.0.0.1:{secure_port}");

        let etcd_data = state_dir.join("etcd-data");
        let etcd_args = vec![
            "--name=pullwarden".to_owned(),
            format!("--data-dir={}", etcd_data.display()),
            format!("--listen-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--advertise-client-urls=http://127.0.0.1:{etcd_client}"),
            format!("--listen-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}"),
            format!("--initial-cluster=pullwarden=http://127.0.0.1:{etcd_peer}"),
            "--unsafe-no-fsync=true".to_owned(),
            "--log-level=warn".to_owned(),
        ];
        let mut plane = ControlPlane {
            kubeconfig: state_dir.join("kubeconfig"),
            state_dir: state_dir.clone(),
            base_url: base_url.clone(),
            servers: Vec::new(),
            retired: Vec::new(),
            audit_log: None,
        };
        plane.servers.push(Supervised::spawn(
            "etcd",
            &state_dir,
            Some(&etcd_data),
            &bin_dir.join("etcd"),
            &etcd_args,
        )?);

        let file = |p: &Path| p.display().to_string();
        let mut apiserver_args = vec![
            format!("--etcd-servers=http://127.0.0.1:{etcd_client}"),
            format!("--secure-port={secure_port}"),
            "--bind-address=127.0.0.1".to_owned(),
            "--advertise-address=127.0.0.1".to_owned(),
            format!("--cert-dir={}", state_dir.join("apiserver-certs").display()),
            format!("--tls-cert-file={}", file(&pki.serving_cert_file)),
            format!("--tls-private-key-file={}", file(&pki.serving_key_file)),
            format!("--client-ca-file={}", file(&pki.ca_file)),
            "--authorization-mode=RBAC".to_owned(),
            "--service-cluster-ip-range=10.0.0.0/24".to_owned(),
            "--disable-admission-plugins=ServiceAccount".to_owned(),
            format!("--service-account-issuer={base_url}"),
            format!("--service-account-key-file={}", file(&pki.sa_pub_file)),
            format!(
                "--service-account-signing-key-file={}",
                file(&pki.sa_key_file)
            ),
            "--endpoint-reconciler-type=none".to_owned(),
            "--allow-privileged=true".to_owned(),
        ];
        if options.audit {
            let policy = state_dir.join("audit-policy.yaml");
            fs::write(
                &policy,
                if options.audit_reads {
                    crate::audit::AUDIT_POLICY_WITH_READS
                } else {
                    crate::audit::AUDIT_POLICY
                },
            )?;
            let log = state_dir.join("audit.log");
            apiserver_args.extend([
                format!("--audit-policy-file={}", file(&policy)),
                format!("--audit-log-path={}", file(&log)),
                "--audit-log-format=json".to_owned(),
                "--audit-log-mode=blocking".to_owned(),
                "--audit-log-maxsize=0".to_owned(),
            ]);
            plane.audit_log = Some(log);
        }
        plane.servers.push(Supervised::spawn(
            "kube-apiserver",
            &state_dir,
            None,
            &bin_dir.join("kube-apiserver"),
            &apiserver_args,
        )?);

        fs::write(&plane.kubeconfig, kubeconfig_yaml(&base_url, &pki))?;
        fs::write(state_dir.join("owner.pid"), std::process::id().to_string())?;
        plane.wait_ready().await?;
        Ok(plane)
    }

    async fn wait_ready(&self) -> Result<()> {
        let client = crate::client_for(&self.kubeconfig, ADMIN_CONTEXT).await?;
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let mut last_error;
        loop {
            for server in &self.servers {
                if !server.is_running() {
                    bail!(
                        "{} exited during start-up; its log is {}:\n{}",
                        server.name,
                        server.log_file.display(),
                        server.log_tail()
                    );
                }
            }
            let request = http::Request::get("/readyz").body(Vec::new())?;
            match client.request_text(request).await {
                Ok(body) if body.trim() == "ok" => return Ok(()),
                Ok(body) => last_error = body,
                Err(e) => last_error = e.to_string(),
            }
            if Instant::now() > deadline {
                let mut logs = String::new();
                for server in &self.servers {
                    let _ = write!(logs, "\n  {}: {}", server.name, server.log_file.display());
                }
                bail!(
                    "kube-apiserver not ready after {} s (last answer: {last_error}); logs:{logs}",
                    STARTUP_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// PIDs of the servers, as their supervisors recorded them.
    pub fn pids(&self) -> Vec<i32> {
        self.servers.iter().filter_map(Supervised::pid).collect()
    }

    /// The audit log, when the plane was started with [`Options::audit`].
    pub fn audit_log(&self) -> Option<crate::audit::AuditLog> {
        self.audit_log.as_deref().map(crate::audit::AuditLog::new)
    }

    /// SIGKILLs `server` (no graceful shutdown: a crash) and waits until it
    /// has exited. etcd's data directory stays for [`ControlPlane::restart`].
    pub fn kill(&mut self, server: Server) -> Result<()> {
        let index = self
            .servers
            .iter()
            .position(|s| s.name == server.name())
            .with_context(|| format!("{} is not running", server.name()))?;
        let supervised = &self.servers[index];
        let pid = supervised.pid().context("no PID recorded")?;
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        )?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while process_is_running(pid) {
            if Instant::now() > deadline {
                bail!("{} (PID {pid}) still runs after SIGKILL", server.name());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let supervised = self.servers.remove(index);
        self.retired.push(supervised);
        Ok(())
    }

    /// Starts a server killed by [`ControlPlane::kill`] again, with the same
    /// arguments (same ports, same etcd data directory), under a new
    /// supervisor. Waits for `/readyz` only when both servers run.
    pub async fn restart(&mut self, server: Server) -> Result<()> {
        if self.servers.iter().any(|s| s.name == server.name()) {
            bail!("{} is running", server.name());
        }
        let old = self
            .retired
            .iter()
            .rev()
            .find(|s| s.name == server.name())
            .with_context(|| format!("{} was never killed", server.name()))?;
        let new = Supervised::spawn(
            old.name,
            &self.state_dir,
            old.cleanup.as_deref(),
            &old.program,
            &old.args,
        )?;
        // etcd first, kube-apiserver last: `stop` pops from the end.
        match server {
            Server::Etcd => self.servers.insert(0, new),
            Server::KubeApiserver => self.servers.push(new),
        }
        if self.servers.len() == 2 {
            self.wait_ready().await?;
        }
        Ok(())
    }

    /// Stops kube-apiserver, then etcd, and waits until both have exited.
    pub fn stop(&mut self) {
        while let Some(mut server) = self.servers.pop() {
            server.stop();
        }
        while let Some(mut server) = self.retired.pop() {
            server.stop();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn kubeconfig_yaml(base_url: &str, pki: &Pki) -> String {
    let b64 = |s: &str| STANDARD.encode(s);
    format!(
        "apiVersion: v1
kind: Config
clusters:
- name: pullwarden-testenv
  cluster:
    server: {base_url}
    certificate-authority-data: {ca}
users:
- name: {ADMIN_CONTEXT}
  user:
    client-certificate-data: {admin_cert}
    client-key-data: {admin_key}
- name: {UNPRIVILEGED_USER}
  user:
    client-certificate-data: {user_cert}
    client-key-data: {user_key}
contexts:
- name: {ADMIN_CONTEXT}
  context:
    cluster: pullwarden-testenv
    user: {ADMIN_CONTEXT}
- name: {USER_CONTEXT}
  context:
    cluster: pullwarden-testenv
    user: {UNPRIVILEGED_USER}
current-context: {ADMIN_CONTEXT}
",
        ca = b64(&pki.ca_pem),
        admin_cert = b64(&pki.admin.cert),
        admin_key = b64(&pki.admin.key),
        user_cert = b64(&pki.user.cert),
        user_key = b64(&pki.user.key),
    )
}

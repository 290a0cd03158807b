//! The registry process under the same kind of supervisor as the control
//! plane's servers (see `controlplane`): an `sh` whose stdin is a pipe held by
//! the test process; when that pipe closes (stop, exit, panic, SIGKILL) it
//! stops the server by PID, SIGTERM then SIGKILL after 10 s.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

const SUPERVISOR: &str = r#"
pidfile=$1; log=$2; shift 2
"$@" >>"$log" 2>&1 </dev/null &
pid=$!
echo "$pid" >"$pidfile"
while read -r _; do :; done
kill -TERM "$pid" 2>/dev/null
n=0
while [ -e "/proc/$pid" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" 2>/dev/null; do
  n=$((n + 1))
  if [ "$n" -eq 100 ]; then kill -KILL "$pid" 2>/dev/null; fi
  sleep 0.1
done
wait "$pid" 2>/dev/null
"#;

pub(crate) struct Supervised {
    supervisor: Child,
    pid_file: PathBuf,
    pub(crate) log_file: PathBuf,
}

impl Supervised {
    pub(crate) fn spawn(
        name: &str,
        state_dir: &Path,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
    ) -> Result<Supervised> {
        let pid_file = state_dir.join(format!("{name}.pid"));
        let log_file = state_dir.join(format!("{name}.log"));
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(SUPERVISOR)
            .arg("sh")
            .arg(&pid_file)
            .arg(&log_file)
            .arg(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // REGISTRY_* variables would override the generated configuration
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("REGISTRY_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        let supervisor = command
            .spawn()
            .with_context(|| format!("spawning the supervisor of {name}"))?;
        Ok(Supervised {
            supervisor,
            pid_file,
            log_file,
        })
    }

    pub(crate) fn pid(&self) -> Option<i32> {
        fs::read_to_string(&self.pid_file).ok()?.trim().parse().ok()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.pid().is_none_or(crate::process_is_running)
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = fs::read_to_string(&self.log_file).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    pub(crate) fn stop(&mut self) {
        drop(self.supervisor.stdin.take());
        let _ = self.supervisor.wait();
    }
}

impl Drop for Supervised {
    fn drop(&mut self) {
        self.stop();
    }
}

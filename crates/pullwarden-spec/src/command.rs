//! `fromCommand`: running a workspace's credential command, and reading what
//! it printed.
//!
//! The command is an argument list run without a shell, in the folder of the
//! workspace file that names it, with stdin closed and stderr discarded (it
//! may echo what it was given). It runs in a process group of its own, so the
//! timeout kills whatever it started too. Its output is a credential: no
//! message here quotes it, or any part of it.

use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pullwarden_core::model::CommandSource;
use pullwarden_core::secret::SecretString;

/// The most a credential command may print: a docker config or a JWT is far
/// smaller; more is a mistake (a command that prints its help, say).
pub const MAX_OUTPUT: usize = 64 * 1024;

/// Why a command gave no output to read. Never holds what it printed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(
        "running commands from the workspace is not allowed here; pass --allow-commands (or set PULLWARDEN_ALLOW_COMMANDS=true) for a trusted workspace"
    )]
    NotAllowed,
    #[error("cannot start `{program}`: {error}")]
    Spawn { program: String, error: String },
    #[error("`{program}` failed ({status}); its output is not shown")]
    Exit { program: String, status: String },
    #[error("`{program}` did not finish within {}s and was killed", timeout.as_secs_f64())]
    Timeout { program: String, timeout: Duration },
    #[error("`{program}` printed more than {} KiB and was stopped", MAX_OUTPUT / 1024)]
    TooLarge { program: String },
}

/// The program to start: a relative path with a `/` is taken from the
/// command's folder; a bare name is looked up in `PATH`.
fn program(command: &CommandSource) -> PathBuf {
    let first = PathBuf::from(&command.argv[0]);
    if command.argv[0].contains('/') && first.is_relative() {
        command.dir.join(first)
    } else {
        first
    }
}

/// Runs the command to completion and returns what it printed on stdout.
///
/// # Panics
/// Never: `argv` is never empty (the loader refuses an empty `command`).
pub fn run(command: &CommandSource) -> Result<Vec<u8>, CommandError> {
    use std::os::unix::process::CommandExt as _;

    let name = command.argv[0].clone();
    let mut child = Command::new(program(command))
        .args(&command.argv[1..])
        .current_dir(&command.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| CommandError::Spawn {
            program: name.clone(),
            error: e.to_string(),
        })?;
    let group = child.id();
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut out = Vec::new();
        let mut buffer = [0u8; 8192];
        let too_large = loop {
            match stdout.read(&mut buffer) {
                Ok(0) | Err(_) => break false,
                Ok(n) => {
                    if out.len() + n > MAX_OUTPUT {
                        break true;
                    }
                    out.extend_from_slice(&buffer[..n]);
                }
            }
        };
        let _ = tx.send((out, too_large));
    });
    let kill = || {
        // The whole group: a shell's children die with it.
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(i32::try_from(group).unwrap_or(i32::MAX)),
            nix::sys::signal::Signal::SIGKILL,
        );
    };
    let deadline = Instant::now() + command.timeout;
    let mut output: Option<(Vec<u8>, bool)> = None;
    let mut status: Option<ExitStatus> = None;
    loop {
        if output.is_none() {
            match rx.recv_timeout(Duration::from_millis(10)) {
                Ok(read) => output = Some(read),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => output = Some((Vec::new(), false)),
            }
        } else {
            std::thread::sleep(Duration::from_millis(10));
        }
        if status.is_none() {
            status = child.try_wait().ok().flatten();
            if status.is_some() {
                // Right after reaping it: what it left running in its group
                // goes too (it may hold stdout open).
                kill();
            }
        }
        if output.as_ref().is_some_and(|(_, too_large)| *too_large) {
            kill();
            let _ = child.wait();
            return Err(CommandError::TooLarge { program: name });
        }
        if let (Some((out, _)), Some(status)) = (&output, status) {
            if !status.success() {
                return Err(CommandError::Exit {
                    program: name,
                    status: describe(status),
                });
            }
            return Ok(out.clone());
        }
        if Instant::now() >= deadline {
            kill();
            let _ = child.wait();
            return Err(CommandError::Timeout {
                program: name,
                timeout: command.timeout,
            });
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// What a credential command printed, read.
#[derive(Debug)]
pub struct Printed {
    /// From the JSON form's `username`.
    pub username: Option<SecretString>,
    pub password: SecretString,
    /// The JSON form's `expiresAt`, in seconds since the Unix epoch.
    pub expires_at: Option<i64>,
}

/// Why the output cannot be used. Never quotes it: JSON errors give only
/// the line and column.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    #[error("printed nothing")]
    Empty,
    #[error("printed text that is not UTF-8")]
    NotUtf8,
    #[error("printed several lines; print the password alone on one line, or a JSON object")]
    SeveralLines,
    #[error("printed JSON that cannot be read (line {line}, column {column})")]
    Json { line: usize, column: usize },
    #[error(
        "printed JSON that is not an object with `password` (and optionally `username`, `expiresAt`)"
    )]
    NotAnObject,
    #[error("printed JSON with a field other than `username`, `password` and `expiresAt`")]
    UnknownField,
    #[error("printed JSON whose `{0}` is not a non-empty string")]
    BadString(&'static str),
    #[error("printed JSON without a `password`")]
    NoPassword,
    #[error(
        "printed an `expiresAt` that is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor seconds since 1970"
    )]
    BadExpiry,
    #[error("printed a credential that expired already (expiresAt {0})")]
    Expired(String),
}

/// Reads a command's stdout: the password alone (one trailing newline
/// dropped), or a JSON object `{"username", "password", "expiresAt"}` (only
/// `password` required; `expiresAt` an RFC 3339 time or Unix seconds).
/// `now` (Unix seconds) decides whether `expiresAt` lies in the past.
pub fn parse_output(stdout: &[u8], now: i64) -> Result<Printed, OutputError> {
    let text = std::str::from_utf8(stdout).map_err(|_| OutputError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(OutputError::Empty);
    }
    if text.trim_start().starts_with('{') {
        return parse_json(text, now);
    }
    let line = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    if line.contains('\n') || line.contains('\r') {
        return Err(OutputError::SeveralLines);
    }
    Ok(Printed {
        username: None,
        password: SecretString::new(line.to_owned()),
        expires_at: None,
    })
}

fn parse_json(text: &str, now: i64) -> Result<Printed, OutputError> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| OutputError::Json {
        line: e.line(),
        column: e.column(),
    })?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(OutputError::NotAnObject);
    };
    if object
        .keys()
        .any(|k| !["username", "password", "expiresAt"].contains(&k.as_str()))
    {
        return Err(OutputError::UnknownField);
    }
    let mut string = |key: &'static str| match object.remove(key) {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::String(s)) if !s.is_empty() => Ok(Some(SecretString::new(s))),
        Some(_) => Err(OutputError::BadString(key)),
    };
    let username = string("username")?;
    let password = string("password")?.ok_or(OutputError::NoPassword)?;
    let expires_at = match object.remove("expiresAt") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            s.parse::<jiff::Timestamp>()
                .map_err(|_| OutputError::BadExpiry)?
                .as_second(),
        ),
        Some(serde_json::Value::Number(n)) => {
            let seconds = n.as_f64().ok_or(OutputError::BadExpiry)?;
            if !(0.0..=253_402_300_799.0).contains(&seconds) {
                return Err(OutputError::BadExpiry);
            }
            #[allow(clippy::cast_possible_truncation)]
            Some(seconds.floor() as i64)
        }
        Some(_) => return Err(OutputError::BadExpiry),
    };
    if let Some(at) = expires_at
        && at <= now
    {
        let shown =
            jiff::Timestamp::from_second(at).map_or_else(|_| at.to_string(), |t| t.to_string());
        return Err(OutputError::Expired(shown));
    }
    Ok(Printed {
        username,
        password,
        expires_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    #[test]
    fn a_bare_password_loses_one_trailing_newline() {
        let p = parse_output(b"s3cret-token\n", NOW).unwrap();
        assert_eq!(p.password.expose(), "s3cret-token");
        assert!(p.username.is_none() && p.expires_at.is_none());
        let p = parse_output(b"tok\r\n", NOW).unwrap();
        assert_eq!(p.password.expose(), "tok");
        let p = parse_output(b"no-newline", NOW).unwrap();
        assert_eq!(p.password.expose(), "no-newline");
    }

    #[test]
    fn bad_plain_output_is_refused_without_quoting_it() {
        assert_eq!(parse_output(b"", NOW).unwrap_err(), OutputError::Empty);
        assert_eq!(parse_output(b" \n\n", NOW).unwrap_err(), OutputError::Empty);
        assert_eq!(
            parse_output(b"WARNING: x\ns3cret\n", NOW).unwrap_err(),
            OutputError::SeveralLines
        );
        assert_eq!(
            parse_output(b"\xff\xfe", NOW).unwrap_err(),
            OutputError::NotUtf8
        );
    }

    #[test]
    fn the_json_form_gives_username_password_and_expiry() {
        let out =
            br#"{"username": "AWS", "password": "s3cret", "expiresAt": "2027-01-15T10:00:00Z"}"#;
        let p = parse_output(out, NOW).unwrap();
        assert_eq!(p.username.unwrap().expose(), "AWS");
        assert_eq!(p.password.expose(), "s3cret");
        assert_eq!(p.expires_at, Some(1_800_007_200));
        // The AWS CLI's own timestamp shape, and Unix seconds.
        let p = parse_output(
            br#"{"password": "x", "expiresAt": "2027-01-15T12:00:00.123000+02:00"}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(p.expires_at, Some(1_800_007_200));
        let p = parse_output(br#"{"password": "x", "expiresAt": 1800007200.5}"#, NOW).unwrap();
        assert_eq!(p.expires_at, Some(1_800_007_200));
        let p = parse_output(b"  {\"password\": \"x\"}\n", NOW).unwrap();
        assert!(p.username.is_none() && p.expires_at.is_none());
    }

    #[test]
    fn bad_json_output_is_refused_without_quoting_it() {
        let cases: &[(&[u8], OutputError)] = &[
            (
                br#"{"password": "s3cret""#,
                OutputError::Json {
                    line: 1,
                    column: 21,
                },
            ),
            (br#"{"username": "u"}"#, OutputError::NoPassword),
            (br#"{"password": ""}"#, OutputError::BadString("password")),
            (br#"{"password": 7}"#, OutputError::BadString("password")),
            (
                br#"{"password": "x", "token": "s3cret"}"#,
                OutputError::UnknownField,
            ),
            (
                br#"{"password": "x", "expiresAt": "tomorrow"}"#,
                OutputError::BadExpiry,
            ),
            (
                br#"{"password": "x", "expiresAt": true}"#,
                OutputError::BadExpiry,
            ),
            (
                br#"{"password": "x", "expiresAt": -5}"#,
                OutputError::BadExpiry,
            ),
            (
                br#"{"password": "x", "expiresAt": "2020-01-01T00:00:00Z"}"#,
                OutputError::Expired("2020-01-01T00:00:00Z".into()),
            ),
            (
                br#"{"password": "x", "expiresAt": 1800000000}"#,
                OutputError::Expired("2027-01-15T08:00:00Z".into()),
            ),
        ];
        for (output, expected) in cases {
            let error = parse_output(output, NOW).unwrap_err();
            assert_eq!(&error, expected, "{}", String::from_utf8_lossy(output));
            assert!(!error.to_string().contains("s3cret"));
        }
    }

    fn sh(script: &str, timeout: Duration, dir: &std::path::Path) -> CommandSource {
        CommandSource {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            timeout,
            dir: dir.to_path_buf(),
        }
    }

    #[test]
    fn a_command_runs_in_its_folder_with_stdin_closed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("token"), "from-the-folder\n").unwrap();
        let out = run(&sh("cat token; cat -", Duration::from_secs(10), dir.path())).unwrap();
        assert_eq!(out, b"from-the-folder\n");
        // A relative program path is the folder's.
        std::fs::write(dir.path().join("print.sh"), "echo printed\n").unwrap();
        let script = CommandSource {
            argv: vec!["/bin/sh".into(), "./print.sh".into()],
            timeout: Duration::from_secs(10),
            dir: dir.path().to_path_buf(),
        };
        assert_eq!(run(&script).unwrap(), b"printed\n");
    }

    #[test]
    fn a_failing_command_is_named_with_its_status_not_its_output() {
        let dir = tempfile::tempdir().unwrap();
        let error = run(&sh(
            "echo s3cret; exit 3",
            Duration::from_secs(10),
            dir.path(),
        ))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "`sh` failed (exit status 3); its output is not shown"
        );
        let error = run(&CommandSource {
            argv: vec!["./missing-program".into()],
            timeout: Duration::from_secs(10),
            dir: dir.path().to_path_buf(),
        })
        .unwrap_err();
        assert!(matches!(error, CommandError::Spawn { .. }), "{error}");
    }

    #[test]
    fn the_timeout_kills_the_command_and_what_it_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("survived");
        // The grandchild holds stdout open and would write the marker later.
        let script = format!("(sleep 3; touch {}) & sleep 30", marker.display());
        let started = Instant::now();
        let error = run(&sh(&script, Duration::from_secs(1), dir.path())).unwrap_err();
        assert!(matches!(error, CommandError::Timeout { .. }), "{error}");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        std::thread::sleep(Duration::from_millis(3500));
        assert!(
            !marker.exists(),
            "a process of the command's group outlived the timeout"
        );
    }

    #[test]
    fn a_command_printing_too_much_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let error = run(&sh("yes s3cret", Duration::from_secs(10), dir.path())).unwrap_err();
        assert!(matches!(error, CommandError::TooLarge { .. }), "{error}");
        assert!(!error.to_string().contains("s3cret"));
    }
}

//! `pullwarden-bench-floor --kubeconfig FILE [--context NAME] [--page-size N]
//! [--secrets pull|all]`: the floor of `pullwarden plan`'s read, for
//! `scripts/bench.sh`. It sends exactly the paginated LISTs pullwarden's
//! read sends (namespaces as metadata only; Secrets with
//! `fieldSelector=type=kubernetes.io/dockerconfigjson` and
//! `type=kubernetes.io/dockercfg`, or every Secret with `--secrets all`;
//! ServiceAccounts; RoleBindings), concurrently, through the same transport
//! (kube's client: TLS, client certificate, connection pool), and reads each
//! answer as bytes without decoding it: only the `continue` token is taken
//! from the first bytes of each page. Prints `requests=R bytes=B seconds=S`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use http_body_util::BodyExt as _;
use kube::Client;
use kube::config::{KubeConfigOptions, Kubeconfig};

const METADATA_LIST: &str = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";

struct Args {
    kubeconfig: String,
    context: Option<String>,
    page_size: u32,
    all_secrets: bool,
}

fn parse_args() -> Result<Args, String> {
    let usage = "usage: pullwarden-bench-floor --kubeconfig FILE [--context NAME] [--page-size N (500)] [--secrets pull|all]";
    let mut args = Args {
        kubeconfig: String::new(),
        context: None,
        page_size: 500,
        all_secrets: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(usage)?;
        match flag.as_str() {
            "--kubeconfig" => args.kubeconfig = value,
            "--context" => args.context = Some(value),
            "--page-size" => args.page_size = value.parse().map_err(|_| usage)?,
            "--secrets" => args.all_secrets = value == "all",
            _ => return Err(usage.into()),
        }
    }
    if args.kubeconfig.is_empty() {
        return Err(usage.into());
    }
    Ok(args)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters kept).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The `continue` token in the first bytes of a list (its `metadata` comes
/// before `items`), without decoding the rest.
fn continue_token(head: &[u8]) -> Option<String> {
    const KEY: &[u8] = b"\"continue\":\"";
    let start = head.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = head[start..].iter().position(|&b| b == b'"')?;
    let token = std::str::from_utf8(&head[start..start + len]).ok()?;
    (!token.is_empty()).then(|| token.to_owned())
}

/// Every page of one LIST: (requests, bytes).
async fn list(
    client: &Client,
    path: &str,
    query: &str,
    accept: &str,
    page_size: u32,
) -> Result<(u64, u64), String> {
    let (mut requests, mut bytes) = (0, 0);
    let mut token: Option<String> = None;
    loop {
        let mut uri = format!("{path}?limit={page_size}");
        if !query.is_empty() {
            uri.push('&');
            uri.push_str(query);
        }
        if let Some(t) = &token {
            uri.push_str("&continue=");
            uri.push_str(&encode(t));
        }
        let request = http::Request::get(&uri)
            .header(http::header::ACCEPT, accept)
            .body(kube::client::Body::empty())
            .map_err(|e| e.to_string())?;
        let response = client
            .send(request)
            .await
            .map_err(|e| format!("{uri}: {e}"))?;
        requests += 1;
        if !response.status().is_success() {
            return Err(format!("{uri}: HTTP {}", response.status()));
        }
        let mut body = response.into_body();
        let mut head = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("{uri}: {e}"))?;
            if let Some(data) = frame.data_ref() {
                bytes += data.len() as u64;
                if head.len() < 4096 {
                    head.extend_from_slice(&data[..data.len().min(4096 - head.len())]);
                }
            }
        }
        token = continue_token(&head);
        if token.is_none() {
            return Ok((requests, bytes));
        }
    }
}

async fn run(args: Args) -> Result<String, String> {
    let kubeconfig = Kubeconfig::read_from(&args.kubeconfig).map_err(|e| e.to_string())?;
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| e.to_string())?;
    let client = Client::try_from(config).map_err(|e| e.to_string())?;
    let json = "application/json";
    let started = Instant::now();
    let n = args.page_size;
    let json_pull = format!(
        "fieldSelector={}",
        encode("type=kubernetes.io/dockerconfigjson")
    );
    let cfg_pull = format!("fieldSelector={}", encode("type=kubernetes.io/dockercfg"));
    let secrets = async {
        if args.all_secrets {
            list(&client, "/api/v1/secrets", "", json, n).await
        } else {
            let (a, b) = tokio::try_join!(
                list(&client, "/api/v1/secrets", &json_pull, json, n),
                list(&client, "/api/v1/secrets", &cfg_pull, json, n),
            )?;
            Ok((a.0 + b.0, a.1 + b.1))
        }
    };
    let results = tokio::try_join!(
        list(&client, "/api/v1/namespaces", "", METADATA_LIST, n),
        secrets,
        list(&client, "/api/v1/serviceaccounts", "", json, n),
        list(
            &client,
            "/apis/rbac.authorization.k8s.io/v1/rolebindings",
            "",
            json,
            n
        ),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    let requests = results.0.0 + results.1.0 + results.2.0 + results.3.0;
    let bytes = results.0.1 + results.1.1 + results.2.1 + results.3.1;
    Ok(format!(
        "requests={requests} bytes={bytes} seconds={seconds:.3}\n"
    ))
}

fn main() -> ExitCode {
    let outcome = parse_args().and_then(|args| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?
            .block_on(run(args))
    });
    match outcome {
        Ok(line) => {
            let _ = std::io::stdout().write_all(line.as_bytes());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "pullwarden-bench-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

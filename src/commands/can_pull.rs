//! `pullwarden can-pull IMAGE (--service-account NS/NAME | --pod NS/NAME)`:
//! the kubelet's own answer to "will this pull?", from the cluster or a
//! snapshot, optionally checked against the registry (`--probe`).

use std::process::ExitCode;

use pullwarden_core::escape;
use pullwarden_core::live::{LiveSecret, LiveServiceAccount, LiveState};
use pullwarden_core::pull::{self, Note, PullFailure, SecretInput, SkipReason, Verdict, project};
use pullwarden_registry::{Client as RegistryClient, ClientOptions, Credential, Outcome, Target};
use serde::Serialize;

use super::{Failed, LiveSource, connect, read_live, read_options, retry_policy, runtime};
use crate::cli::{CanPullArgs, CanPullFormat};
use crate::output::Output;

/// What pullwarden cannot see, said with every answer.
const NOT_VISIBLE: &str = "not visible to pullwarden: credentials on the node (the kubelet's config.json), kubelet credential-provider plugins (ECR, GCR, ACR), registry mirrors";

/// The answer, as `--format json` prints it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    image: String,
    /// The repository the kubelet looks credentials up for (`docker.io/library/nginx`).
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<String>,
    /// `pull`, `anonymous` (no credential applies) or `no-pull`.
    verdict: &'static str,
    /// The pod's pull secrets, in order (for a ServiceAccount: what a pod created now gets).
    pull_secrets: Vec<String>,
    /// The entries the runtime tries, in the kubelet's order.
    candidates: Vec<CandidateOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    anonymous_probe: Option<Outcome>,
    #[serde(skip_serializing_if = "Option::is_none")]
    project: Option<ProjectOut>,
    reasons: Vec<String>,
    not_visible: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CandidateOut {
    secret: String,
    /// The registry key exactly as written in the secret.
    registry_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    probe: Option<Outcome>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ProjectOut {
    namespace: String,
    stream: String,
    allowed: bool,
    /// `checked by a SubjectAccessReview`, or `from the snapshot's bindings`.
    how: &'static str,
    granted_by: Vec<String>,
}

fn split_name(text: &str, flag: &str, out: &Output) -> Result<(String, String), Failed> {
    match text.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((ns.to_owned(), name.to_owned()))
        }
        _ => {
            out.error(&format!(
                "pullwarden: {flag} takes NAMESPACE/NAME, not `{}`",
                escape::text(text)
            ));
            Err(Failed)
        }
    }
}

/// What the answer is computed from, wherever it was read.
struct Inputs {
    pod: Option<pullwarden_kube::inspect::PodPulls>,
    service_account: Option<LiveServiceAccount>,
    secrets: Vec<LiveSecret>,
}

fn from_snapshot(live: &LiveState, namespace: &str, service_account: &str) -> Inputs {
    let sa = live
        .service_accounts
        .iter()
        .find(|sa| sa.meta.namespace == namespace && sa.meta.name == service_account)
        .cloned();
    Inputs {
        pod: None,
        service_account: sa,
        secrets: live
            .secrets
            .iter()
            .filter(|s| s.meta.namespace == namespace)
            .cloned()
            .collect(),
    }
}

pub fn can_pull(args: &CanPullArgs, out: &Output) -> ExitCode {
    match run(args, out) {
        Ok(code) => code,
        Err(Failed) => ExitCode::from(1),
    }
}

fn run(args: &CanPullArgs, out: &Output) -> Result<ExitCode, Failed> {
    let (namespace, who) = match (&args.pod, &args.service_account) {
        (Some(pod), _) => split_name(pod, "--pod", out)?,
        (None, Some(sa)) => split_name(sa, "--service-account", out)?,
        (None, None) => unreachable!("clap requires --pod or --service-account"),
    };
    let rt = runtime(out)?;
    let policy = retry_policy(&args.cluster);
    let snapshot = match &args.live {
        Some(path) => Some(read_live(
            &rt,
            LiveSource::Snapshot(path),
            &[],
            &read_options(&args.cluster),
            out,
        )?),
        None => None,
    };
    let client = match &snapshot {
        Some(_) => None,
        None => Some(connect(&rt, &args.cluster, out)?),
    };
    let inputs = match (&snapshot, &client) {
        (Some(live), _) => from_snapshot(live, &namespace, &who),
        (None, Some(client)) => {
            let (sa, pod) = if args.pod.is_some() {
                (None, Some(who.as_str()))
            } else {
                (Some(who.as_str()), None)
            };
            let context = rt
                .block_on(pullwarden_kube::inspect::pull_context(
                    client, &namespace, sa, pod, &policy,
                ))
                .map_err(|e| {
                    out.report(&miette::Report::new(e));
                    Failed
                })?;
            Inputs {
                pod: context.pod,
                service_account: context.service_account,
                secrets: context.secrets,
            }
        }
        (None, None) => unreachable!("a client or a snapshot"),
    };

    let mut reasons = Vec::new();
    let sa_name = inputs
        .pod
        .as_ref()
        .map_or(who.clone(), |p| p.service_account.clone());
    let sa_lists: Vec<String> = inputs
        .service_account
        .as_ref()
        .map(|sa| sa.image_pull_secrets.clone())
        .unwrap_or_default();
    let pull_secrets: Vec<String> = if let Some(pod) = &inputs.pod {
        let missed = pull::admission::missed_since_creation(&pod.image_pull_secrets, &sa_lists);
        if !missed.is_empty() {
            reasons.push(format!(
                    "the ServiceAccount {namespace}/{sa_name} now lists {}, which this pod does not have: a pod gets its ServiceAccount's pull secrets only when it is created, and only if it lists none itself; recreate the pod (for example `kubectl rollout restart`) to pick them up",
                    missed.join(", ")
                ));
        }
        if !pod.images.is_empty() && !pod.images.iter().any(|i| i == &args.image) {
            reasons.push(format!(
                "the pod runs {}, not {}",
                pod.images.join(", "),
                args.image
            ));
        }
        pod.image_pull_secrets.clone()
    } else {
        if inputs.service_account.is_none() {
            reasons.push(format!(
                    "the ServiceAccount {namespace}/{who} does not exist: a pod using it is refused at creation"
                ));
        }
        pull::admission::pull_secrets_at_creation::<String>(&[], &sa_lists, false)
    };

    let secret_inputs: Vec<SecretInput<'_>> =
        inputs.secrets.iter().map(SecretInput::from_live).collect();
    let selection = pull::select(&args.image, &pull_secrets, &secret_inputs);
    for note in &selection.notes {
        reasons.push(describe_note(note));
    }

    let mut answer = Answer {
        image: args.image.clone(),
        repository: selection.image.as_ref().map(|i| i.repository.clone()),
        verdict: "no-pull",
        pull_secrets: pull_secrets.clone(),
        candidates: Vec::new(),
        anonymous_probe: None,
        project: None,
        reasons,
        not_visible: NOT_VISIBLE,
    };

    let mut will_pull = false;
    match &selection.verdict {
        Verdict::Failed(PullFailure::InvalidImage(e)) => {
            answer
                .reasons
                .push(format!("the kubelet refuses the image reference: {e}"));
        }
        Verdict::Failed(PullFailure::MalformedSecret { secret, problem }) => {
            answer.reasons.push(format!(
                "the docker config of Secret {secret} does not decode ({problem}): the kubelet fails the pull before contacting any registry"
            ));
        }
        Verdict::Candidates(candidates) => {
            answer.candidates = candidates
                .iter()
                .map(|c| CandidateOut {
                    secret: c.secret.clone(),
                    registry_key: c.registry_key.clone(),
                    username: c.username.clone().filter(|u| !u.is_empty()),
                    probe: None,
                })
                .collect();
            will_pull = true;
        }
        Verdict::Anonymous => {
            answer.verdict = "anonymous";
            answer.reasons.push(
                "no credential applies: the runtime pulls anonymously, which works only for a public image"
                    .to_owned(),
            );
        }
    }

    // OpenShift's integrated registry: RBAC decides.
    let internal = selection
        .image
        .as_ref()
        .and_then(|image| project::internal_project(image, &args.internal_registry));
    if let Some((project_ns, stream)) = &internal {
        let (allowed, granted_by, how) = if let Some(client) = &client {
            let access = rt
                .block_on(pullwarden_kube::inspect::project_access(
                    client, &namespace, &sa_name, project_ns, stream, &policy,
                ))
                .map_err(|e| {
                    out.report(&miette::Report::new(e));
                    Failed
                })?;
            (
                access.allowed,
                access.granted_by,
                "checked by a SubjectAccessReview",
            )
        } else {
            let live = snapshot
                .as_ref()
                .expect("without a client, the answer comes from a snapshot");
            let granted_by = snapshot_grants(live, project_ns, stream, &namespace, &sa_name);
            (
                !granted_by.is_empty(),
                granted_by,
                "from the snapshot's bindings to OpenShift's image roles",
            )
        };
        if allowed && granted_by.is_empty() {
            answer.reasons.push(format!(
                "RBAC allows {namespace}/{sa_name} to pull from project {project_ns}, through no RoleBinding there that names it: a ClusterRoleBinding or another authorizer grants it"
            ));
        }
        if !allowed {
            answer.reasons.push(format!(
                "RBAC does not let {namespace}/{sa_name} pull from project {project_ns} (get imagestreams/layers): no binding grants it; grant it with a PullGrant"
            ));
        }
        will_pull = allowed && !matches!(selection.verdict, Verdict::Failed(_));
        answer.project = Some(ProjectOut {
            namespace: project_ns.clone(),
            stream: stream.clone(),
            allowed,
            how,
            granted_by,
        });
    }

    if args.probe && internal.is_none() && !matches!(selection.verdict, Verdict::Failed(_)) {
        will_pull = probe(args, &selection, &mut answer, &rt, out)?;
    }
    if will_pull {
        answer.verdict = "pull";
    } else if answer.verdict == "anonymous" && args.probe {
        answer.verdict = "no-pull";
    }

    match args.format {
        CanPullFormat::Json => out.json(&answer),
        CanPullFormat::Text => out.data(&text(&answer, &namespace, &who, args.pod.is_some())),
    }
    Ok(if will_pull {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}

/// Bindings (from a snapshot) that let the ServiceAccount pull the stream:
/// the snapshot's RoleBindings evaluated with OpenShift's image roles.
fn snapshot_grants(
    live: &LiveState,
    project_ns: &str,
    stream: &str,
    namespace: &str,
    sa: &str,
) -> Vec<String> {
    let policy = pullwarden_core::plan::access::policy_from_live(live);
    pullwarden_kube::inspect::granting_bindings(&policy, namespace, sa, project_ns, stream)
}

/// Tries each candidate in order, as a runtime does, until one pulls;
/// anonymously when there is none. Whether one pulls.
fn probe(
    args: &CanPullArgs,
    selection: &pull::Selection,
    answer: &mut Answer,
    rt: &tokio::runtime::Runtime,
    out: &Output,
) -> Result<bool, Failed> {
    let Some(image) = &selection.image else {
        return Ok(false);
    };
    let extra_ca_pem = match &args.registry_ca {
        Some(path) => Some(
            pullwarden_input::read(path, pullwarden_input::Limit::CREDENTIAL_FILE).map_err(
                |e| {
                    out.error(&format!("pullwarden: --registry-ca: {e}"));
                    Failed
                },
            )?,
        ),
        None => None,
    };
    let registry = RegistryClient::new(&ClientOptions {
        extra_ca_pem,
        plain_http_hosts: args.insecure_registry.clone(),
        timeout: args.cluster.request_timeout,
    })
    .map_err(|e| {
        out.error(&format!(
            "pullwarden: cannot set up the registry client: {e}"
        ));
        Failed
    })?;
    let path = image
        .repository
        .strip_prefix(&image.domain)
        .and_then(|p| p.strip_prefix('/'))
        .unwrap_or(&image.repository);
    let reference = image
        .digest
        .clone()
        .or_else(|| image.tag.clone())
        .unwrap_or_else(|| "latest".to_owned());
    let target = Target::new(&image.domain, path, &reference).map_err(|e| {
        out.error(&format!(
            "pullwarden: cannot probe {}: {e}",
            escape::text(&image.repository)
        ));
        Failed
    })?;
    if let Verdict::Candidates(candidates) = &selection.verdict {
        for (candidate, shown) in candidates.iter().zip(answer.candidates.iter_mut()) {
            let credential = Credential::new(
                candidate.username.clone().unwrap_or_default(),
                candidate.password.clone(),
            );
            let outcome = rt.block_on(registry.probe(&target, Some(&credential)));
            let pulled = matches!(outcome, Outcome::Pullable { .. });
            shown.probe = Some(outcome);
            if pulled {
                return Ok(true);
            }
        }
        Ok(false)
    } else {
        let outcome = rt.block_on(registry.probe(&target, None));
        let pulled = matches!(outcome, Outcome::Pullable { .. });
        answer.anonymous_probe = Some(outcome);
        Ok(pulled)
    }
}

fn describe_note(note: &Note) -> String {
    match note {
        Note::EmptySecretName { index } => {
            format!("imagePullSecrets[{index}] has no name; the kubelet ignores it")
        }
        Note::SecretNotFound { name } => format!(
            "Secret {name} does not exist: the kubelet skips it (event FailedToRetrieveImagePullSecret)"
        ),
        Note::SecretListedTwice { name } => {
            format!("Secret {name} is listed more than once; its entries count each time")
        }
        Note::SecretSkipped { name, reason } => match reason {
            SkipReason::NotADockerConfigType { secret_type } => format!(
                "Secret {name} is of type {secret_type}, not a docker config: the kubelet does not use it for pulls"
            ),
            SkipReason::NoDockerConfig { key } => {
                format!("Secret {name} has no {key}: the kubelet does not use it for pulls")
            }
        },
        Note::EntryIgnored {
            secret,
            registry_key,
        } => format!(
            "Secret {secret}: the kubelet ignores the entry for {registry_key:?} (not a registry key it can parse)"
        ),
    }
}

fn text(answer: &Answer, namespace: &str, who: &str, pod: bool) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "image: {}{}",
        escape::text(&answer.image),
        answer
            .repository
            .as_ref()
            .map(|r| format!(" (credentials looked up for {})", escape::text(r)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        out,
        "{}: {namespace}/{who}; pull secrets{}: {}",
        if pod { "pod" } else { "service account" },
        if pod { "" } else { " a pod created now gets" },
        if answer.pull_secrets.is_empty() {
            "none".to_owned()
        } else {
            escape::text(&answer.pull_secrets.join(", "))
        }
    );
    if !answer.candidates.is_empty() {
        out.push_str("the kubelet tries, in this order:\n");
        for (i, c) in answer.candidates.iter().enumerate() {
            let _ = write!(
                out,
                "  {}. Secret {}, registry key {:?}",
                i + 1,
                escape::text(&c.secret),
                escape::text(&c.registry_key)
            );
            if let Some(user) = &c.username {
                let _ = write!(out, ", username {}", escape::text(user));
            }
            if let Some(probe) = &c.probe {
                let _ = write!(out, ": {}", escape::text(&probe.to_string()));
            }
            out.push('\n');
        }
    }
    if let Some(probe) = &answer.anonymous_probe {
        let _ = writeln!(out, "anonymous pull: {}", escape::text(&probe.to_string()));
    }
    if let Some(project) = &answer.project {
        let _ = writeln!(
            out,
            "project {} (image stream {}): {} ({})",
            project.namespace,
            escape::text(&project.stream),
            if project.allowed {
                "pulls allowed"
            } else {
                "pulls NOT allowed"
            },
            project.how
        );
        for grant in &project.granted_by {
            let _ = writeln!(out, "  granted by {}", escape::text(grant));
        }
    }
    for reason in &answer.reasons {
        let _ = writeln!(out, "note: {}", escape::text(reason));
    }
    let _ = writeln!(
        out,
        "verdict: {}",
        match answer.verdict {
            "pull" => "it will pull (as far as the cluster can tell)",
            "anonymous" => "no credential: it pulls only if the image is public",
            _ => "it will NOT pull",
        }
    );
    let _ = writeln!(out, "{}", answer.not_visible);
    out
}

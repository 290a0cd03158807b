//! `pullwarden access`: who may pull what in the workspace's scope; and the
//! RBAC read that `plan` and `apply` share for their access section.

use std::collections::BTreeMap;
use std::process::ExitCode;

use pullwarden_core::live::LiveState;
use pullwarden_core::names::NamespacePattern;
use pullwarden_core::plan::Plan;
use pullwarden_core::plan::access::{
    self, AccessChanges, AccessFilter, AccessKind, AccessReport, Pull, PullSecretState, Scope, rbac,
};
use pullwarden_core::render;

use super::{
    Failed, LiveSource, connect, load_resolved, named_namespaces, read_live_for, read_options,
    runtime,
};
use crate::cli::{AccessArgs, ClusterArgs, PlanFormat};
use crate::output::Output;

/// The RBAC policy access is evaluated on, and what that evaluation covers.
pub(crate) struct PolicyRead {
    /// `Err`: why access cannot be evaluated (shown, never fatal for a plan).
    pub policy: Result<rbac::Policy, String>,
    pub notes: Vec<String>,
}

/// The policy of a snapshot (its RoleBindings + OpenShift's image roles).
pub(crate) fn snapshot_policy(live: &LiveState) -> PolicyRead {
    PolicyRead {
        policy: Ok(access::policy_from_live(live)),
        notes: vec![access::SNAPSHOT_POLICY_NOTE.to_owned()],
    }
}

/// Starts reading the cluster's Roles, ClusterRoles and bindings alongside
/// the live state; [`finish_policy_read`] waits for it.
pub(crate) fn start_policy_read(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    cluster: &ClusterArgs,
) -> tokio::task::JoinHandle<Result<rbac::Policy, pullwarden_kube::ClusterError>> {
    let client = client.clone();
    let options = read_options(cluster);
    // Only what can grant a pull is kept (plan, apply and access ask
    // nothing else): most of a cluster's RoleBindings are of other roles.
    rt.spawn(async move {
        let mut policy = pullwarden_kube::rbac::read_rbac(&client, &options).await?;
        policy.retain_pull_relevant();
        Ok(policy)
    })
}

/// The policy read by [`start_policy_read`]. Credentials that may not list
/// RBAC objects (least-privileged CI identities) make the access section
/// unavailable, not the command fail, with the same words whichever of the
/// four lists was refused first. Any other failure (a timeout, a 5xx, a reset
/// connection) fails the command, like a failed read of the live state: a
/// plan is either the fault-free one or none.
pub(crate) fn finish_policy_read(
    rt: &tokio::runtime::Runtime,
    task: tokio::task::JoinHandle<Result<rbac::Policy, pullwarden_kube::ClusterError>>,
    out: &Output,
) -> Result<PolicyRead, Failed> {
    let policy = match rt.block_on(task) {
        Ok(Ok(policy)) => Ok(policy),
        Ok(Err(pullwarden_kube::ClusterError::Forbidden { .. })) => Err(format!(
            "the credentials may not list the RBAC objects; {}",
            pullwarden_kube::rbac::READ_RBAC_POLICY_HELP
        )),
        Ok(Err(e)) => {
            out.report(&miette::Report::new(e));
            return Err(Failed);
        }
        Err(_) => {
            out.error("pullwarden: reading the RBAC policy was cancelled");
            return Err(Failed);
        }
    };
    Ok(PolicyRead {
        policy,
        notes: Vec::new(),
    })
}

/// The access section of `plan` (set on it).
pub(crate) fn attach_access(
    plan: &mut Plan,
    ws: &pullwarden_core::model::Workspace,
    live: &LiveState,
    read: &PolicyRead,
    out: &Output,
) {
    let started = std::time::Instant::now();
    let mut section = match &read.policy {
        Ok(policy) => access::plan_access(ws, live, policy, plan),
        Err(reason) => AccessChanges::unavailable(reason),
    };
    section.notes.extend(read.notes.iter().cloned());
    if section.unavailable.is_some() {
        out.status("pullwarden: the access section is unavailable (see the plan); the plan itself is complete");
    }
    out.info(&format!(
        "access: {} gained, {} lost, computed in {:.2?}",
        section.gained.len(),
        section.lost.len(),
        started.elapsed()
    ));
    plan.access = Some(section);
}

/// `pullwarden access`.
pub fn access(args: &AccessArgs, out: &Output) -> ExitCode {
    match access_inner(args, out) {
        Ok(code) => code,
        Err(Failed) => ExitCode::from(1),
    }
}

fn parse_filter(args: &AccessArgs, out: &Output) -> Result<AccessFilter, Failed> {
    let namespace = match &args.namespace {
        Some(glob) => Some(NamespacePattern::parse(glob).map_err(|e| {
            out.error(&format!("pullwarden: --namespace {glob}: {e}"));
            Failed
        })?),
        None => None,
    };
    let service_account = match &args.service_account {
        Some(text) => match text.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Some((ns.to_owned(), name.to_owned()))
            }
            _ => {
                out.error(&format!(
                    "pullwarden: --service-account {}: expected NAMESPACE/NAME",
                    render::safe(text)
                ));
                return Err(Failed);
            }
        },
        None => None,
    };
    Ok(AccessFilter {
        namespace,
        service_account,
        registry: args.registry.clone(),
    })
}

fn access_inner(args: &AccessArgs, out: &Output) -> Result<ExitCode, Failed> {
    let filter = parse_filter(args, out)?;
    let (ws, _registries) = load_resolved(&args.path, out)?;
    let targets = super::fleet::targets(
        &ws,
        &args.clusters,
        &args.cluster,
        args.live.as_deref(),
        out,
    )?;
    let rt = runtime(out)?;
    if let Some(targets) = targets {
        return Ok(access_fleet(args, &ws.name, &rt, &targets, &filter, out));
    }
    let found = access_one(&rt, &ws, args.live.as_deref(), &args.cluster, &filter, out)?;
    match args.format {
        PlanFormat::Json => out.data(
            &(serde_json::to_string_pretty(&AccessReport {
                format_version: access::ACCESS_FORMAT_VERSION,
                pulls: &found.pulls,
            })
            .expect("the access report serializes")
                + "\n"),
        ),
        PlanFormat::Text => out.data(&text(&ws.name, &found.pulls, args.explain, &found.notes)),
        PlanFormat::Markdown => out.data(&markdown(
            &ws.name,
            &found.pulls,
            args.explain,
            &found.notes,
        )),
    }
    if args.verify {
        let client = found.client.expect("--verify conflicts with --live");
        let disagreements = verify(&rt, &client, &args.cluster, &found.pulls, out)?;
        if disagreements > 0 {
            return Ok(ExitCode::from(1));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Who may pull what on one cluster.
struct Found {
    pulls: Vec<Pull>,
    notes: Vec<String>,
    /// The cluster's client (not for a snapshot), for `--verify`.
    client: Option<kube::Client>,
    /// With `--verify` in a fleet: how many lines the API server disagreed with.
    disagreements: usize,
}

fn access_one(
    rt: &tokio::runtime::Runtime,
    ws: &pullwarden_core::model::Workspace,
    live: Option<&std::path::Path>,
    cluster: &ClusterArgs,
    filter: &AccessFilter,
    out: &Output,
) -> Result<Found, Failed> {
    let named = named_namespaces(ws);
    let options = read_options(cluster);
    let started = std::time::Instant::now();
    // No workspace handed to the read: every docker-config Secret's data is
    // kept (registries are read from Secrets pullwarden does not manage too).
    let (live, read, client) = if let Some(path) = live {
        let live = read_live_for(rt, LiveSource::Snapshot(path), &named, None, &options, out)?;
        let read = snapshot_policy(&live);
        (live, read, None)
    } else {
        let client = connect(rt, cluster, out)?;
        let task = start_policy_read(rt, &client, cluster);
        let live = read_live_for(
            rt,
            LiveSource::Cluster(&client),
            &named,
            None,
            &options,
            out,
        )?;
        let read = finish_policy_read(rt, task, out)?;
        (live, read, Some(client))
    };
    let policy = match read.policy {
        Ok(policy) => policy,
        Err(reason) => {
            out.error(&format!("pullwarden: {}", render::safe(&reason)));
            return Err(Failed);
        }
    };
    let mut scope = Scope::of_workspace(ws, &live);
    scope.subjects.retain(|s| filter.keeps_subject(s));
    let secrets = PullSecretState::from_live(&live);
    let mut pulls = access::current_access(&policy, &secrets, &scope);
    pulls.retain(|p| filter.keeps_pull(p));
    out.info(&format!(
        "access: {} subjects, {} projects, {} lines in {:.2?}",
        scope.subjects.len(),
        scope.projects.len(),
        pulls.len(),
        started.elapsed()
    ));
    let mut notes = read.notes;
    notes.push(access::REGISTRY_NOTE.to_owned());
    Ok(Found {
        pulls,
        notes,
        client,
        disagreements: 0,
    })
}

/// `access` over a fleet: each cluster's access read and evaluated on the
/// workspace it gets (with `--verify`, checked there), printed a section per
/// cluster; exit 1 when any cluster failed or disagreed.
const NOTHING_EVALUATED: &str = "Access on this cluster could not be evaluated.";

fn access_fleet(
    args: &AccessArgs,
    workspace: &str,
    rt: &tokio::runtime::Runtime,
    targets: &[super::fleet::Target],
    filter: &AccessFilter,
    out: &Output,
) -> ExitCode {
    use super::fleet::{self, Outcome};
    use std::fmt::Write as _;

    let runs = fleet::run_each(targets, out, |target, out| {
        let live = fleet::live_of(target, out)?;
        let mut found = access_one(rt, &target.ws, live, &target.cluster, filter, out)?;
        if args.verify
            && let Some(client) = &found.client
        {
            found.disagreements = verify(rt, client, &target.cluster, &found.pulls, out)?;
        }
        Ok(found)
    });
    let document = match args.format {
        PlanFormat::Json => {
            let clusters: Vec<serde_json::Value> = runs
                .iter()
                .map(|run| match &run.result {
                    Ok(found) => serde_json::json!({
                        "name": run.name,
                        "status": "evaluated",
                        "pulls": found.pulls,
                    }),
                    Err(Failed) => serde_json::json!({
                        "name": run.name,
                        "status": "error",
                        "errors": fleet::error_lines(&run.messages),
                    }),
                })
                .collect();
            serde_json::to_string_pretty(&serde_json::json!({
                "format_version": access::ACCESS_FORMAT_VERSION,
                "workspace": workspace,
                "clusters": clusters,
            }))
            .expect("the access report serializes")
                + "\n"
        }
        PlanFormat::Text => {
            let mut document = String::new();
            for run in &runs {
                document.push_str(&fleet::text_heading(&run.name));
                match &run.result {
                    Ok(found) => document.push_str(&text(
                        workspace,
                        &found.pulls,
                        args.explain,
                        &found.notes,
                    )),
                    Err(Failed) => {
                        document.push_str(&fleet::text_failure(&run.messages, NOTHING_EVALUATED));
                    }
                }
                document.push('\n');
            }
            document
        }
        PlanFormat::Markdown => {
            let mut document = format!(
                "### pullwarden access: workspace `{}`, {}\n",
                pullwarden_core::escape::markdown(&render::safe(workspace)),
                fleet::clusters(runs.len())
            );
            for run in &runs {
                let heading = format!(
                    "#### cluster `{}`",
                    pullwarden_core::escape::markdown(&render::safe(&run.name))
                );
                document.push('\n');
                match &run.result {
                    Ok(found) => document.push_str(&fleet::replace_first_line(
                        &markdown(workspace, &found.pulls, args.explain, &found.notes),
                        &heading,
                    )),
                    Err(Failed) => {
                        let _ = write!(
                            document,
                            "{heading}\n\n{}",
                            fleet::markdown_failure(&run.messages, NOTHING_EVALUATED)
                        );
                    }
                }
            }
            document
        }
    };
    out.data(&document);
    let outcomes = runs.iter().map(|run| match &run.result {
        Ok(found) if found.disagreements == 0 => Outcome::Clean,
        _ => Outcome::Error,
    });
    fleet::exit_code(outcomes, false)
}

/// Lines grouped by subject: `  project project-b  (via RoleBinding …)`.
fn text(workspace: &str, pulls: &[Pull], explain: bool, notes: &[String]) -> String {
    use std::fmt::Write as _;
    let mut out = format!(
        "pull access in the scope of workspace {}\n",
        render::safe(workspace)
    );
    let mut by_subject: BTreeMap<&str, Vec<&Pull>> = BTreeMap::new();
    for pull in pulls {
        by_subject.entry(&pull.subject).or_default().push(pull);
    }
    if by_subject.is_empty() {
        out.push_str("\nnobody in scope may pull anything\n");
    }
    for (subject, lines) in &by_subject {
        let _ = writeln!(out, "\n{}", render::safe(subject));
        for pull in lines {
            let mut line = format!("  {:<8} {}", pull.kind.as_str(), pull.target);
            if explain {
                let _ = write!(line, "  (via {})", pull.via.join(", "));
            }
            let _ = writeln!(out, "{}", render::safe(&line));
        }
    }
    let projects = pulls
        .iter()
        .filter(|p| p.kind == AccessKind::Project)
        .count();
    let _ = writeln!(
        out,
        "\n{} subjects; {} project lines, {} registry lines",
        by_subject.len(),
        projects,
        pulls.len() - projects
    );
    for note in notes {
        let _ = writeln!(out, "note: {}", render::safe(note));
    }
    out
}

fn markdown(workspace: &str, pulls: &[Pull], explain: bool, notes: &[String]) -> String {
    use std::fmt::Write as _;
    let md = |s: &str| pullwarden_core::escape::markdown(&render::safe(s));
    let mut out = format!("### pullwarden access: workspace `{}`\n\n", md(workspace));
    if pulls.is_empty() {
        out.push_str("Nobody in scope may pull anything.\n");
    } else {
        out.push_str(if explain {
            "| subject | kind | target | via |\n|---|---|---|---|\n"
        } else {
            "| subject | kind | target |\n|---|---|---|\n"
        });
        for pull in pulls {
            let _ = write!(
                out,
                "| {} | {} | {} |",
                md(&pull.subject),
                pull.kind.as_str(),
                md(&pull.target)
            );
            if explain {
                let _ = write!(out, " {} |", md(&pull.via.join(", ")));
            }
            out.push('\n');
        }
    }
    for note in notes {
        let _ = writeln!(out, "\n_note: {}_", md(note));
    }
    out
}

/// Asks the API server about every ServiceAccount's project line (a
/// SubjectAccessReview each, as the integrated registry does).
fn verify(
    rt: &tokio::runtime::Runtime,
    client: &kube::Client,
    cluster: &ClusterArgs,
    pulls: &[Pull],
    out: &Output,
) -> Result<usize, Failed> {
    let policy = super::retry_policy(cluster);
    let checks: Vec<(&Pull, &str, &str)> = pulls
        .iter()
        .filter(|p| p.kind == AccessKind::Project)
        .filter_map(|p| {
            let (ns, name) = p
                .subject
                .strip_prefix("system:serviceaccount:")?
                .split_once(':')?;
            Some((p, ns, name))
        })
        .collect();
    let started = std::time::Instant::now();
    let mut disagreements = 0;
    for (pull, ns, name) in &checks {
        let stream = pull
            .via
            .iter()
            .find_map(|v| v.split_once("(image streams ").map(|(_, s)| s))
            .and_then(|s| s.split([',', ')']).next())
            .unwrap_or_default();
        let allowed = rt
            .block_on(subject_access_review(
                client,
                ns,
                name,
                &pull.target,
                stream,
                &policy,
            ))
            .map_err(|e| {
                out.error(&format!("pullwarden: {}", render::safe(&e)));
                Failed
            })?;
        if !allowed {
            disagreements += 1;
            out.status(&format!(
                "disagreement: the API server does not let {} pull from project {}",
                render::safe(&pull.subject),
                render::safe(&pull.target)
            ));
        }
    }
    out.status(&format!(
        "verify: {} SubjectAccessReview requests in {:.2?}, {disagreements} disagreement{}",
        checks.len(),
        started.elapsed(),
        if disagreements == 1 { "" } else { "s" }
    ));
    Ok(disagreements)
}

/// One SubjectAccessReview: may `ns/name` (with its groups) `get
/// imagestreams/layers` of `stream` (`""`: any) in `project`.
async fn subject_access_review(
    client: &kube::Client,
    ns: &str,
    name: &str,
    project: &str,
    stream: &str,
    policy: &pullwarden_kube::RetryPolicy,
) -> Result<bool, String> {
    use kube::api::{Api, ApiResource, DynamicObject, PostParams};
    let resource = ApiResource {
        group: "authorization.k8s.io".into(),
        version: "v1".into(),
        api_version: "authorization.k8s.io/v1".into(),
        kind: "SubjectAccessReview".into(),
        plural: "subjectaccessreviews".into(),
    };
    let user = rbac::UserInfo::service_account(ns, name);
    let mut attributes = serde_json::json!({
        "namespace": project,
        "verb": "get",
        "group": rbac::IMAGE_API_GROUP,
        "resource": "imagestreams",
        "subresource": "layers",
    });
    if !stream.is_empty() {
        attributes["name"] = stream.into();
    }
    let mut review = DynamicObject::new("", &resource);
    review.data = serde_json::json!({
        "spec": {"user": user.name, "groups": user.groups, "resourceAttributes": attributes}
    });
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
    let post = PostParams::default();
    let answer = pullwarden_kube::retry::retry(policy, || api.create(&post, &review))
        .await
        .map_err(|e| match e {
            // The server's message is not quoted: only its code and reason.
            kube::Error::Api(status) => format!(
                "the API server refused a SubjectAccessReview: HTTP {} {}",
                status.code, status.reason
            ),
            _ => "cannot reach the API server for a SubjectAccessReview".to_owned(),
        })?;
    Ok(answer.data["status"]["allowed"].as_bool() == Some(true))
}

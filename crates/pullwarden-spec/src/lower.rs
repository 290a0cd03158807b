//! Lowering: spanned YAML documents in, a validated [`Workspace`] out, with
//! every problem found on the way. Nothing here stops at the first problem:
//! a bad field is reported and the rest of the document is still checked.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pullwarden_core::model::{
    Cluster, CommandSource, FileId, IfMissing, Located, Origin, PullGrant, PullSecret, Registry,
    RegistrySource, Scope, SecretFormat, ServiceAccountLink, Subject, ValueSource, Workspace,
};
use pullwarden_core::names::{
    ClusterPattern, LabelSelector, Labels, NamespacePattern, SelectorOperator, SelectorRequirement,
    dns_label_problem, dns_subdomain_problem, is_glob, label_key_problem, label_value_problem,
    role_name_problem,
};

use crate::diag::Problem;
use crate::format::API_VERSION;
use crate::yaml::{Node, Value};

/// The field names the decoder accepts, per object; a test checks them against
/// the JSON Schema so the two cannot drift apart.
pub mod fields {
    pub const DOCUMENT: &[&str] = &["apiVersion", "kind", "metadata", "spec"];
    pub const METADATA: &[&str] = &["name"];
    pub const WORKSPACE_SPEC: &[&str] = &["namespaces", "prune", "clusters"];
    pub const CLUSTER: &[&str] = &["name", "context", "kubeconfig", "labels"];
    pub const NAMESPACE_SCOPE: &[&str] = &["include", "exclude"];
    pub const LOGIN_REGISTRY: &[&str] = &["server", "username", "password", "email"];
    pub const DOCKER_CONFIG_REGISTRY: &[&str] = &["dockerConfigFile"];
    pub const DOCKERCFG_REGISTRY: &[&str] = &["dockercfgFile"];
    pub const SECRET_SOURCE: &[&str] = &["fromEnv", "fromFile", "fromCommand"];
    pub const COMMAND_SOURCE: &[&str] = &["command", "timeout"];
    pub const PULL_SECRET_SPEC: &[&str] = &[
        "format",
        "registries",
        "namespaces",
        "excludeNamespaces",
        "serviceAccounts",
        "clusters",
    ];
    pub const SERVICE_ACCOUNT_LINK: &[&str] = &["name", "for", "ifMissing"];
    pub const PULL_GRANT_SPEC: &[&str] = &["role", "namespaces", "to", "clusters"];
    pub const SUBJECT: &[&str] = &["serviceAccount", "allServiceAccountsIn", "group", "user"];
    pub const LABEL_SELECTOR: &[&str] = &["matchLabels", "matchExpressions"];
    pub const SELECTOR_REQUIREMENT: &[&str] = &["key", "operator", "values"];
    pub const KINDS: &[&str] = &["Workspace", "Registry", "PullSecret", "PullGrant"];
}

/// How long a `fromCommand` may run unless its `timeout` says otherwise.
pub const DEFAULT_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// The longest `timeout` a `fromCommand` may have.
pub const MAX_COMMAND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// A `fromCommand` timeout: a number and its unit (`ms`, `s`, `m`), between
/// 1 s and [`MAX_COMMAND_TIMEOUT`].
pub fn parse_command_timeout(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let Ok(number) = number.parse::<u64>() else {
        return Err(format!(
            "`timeout` must be a duration such as 30s or 2m, not `{text}`"
        ));
    };
    let duration = match unit {
        "ms" => Duration::from_millis(number),
        "s" => Duration::from_secs(number),
        "m" => Duration::from_secs(number.saturating_mul(60)),
        "" => return Err(format!("`timeout` needs a unit: `{text}s`, for example")),
        _ => {
            return Err(format!(
                "`timeout` has an unknown unit in `{text}` (use ms, s or m)"
            ));
        }
    };
    if duration < Duration::from_secs(1) || duration > MAX_COMMAND_TIMEOUT {
        return Err(format!(
            "`timeout` must be between 1s and 10m, not `{text}`"
        ));
    }
    Ok(duration)
}

/// The default role of a `PullGrant`.
pub const DEFAULT_ROLE: &str = "system:image-puller";

/// One parsed file: its id, the directory its relative paths start from, and its documents.
pub struct ParsedFile {
    pub file: FileId,
    pub dir: PathBuf,
    pub documents: Vec<Node>,
}

/// Lowers every document of every file. The workspace is `None` only when
/// there is no usable `Workspace` document; otherwise it is returned even with
/// errors (callers must check the problems).
pub fn lower(files: &[ParsedFile]) -> Lowered {
    let mut cx = Cx::default();
    let mut workspaces: Vec<WorkspaceDoc> = Vec::new();
    let mut registries: Vec<Registry> = Vec::new();
    // Names of every Registry document, also those whose spec has problems, so
    // that a reference to them is not reported as dangling too.
    let mut declared_registries: Vec<String> = Vec::new();
    let mut pull_secrets: Vec<PullSecret> = Vec::new();
    let mut pull_grants: Vec<PullGrant> = Vec::new();

    for parsed in files {
        cx.file = parsed.file.into();
        for document in &parsed.documents {
            let Some(header) = cx.header(document) else {
                continue;
            };
            match header.kind.as_str() {
                "Workspace" => {
                    let ws = cx.workspace(&header, &parsed.dir);
                    workspaces.push(ws);
                }
                "Registry" => {
                    declared_registries.push(header.name.value.clone());
                    if let Some(registry) = cx.registry(&header, &parsed.dir) {
                        registries.push(registry);
                    }
                }
                "PullSecret" => {
                    if let Some(secret) = cx.pull_secret(&header) {
                        pull_secrets.push(secret);
                    }
                }
                "PullGrant" => {
                    if let Some(grant) = cx.pull_grant(&header) {
                        pull_grants.push(grant);
                    }
                }
                _ => unreachable!("header() accepts only known kinds"),
            }
        }
    }

    let workspace = if workspaces.is_empty() {
        {
            if files.iter().any(|f| !f.documents.is_empty()) || cx.problems.is_empty() {
                cx.problems.push(
                    Problem::error(
                        crate::diag::codes::MISSING_WORKSPACE,
                        "no `Workspace` document found",
                    )
                    .help(format!(
                        "add one document:\n  apiVersion: {API_VERSION}\n  kind: Workspace\n  metadata:\n    name: my-workspace\n  spec: {{}}"
                    )),
                );
            }
        }
        None
    } else {
        {
            for extra in &workspaces[1..] {
                cx.problems.push(
                    Problem::error(
                        "pullwarden::spec::second_workspace",
                        "a workspace has exactly one `Workspace` document",
                    )
                    .at(&extra.name.origin, "second Workspace")
                    .also(&workspaces[0].name.origin, "first Workspace here")
                    .help("merge them, or point pullwarden at one workspace at a time"),
                );
            }
        }
        Some(workspaces.swap_remove(0))
    };

    check_unique(
        &mut cx.problems,
        "Registry",
        registries.iter().map(|r| (&r.name, &r.origin)),
    );
    check_unique(
        &mut cx.problems,
        "PullSecret",
        pull_secrets.iter().map(|r| (&r.name, &r.origin)),
    );
    check_unique(
        &mut cx.problems,
        "PullGrant",
        pull_grants.iter().map(|r| (&r.name, &r.origin)),
    );

    let mut registry_map = BTreeMap::new();
    for registry in registries {
        registry_map
            .entry(registry.name.clone())
            .or_insert(registry);
    }
    check_references(
        &mut cx.problems,
        &registry_map,
        &declared_registries,
        &pull_secrets,
    );

    let fleet = workspace.as_ref().is_some_and(|ws| ws.fleet);
    let workspace = workspace.map(|ws| Workspace {
        name: ws.name.value,
        scope: ws.scope,
        prune: ws.prune,
        registries: registry_map,
        pull_secrets,
        pull_grants,
        clusters: ws.clusters,
    });
    if let Some(ws) = &workspace {
        check_scope(&mut cx.problems, ws);
        check_clusters(&mut cx.problems, ws, fleet);
    }
    Lowered {
        workspace,
        problems: cx.problems,
        literal_secrets: cx.literal_secrets,
    }
}

/// What lowering produced.
pub struct Lowered {
    pub workspace: Option<Workspace>,
    pub problems: Vec<Problem>,
    /// Where secrets were written as literals: to be masked in every snippet.
    pub literal_secrets: Vec<Origin>,
}

struct WorkspaceDoc {
    name: Located<String>,
    scope: Scope,
    prune: bool,
    clusters: Vec<Cluster>,
    /// Whether `spec.clusters` was written (even if no entry was valid).
    fleet: bool,
}

struct Header<'n> {
    kind: String,
    name: Located<String>,
    spec: Option<&'n Node>,
}

#[derive(Default)]
struct Cx {
    file: FileId0,
    problems: Vec<Problem>,
    literal_secrets: Vec<Origin>,
    /// While lowering a Registry's spec: a value that is reported as unknown,
    /// duplicate or of the wrong type may be a credential, so it is masked.
    redact_values: bool,
}

/// `FileId` with a `Default`, for the context only.
#[derive(Clone, Copy)]
struct FileId0(FileId);

impl Default for FileId0 {
    fn default() -> Self {
        Self(FileId(0))
    }
}

impl From<FileId> for FileId0 {
    fn from(id: FileId) -> Self {
        Self(id)
    }
}

/// The fields of one mapping node, after unknown and duplicate keys were reported.
struct Fields<'n> {
    node: &'n Node,
    entries: Vec<(&'n str, &'n Node, &'n Node)>,
    /// Known fields that an unknown key looked like a typo of; they are not
    /// reported missing again.
    typos: Vec<&'static str>,
    /// How many keys were unknown (already reported).
    unknown: usize,
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|(_, _, v)| *v)
    }

    fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }
}

impl Cx {
    fn origin(&self, node: &Node) -> Origin {
        Origin {
            file: self.file.0,
            span: node.span.clone(),
        }
    }

    fn located<T>(&self, value: T, node: &Node) -> Located<T> {
        Located {
            value,
            origin: self.origin(node),
        }
    }

    fn push(&mut self, problem: Problem) {
        self.problems.push(problem);
    }

    fn wrong_type(&mut self, node: &Node, what: &str, expected: &str) {
        if self.redact_values {
            self.literal_secrets.push(Origin {
                file: self.file.0,
                span: extent(node),
            });
        }
        let problem = Problem::error(
            "pullwarden::spec::wrong_type",
            format!("`{what}` must be {expected}, not {}", node.value.describe()),
        )
        .at(&self.origin(node), format!("expected {expected}"));
        self.push(problem);
    }

    /// Checks a mapping's keys against `allowed`; reports unknown and duplicate keys.
    fn fields<'n>(
        &mut self,
        node: &'n Node,
        allowed: &[&'static str],
        what: &str,
    ) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a mapping");
            return None;
        };
        let mut out: Vec<(&'n str, &'n Node, &'n Node)> = Vec::new();
        let mut typos = Vec::new();
        let mut unknown = 0;
        for (key, value) in entries {
            let Value::String(name) = &key.value else {
                let problem = Problem::error(
                    "pullwarden::spec::wrong_type",
                    format!("keys of `{what}` must be strings"),
                )
                .at(&self.origin(key), "not a string key");
                self.push(problem);
                continue;
            };
            if self.redact_values {
                let known_once = allowed.contains(&name.as_str())
                    && !out.iter().any(|(k, _, _)| *k == name.as_str());
                if !known_once {
                    self.literal_secrets.push(Origin {
                        file: self.file.0,
                        span: extent(value),
                    });
                }
            }
            if let Some((_, first, _)) = out.iter().find(|(k, _, _)| *k == name.as_str()) {
                let problem = Problem::error(
                    "pullwarden::spec::duplicate_key",
                    format!("`{name}` appears twice in `{what}`"),
                )
                .at(&self.origin(key), "second occurrence")
                .also(&self.origin(first), "first occurrence");
                self.push(problem);
                continue;
            }
            if !allowed.contains(&name.as_str()) {
                let mut problem = Problem::error(
                    "pullwarden::spec::unknown_field",
                    format!("unknown field `{name}` in `{what}`"),
                )
                .at(&self.origin(key), "unknown field");
                problem = match suggest(name, allowed) {
                    Some(s) => {
                        typos.push(s);
                        problem.help(format!("did you mean `{s}`?"))
                    }
                    None => problem.help(format!("`{what}` accepts: {}", allowed.join(", "))),
                };
                self.push(problem);
                unknown += 1;
                continue;
            }
            out.push((name.as_str(), key, value));
        }
        Some(Fields {
            node,
            entries: out,
            typos,
            unknown,
        })
    }

    fn required<'n>(&mut self, fields: &Fields<'n>, key: &str, what: &str) -> Option<&'n Node> {
        let found = fields.get(key);
        if found.is_none() && !fields.typos.contains(&key) {
            let problem = Problem::error(
                "pullwarden::spec::missing_field",
                format!("`{what}` is missing the required field `{key}`"),
            )
            .at(&self.origin(fields.node), format!("`{key}` missing here"));
            self.push(problem);
        }
        found
    }

    /// A scalar read as text (numbers are accepted as their text).
    fn string(&mut self, node: &Node, what: &str) -> Option<Located<String>> {
        match &node.value {
            Value::String(s) | Value::Number(s) => Some(self.located(s.clone(), node)),
            _ => {
                self.wrong_type(node, what, "a string");
                None
            }
        }
    }

    fn non_empty_string(&mut self, node: &Node, what: &str) -> Option<Located<String>> {
        let value = self.string(node, what)?;
        if value.value.trim().is_empty() {
            let problem = Problem::error(
                "pullwarden::spec::invalid_value",
                format!("`{what}` must not be empty"),
            )
            .at(&value.origin, "empty");
            self.push(problem);
            return None;
        }
        Some(value)
    }

    /// The items of a list (none, reported, when it is not a list); an empty
    /// list is reported when `non_empty`.
    fn list_items<'n>(&mut self, node: &'n Node, what: &str, non_empty: bool) -> &'n [Node] {
        let Value::Seq(items) = &node.value else {
            self.wrong_type(node, what, "a list");
            return &[];
        };
        if non_empty && items.is_empty() {
            let problem = Problem::error(
                "pullwarden::spec::empty_list",
                format!("`{what}` must list at least one entry"),
            )
            .at(&self.origin(node), "empty list");
            self.push(problem);
        }
        items
    }

    fn string_list(&mut self, node: &Node, what: &str, non_empty: bool) -> Vec<Located<String>> {
        self.list_items(node, what, non_empty)
            .iter()
            .filter_map(|item| self.string(item, what))
            .collect()
    }

    fn enum_value<T: Copy>(&mut self, node: &Node, what: &str, choices: &[(&str, T)]) -> Option<T> {
        let value = self.string(node, what)?;
        if let Some((_, v)) = choices.iter().find(|(name, _)| *name == value.value) {
            return Some(*v);
        }
        let names: Vec<&str> = choices.iter().map(|(n, _)| *n).collect();
        let mut problem = Problem::error(
            "pullwarden::spec::invalid_value",
            format!("`{}` is not a valid `{what}`", value.value),
        )
        .at(
            &value.origin,
            format!("expected one of: {}", names.join(", ")),
        );
        if let Some(s) = suggest(&value.value, &names) {
            problem = problem.help(format!("did you mean `{s}`?"));
        }
        self.push(problem);
        None
    }

    /// A list of namespace names, globs and label selectors.
    fn namespace_patterns(
        &mut self,
        node: &Node,
        what: &str,
        non_empty: bool,
    ) -> Vec<Located<NamespacePattern>> {
        self.list_items(node, what, non_empty)
            .iter()
            .filter_map(|item| self.namespace_entry(item, what))
            .collect()
    }

    /// One namespace entry: a name or glob (a string), or a label selector (a mapping).
    fn namespace_entry(&mut self, node: &Node, what: &str) -> Option<Located<NamespacePattern>> {
        match &node.value {
            Value::Map(_) => self.label_selector(node, &format!("{what}[]"), "namespace"),
            Value::String(_) | Value::Number(_) => {
                let value = self.string(node, what)?;
                self.namespace_pattern(&value, what)
            }
            _ => {
                self.wrong_type(
                    node,
                    what,
                    "a namespace name, a glob or a label selector ({matchLabels, matchExpressions})",
                );
                None
            }
        }
    }

    /// A Kubernetes label selector: `{matchLabels: {k: v}, matchExpressions:
    /// [{key, operator, values}]}`, all requirements must hold. The empty selector
    /// (which would choose every `noun`: namespace or cluster) is refused: `"*"` says that.
    fn label_selector(
        &mut self,
        node: &Node,
        what: &str,
        noun: &str,
    ) -> Option<Located<NamespacePattern>> {
        let fields = self.fields(node, fields::LABEL_SELECTOR, what)?;
        if fields.entries.is_empty() && fields.unknown > 0 {
            return None;
        }
        let mut ok = fields.unknown == 0;
        let mut requirements = Vec::new();
        if let Some(labels) = fields.get("matchLabels") {
            ok &= self.match_labels(labels, &mut requirements);
        }
        if let Some(expressions) = fields.get("matchExpressions") {
            if let Value::Seq(items) = &expressions.value {
                for item in items {
                    match self.selector_requirement(item) {
                        Some(requirement) => requirements.push(requirement),
                        None => ok = false,
                    }
                }
            } else {
                self.wrong_type(expressions, "matchExpressions", "a list");
                ok = false;
            }
        }
        if ok && requirements.is_empty() {
            let problem = Problem::error(
                "pullwarden::spec::empty_selector",
                format!("an empty label selector in `{what}` would choose every {noun}"),
            )
            .at(&self.origin(node), "selects everything")
            .help(format!(
                "write `\"*\"` to mean every {noun}, or give `matchLabels` / `matchExpressions`"
            ));
            self.push(problem);
            return None;
        }
        ok.then(|| {
            self.located(
                NamespacePattern::Selector(LabelSelector::new(requirements)),
                node,
            )
        })
    }

    /// `matchLabels`: each entry an `In` requirement with one value.
    fn match_labels(&mut self, node: &Node, out: &mut Vec<SelectorRequirement>) -> bool {
        let mut labels = Labels::new();
        let ok = self.label_map(node, "matchLabels", &mut labels);
        out.extend(labels.into_iter().map(|(key, value)| SelectorRequirement {
            key,
            operator: SelectorOperator::In,
            values: [value].into(),
        }));
        ok
    }

    /// A mapping of label keys to label values (`matchLabels`, a cluster's
    /// `labels`); every valid entry is kept, `false` when any was not.
    fn label_map(&mut self, node: &Node, what: &str, out: &mut Labels) -> bool {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, what, "a mapping of label keys to values");
            return false;
        };
        let mut ok = true;
        let mut seen: Vec<&Node> = Vec::new();
        for (key_node, value_node) in entries {
            let Some(key) = self.label_key(key_node) else {
                ok = false;
                continue;
            };
            if let Some(first) = seen
                .iter()
                .find(|k| matches!(&k.value, Value::String(s) | Value::Number(s) if *s == key))
            {
                let problem = Problem::error(
                    "pullwarden::spec::duplicate_key",
                    format!("`{key}` appears twice in `{what}`"),
                )
                .at(&self.origin(key_node), "second occurrence")
                .also(&self.origin(first), "first occurrence");
                self.push(problem);
                ok = false;
                continue;
            }
            seen.push(key_node);
            match self.label_value(value_node, &format!("{what}.{key}")) {
                Some(value) => {
                    out.insert(key, value);
                }
                None => ok = false,
            }
        }
        ok
    }

    /// One `matchExpressions` entry.
    fn selector_requirement(&mut self, node: &Node) -> Option<SelectorRequirement> {
        let fields = self.fields(node, fields::SELECTOR_REQUIREMENT, "matchExpressions[]")?;
        let key = self
            .required(&fields, "key", "matchExpressions[]")
            .and_then(|k| self.label_key(k));
        let operator_node = self.required(&fields, "operator", "matchExpressions[]");
        let operator =
            operator_node.and_then(|o| self.enum_value(o, "operator", &SelectorOperator::ALL));
        let mut values_ok = true;
        let mut values = std::collections::BTreeSet::new();
        let values_node = fields.get("values");
        if let Some(list) = values_node {
            if let Value::Seq(items) = &list.value {
                for item in items {
                    match self.label_value(item, "values") {
                        Some(v) => {
                            values.insert(v);
                        }
                        None => values_ok = false,
                    }
                }
            } else {
                self.wrong_type(list, "values", "a list of label values");
                values_ok = false;
            }
        }
        let (key, operator) = (key?, operator?);
        if !values_ok || fields.unknown > 0 {
            return None;
        }
        let listed =
            values_node.is_some_and(|v| matches!(&v.value, Value::Seq(items) if !items.is_empty()));
        let name = SelectorOperator::ALL
            .iter()
            .find(|(_, op)| *op == operator)
            .map_or("", |(name, _)| *name);
        let problem = if operator.takes_values() && !listed {
            Some((
                format!("operator `{name}` needs at least one value in `values`"),
                values_node
                    .or(operator_node)
                    .map_or_else(|| self.origin(node), |v| self.origin(v)),
                "no values",
            ))
        } else if !operator.takes_values() && listed {
            Some((
                format!("operator `{name}` takes no `values`"),
                values_node.map_or_else(|| self.origin(node), |v| self.origin(v)),
                "values given",
            ))
        } else {
            None
        };
        if let Some((message, origin, label)) = problem {
            let problem = Problem::error("pullwarden::spec::selector_values", message)
                .at(&origin, label)
                .help("`In` and `NotIn` need a non-empty `values` list; `Exists` and `DoesNotExist` take none");
            self.push(problem);
            return None;
        }
        Some(SelectorRequirement {
            key,
            operator,
            values,
        })
    }

    /// A label key: a Kubernetes qualified name (`[prefix/]name`).
    fn label_key(&mut self, node: &Node) -> Option<String> {
        let key = self.string(node, "label key")?;
        if let Some(reason) = label_key_problem(&key.value) {
            let problem = Problem::error(
                "pullwarden::spec::invalid_label_key",
                format!("label key `{}` {reason}", key.value),
            )
            .at(&key.origin, "invalid label key")
            .help("a label key is an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit (e.g. `pullwarden.dev/exclude`)");
            self.push(problem);
            return None;
        }
        Some(key.value)
    }

    /// A label value: a string (quoted when it reads as a boolean), at most 63 characters.
    fn label_value(&mut self, node: &Node, what: &str) -> Option<String> {
        if let Value::Bool(b) = &node.value {
            let problem = Problem::error(
                "pullwarden::spec::wrong_type",
                format!("`{what}` must be a string, not a boolean"),
            )
            .at(&self.origin(node), "a boolean")
            .help(format!("label values are strings: quote it (`\"{b}\"`)"));
            self.push(problem);
            return None;
        }
        let value = self.string(node, what)?;
        if let Some(reason) = label_value_problem(&value.value) {
            let problem = Problem::error(
                "pullwarden::spec::invalid_label_value",
                format!("label value `{}` {reason}", value.value),
            )
            .at(&value.origin, "invalid label value")
            .help("a label value is empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit");
            self.push(problem);
            return None;
        }
        Some(value.value)
    }

    fn namespace_pattern(
        &mut self,
        value: &Located<String>,
        what: &str,
    ) -> Option<Located<NamespacePattern>> {
        match NamespacePattern::parse(&value.value) {
            Ok(pattern) => Some(Located {
                value: pattern,
                origin: value.origin.clone(),
            }),
            Err(reason) => {
                let (code, help) = if is_glob(&value.value) {
                    (
                        "pullwarden::spec::invalid_glob",
                        "globs use `*`, `?` and `[abc]`, matched against whole namespace names",
                    )
                } else {
                    (
                        "pullwarden::spec::invalid_name",
                        "namespace names are DNS labels: lowercase letters, digits and '-', at most 63 characters",
                    )
                };
                let problem =
                    Problem::error(code, format!("`{}` in `{what}` {reason}", value.value))
                        .at(&value.origin, "here")
                        .help(help);
                self.push(problem);
                None
            }
        }
    }

    fn check_name(
        &mut self,
        name: &Located<String>,
        what: &str,
        rule: fn(&str) -> Option<String>,
        help: &str,
    ) -> bool {
        match rule(&name.value) {
            None => true,
            Some(reason) => {
                let problem = Problem::error(
                    "pullwarden::spec::invalid_name",
                    format!("{what} `{}` {reason}", name.value),
                )
                .at(&name.origin, "invalid name")
                .help(help.to_string());
                self.push(problem);
                false
            }
        }
    }

    /// apiVersion, kind, metadata.name and spec of a document.
    fn header<'n>(&mut self, document: &'n Node) -> Option<Header<'n>> {
        let Value::Map(_) = &document.value else {
            let problem = Problem::error(
                "pullwarden::spec::not_a_document",
                format!(
                    "a workspace document must be a mapping, not {}",
                    document.value.describe()
                ),
            )
            .at(&self.origin(document), "not a mapping");
            self.push(problem);
            return None;
        };
        // Unknown top-level keys are reported once the kind is known to be valid,
        // so a document with a wrong kind reports only that.
        let Value::Map(entries) = &document.value else {
            return None;
        };
        let find = |key: &str| {
            entries.iter().find_map(|(k, v)| match &k.value {
                Value::String(s) if s == key => Some((k, v)),
                _ => None,
            })
        };
        let mut ok = true;
        match find("apiVersion") {
            None => {
                let problem = Problem::error(
                    "pullwarden::spec::missing_field",
                    "document is missing `apiVersion`",
                )
                .at(&self.origin(document), "`apiVersion` missing here")
                .help(format!("add `apiVersion: {API_VERSION}`"));
                self.push(problem);
                ok = false;
            }
            Some((_, v)) => {
                if let Some(version) = self.string(v, "apiVersion") {
                    if version.value != API_VERSION {
                        let problem = Problem::error(
                            "pullwarden::spec::api_version",
                            format!("unsupported apiVersion `{}`", version.value),
                        )
                        .at(&version.origin, format!("expected {API_VERSION}"))
                        .help("pullwarden reads only its own documents; keep other manifests out of the workspace directory");
                        self.push(problem);
                        ok = false;
                    }
                } else {
                    ok = false;
                }
            }
        }
        let kind = match find("kind") {
            None => {
                let problem = Problem::error(
                    "pullwarden::spec::missing_field",
                    "document is missing `kind`",
                )
                .at(&self.origin(document), "`kind` missing here")
                .help(format!("one of: {}", fields::KINDS.join(", ")));
                self.push(problem);
                None
            }
            Some((_, v)) => {
                let kind = self.string(v, "kind")?;
                if fields::KINDS.contains(&kind.value.as_str()) {
                    Some(kind.value)
                } else {
                    let mut problem = Problem::error(
                        "pullwarden::spec::unknown_kind",
                        format!("unknown kind `{}`", kind.value),
                    )
                    .at(
                        &kind.origin,
                        format!("expected one of: {}", fields::KINDS.join(", ")),
                    );
                    if let Some(s) = suggest(&kind.value, fields::KINDS) {
                        problem = problem.help(format!("did you mean `{s}`?"));
                    }
                    self.push(problem);
                    None
                }
            }
        };
        let kind = kind?;
        if !ok {
            return None;
        }
        let top = self.fields(document, fields::DOCUMENT, kind.as_str())?;
        let metadata_node = self.required(&top, "metadata", &kind);
        let spec = self.required(&top, "spec", &kind);
        let metadata = metadata_node.and_then(|m| self.fields(m, fields::METADATA, "metadata"))?;
        let name_node = self.required(&metadata, "name", "metadata")?;
        let name = self.non_empty_string(name_node, "metadata.name")?;
        Some(Header { kind, name, spec })
    }

    fn workspace(&mut self, header: &Header<'_>, dir: &Path) -> WorkspaceDoc {
        let name_ok = self.check_name(
            &header.name,
            "Workspace name",
            dns_label_problem,
            "the workspace name is written as a label value: lowercase letters, digits and '-', at most 63 characters",
        );
        let mut scope = Scope {
            include: Vec::new(),
            exclude: Vec::new(),
        };
        let mut prune = true;
        let mut clusters = Vec::new();
        let mut fleet = false;
        if let Some(spec) = header.spec
            && let Some(spec) = self.fields(spec, fields::WORKSPACE_SPEC, "Workspace.spec")
        {
            if let Some(ns) = spec.get("namespaces")
                && let Some(ns) = self.fields(ns, fields::NAMESPACE_SCOPE, "spec.namespaces")
            {
                if let Some(include) = ns.get("include") {
                    scope.include = self.namespace_patterns(include, "namespaces.include", true);
                }
                if let Some(exclude) = ns.get("exclude") {
                    scope.exclude = self.namespace_patterns(exclude, "namespaces.exclude", false);
                }
            }
            if let Some(p) = spec.get("prune") {
                match p.value {
                    Value::Bool(b) => prune = b,
                    _ => self.wrong_type(p, "prune", "true or false"),
                }
            }
            if let Some(list) = spec.get("clusters") {
                fleet = true;
                clusters = self
                    .list_items(list, "clusters", true)
                    .iter()
                    .filter_map(|item| self.cluster(item, dir))
                    .collect();
            }
        }
        if scope.include.is_empty() {
            scope.include.push(Located {
                value: NamespacePattern::parse("*").expect("`*` is a glob"),
                origin: header.name.origin.clone(),
            });
        }
        // Kept even with an invalid name, so that the problem is reported once.
        let _ = name_ok;
        WorkspaceDoc {
            name: header.name.clone(),
            scope,
            prune,
            clusters,
            fleet,
        }
    }

    /// One `Workspace.spec.clusters[]` entry: `{name, context, kubeconfig, labels}`.
    fn cluster(&mut self, node: &Node, dir: &Path) -> Option<Cluster> {
        let fields = self.fields(node, fields::CLUSTER, "clusters[]")?;
        let name = self
            .required(&fields, "name", "clusters[]")
            .and_then(|n| self.non_empty_string(n, "clusters[].name"));
        let name_ok = name.as_ref().is_some_and(|n| {
            self.check_name(
                n,
                "cluster name",
                dns_label_problem,
                "cluster names are DNS labels: lowercase letters, digits and '-', at most 63 characters",
            )
        });
        let context = fields
            .get("context")
            .and_then(|c| self.non_empty_string(c, "clusters[].context"));
        let kubeconfig = fields
            .get("kubeconfig")
            .and_then(|k| self.non_empty_string(k, "clusters[].kubeconfig"))
            .map(|path| dir.join(path.value));
        let mut labels = Labels::new();
        if let Some(l) = fields.get("labels") {
            self.label_map(l, "clusters[].labels", &mut labels);
        }
        let name = name?;
        // Kept despite problems in its other fields (already reported), so
        // that limits naming it are not reported as naming an unknown cluster.
        name_ok.then(|| Cluster {
            context: context.map_or_else(|| name.value.clone(), |c| c.value),
            name: name.value,
            origin: name.origin,
            kubeconfig,
            labels,
        })
    }

    /// `clusters` of a `PullSecret` or `PullGrant`: cluster names, globs and label
    /// selectors over the clusters' labels.
    fn cluster_patterns(&mut self, node: &Node) -> Vec<Located<ClusterPattern>> {
        self.list_items(node, "clusters", true)
            .iter()
            .filter_map(|item| self.cluster_entry(item))
            .collect()
    }

    fn cluster_entry(&mut self, node: &Node) -> Option<Located<ClusterPattern>> {
        match &node.value {
            Value::Map(_) => self.label_selector(node, "clusters[]", "cluster"),
            Value::String(_) | Value::Number(_) => {
                let value = self.string(node, "clusters")?;
                if !is_glob(&value.value) {
                    let name_ok = self.check_name(
                        &value,
                        "cluster name",
                        dns_label_problem,
                        "cluster names are DNS labels: lowercase letters, digits and '-', at most 63 characters",
                    );
                    if !name_ok {
                        return None;
                    }
                }
                match ClusterPattern::parse(&value.value) {
                    Ok(pattern) => Some(Located {
                        value: pattern,
                        origin: value.origin,
                    }),
                    Err(reason) => {
                        let problem = Problem::error(
                            "pullwarden::spec::invalid_glob",
                            format!("`{}` in `clusters` {reason}", value.value),
                        )
                        .at(&value.origin, "here")
                        .help(
                            "globs use `*`, `?` and `[abc]`, matched against whole cluster names",
                        );
                        self.push(problem);
                        None
                    }
                }
            }
            _ => {
                self.wrong_type(
                    node,
                    "clusters",
                    "a cluster name, a glob or a label selector ({matchLabels, matchExpressions})",
                );
                None
            }
        }
    }

    fn registry(&mut self, header: &Header<'_>, dir: &Path) -> Option<Registry> {
        self.check_name(
            &header.name,
            "Registry name",
            dns_subdomain_problem,
            "use lowercase letters, digits, '-' and '.'",
        );
        let spec_node = header.spec?;
        self.redact_values = true;
        let registry = self.registry_spec(header, spec_node, dir);
        self.redact_values = false;
        registry
    }

    fn registry_spec(
        &mut self,
        header: &Header<'_>,
        spec_node: &Node,
        dir: &Path,
    ) -> Option<Registry> {
        let all: Vec<&str> = fields::LOGIN_REGISTRY
            .iter()
            .chain(fields::DOCKER_CONFIG_REGISTRY)
            .chain(fields::DOCKERCFG_REGISTRY)
            .copied()
            .collect();
        let spec = self.fields(spec_node, &all, "Registry.spec")?;
        let login = fields::LOGIN_REGISTRY.iter().any(|k| spec.has(k));
        let config = spec.has("dockerConfigFile");
        let legacy = spec.has("dockercfgFile");
        let shapes = [login, config, legacy].iter().filter(|b| **b).count();
        let shape_help = "a Registry has exactly one of three shapes:\n  1. server + username + password (+ email)\n  2. dockerConfigFile: path/to/config.json\n  3. dockercfgFile: path/to/.dockercfg";
        if shapes == 0 && spec.unknown > 0 {
            // The unknown field was reported with what the spec accepts.
            return None;
        }
        if shapes != 1 {
            let message = if shapes == 0 {
                "Registry spec has none of its three shapes".to_string()
            } else {
                let mut present = Vec::new();
                if login {
                    present.push("server/username/password");
                }
                if config {
                    present.push("dockerConfigFile");
                }
                if legacy {
                    present.push("dockercfgFile");
                }
                format!("Registry spec mixes shapes: {}", present.join(" and "))
            };
            let problem = Problem::error("pullwarden::spec::registry_shape", message)
                .at(&self.origin(spec_node), "choose one shape")
                .help(shape_help);
            self.push(problem);
            return None;
        }
        let source = if config || legacy {
            let key = if config {
                "dockerConfigFile"
            } else {
                "dockercfgFile"
            };
            let path = self.non_empty_string(spec.get(key)?, key)?;
            let located = Located {
                value: dir.join(&path.value),
                origin: path.origin,
            };
            if config {
                RegistrySource::DockerConfigFile(located)
            } else {
                RegistrySource::DockercfgFile(located)
            }
        } else {
            // A password from a command may bring its username (JSON output):
            // then `username` may be left out.
            let password_from_command = spec.get("password").is_some_and(|node| {
                matches!(&node.value, Value::Map(entries)
                    if entries.iter().any(|(k, _)| matches!(&k.value, Value::String(s) if s == "fromCommand")))
            });
            let server = self.required(&spec, "server", "Registry.spec");
            let username = if password_from_command {
                spec.get("username")
            } else {
                self.required(&spec, "username", "Registry.spec")
            };
            let password = self.required(&spec, "password", "Registry.spec");
            let server = server.and_then(|s| self.non_empty_string(s, "server"));
            let password = password.and_then(|p| self.value_source(p, "password", dir, false));
            let username = match username {
                Some(u) => self.value_source(u, "username", dir, true),
                // Left out: the `username` of the password command's output.
                None => password
                    .clone()
                    .filter(|p| matches!(p.value, ValueSource::FromCommand(_))),
            };
            let email = spec.get("email").and_then(|e| self.string(e, "email"));
            if let Some(Located {
                value: ValueSource::Literal(user),
                origin,
            }) = &username
                && user.contains(':')
            {
                let problem = Problem::error(
                    "pullwarden::spec::colon_in_username",
                    "a registry username cannot contain ':'",
                )
                .at(origin, "contains ':'")
                .help("registries split `auth` on the first ':', so such a username cannot log in");
                self.push(problem);
            }
            RegistrySource::Login {
                server: server?,
                username: username?,
                password: password?,
                email,
            }
        };
        Some(Registry {
            name: header.name.value.clone(),
            origin: header.name.origin.clone(),
            source,
        })
    }

    fn value_source(
        &mut self,
        node: &Node,
        what: &str,
        dir: &Path,
        literal_allowed: bool,
    ) -> Option<Located<ValueSource>> {
        match &node.value {
            Value::String(_) | Value::Number(_) => {
                if literal_allowed {
                    let value = self.non_empty_string(node, what)?;
                    Some(Located {
                        value: ValueSource::Literal(value.value),
                        origin: value.origin,
                    })
                } else {
                    // Never echo the value: it is a password. Its span is masked
                    // in the source text before any snippet is rendered.
                    self.literal_secrets.push(self.origin(node));
                    let problem = Problem::error(
                        "pullwarden::spec::literal_password",
                        format!("a literal `{what}` is not allowed: secrets do not belong in git"),
                    )
                    .at(&self.origin(node), "literal secret")
                    .help(format!(
                        "use `{what}: {{fromEnv: VARIABLE}}` or `{what}: {{fromFile: path}}`, and remove the value from git history"
                    ));
                    self.push(problem);
                    None
                }
            }
            Value::Map(_) => {
                let fields = self.fields(node, fields::SECRET_SOURCE, what)?;
                let present: Vec<&str> = fields::SECRET_SOURCE
                    .iter()
                    .copied()
                    .filter(|k| fields.has(k))
                    .collect();
                match present.as_slice() {
                    ["fromEnv"] => {
                        let var = self.non_empty_string(fields.get("fromEnv")?, "fromEnv")?;
                        Some(self.located(ValueSource::FromEnv(var.value), node))
                    }
                    ["fromFile"] => {
                        let path = self.non_empty_string(fields.get("fromFile")?, "fromFile")?;
                        Some(self.located(ValueSource::FromFile(dir.join(path.value)), node))
                    }
                    ["fromCommand"] if !literal_allowed => {
                        let command = self.command_source(fields.get("fromCommand")?, dir)?;
                        Some(self.located(ValueSource::FromCommand(Box::new(command)), node))
                    }
                    ["fromCommand"] => {
                        let problem = Problem::error(
                            "pullwarden::spec::value_source",
                            format!("`{what}` cannot come from `fromCommand`"),
                        )
                        .at(&self.origin(node), "only a password comes from a command")
                        .help(format!(
                            "leave `{what}` out and let the password's command print JSON: {{\"username\": ..., \"password\": ..., \"expiresAt\": ...}}"
                        ));
                        self.push(problem);
                        None
                    }
                    [] if fields.unknown > 0 => None,
                    _ => {
                        let (message, label) = if literal_allowed {
                            (
                                format!("`{what}` needs exactly one of `fromEnv` and `fromFile`"),
                                "one of fromEnv / fromFile",
                            )
                        } else {
                            (
                                format!(
                                    "`{what}` needs exactly one of `fromEnv`, `fromFile` and `fromCommand`"
                                ),
                                "one of fromEnv / fromFile / fromCommand",
                            )
                        };
                        let problem = Problem::error("pullwarden::spec::value_source", message)
                            .at(&self.origin(node), label);
                        self.push(problem);
                        None
                    }
                }
            }
            _ => {
                let expected = if literal_allowed {
                    "a string, {fromEnv: VAR} or {fromFile: path}"
                } else {
                    "{fromEnv: VAR}, {fromFile: path} or {fromCommand: {command: [...]}}"
                };
                self.wrong_type(node, what, expected);
                None
            }
        }
    }

    /// `fromCommand: {command: [program, args...], timeout: 30s}`.
    fn command_source(&mut self, node: &Node, dir: &Path) -> Option<CommandSource> {
        let fields = self.fields(node, fields::COMMAND_SOURCE, "fromCommand")?;
        let command = self.required(&fields, "command", "fromCommand");
        let mut argv = Vec::new();
        let mut ok = command.is_some();
        if let Some(command) = command {
            for item in self.list_items(command, "command", true) {
                match self.non_empty_string(item, "command") {
                    Some(arg) if arg.value.contains('\0') => {
                        let problem = Problem::error(
                            "pullwarden::spec::invalid_value",
                            "an argument of `command` contains a NUL character",
                        )
                        .at(&arg.origin, "NUL");
                        self.push(problem);
                        ok = false;
                    }
                    Some(arg) => argv.push(arg.value),
                    None => ok = false,
                }
            }
        }
        let timeout = match fields.get("timeout") {
            None => Some(DEFAULT_COMMAND_TIMEOUT),
            Some(node) => self.command_timeout(node),
        };
        if !ok || argv.is_empty() {
            return None;
        }
        Some(CommandSource {
            argv,
            timeout: timeout?,
            dir: dir.to_path_buf(),
        })
    }

    /// `30s`, `2m`, `500ms`: at least 1 s, at most 10 min.
    fn command_timeout(&mut self, node: &Node) -> Option<std::time::Duration> {
        let text = self.string(node, "timeout")?;
        match parse_command_timeout(&text.value) {
            Ok(duration) => Some(duration),
            Err(message) => {
                let problem = Problem::error("pullwarden::spec::invalid_value", message)
                    .at(&text.origin, "not a timeout")
                    .help(
                        "write a duration with its unit between 1s and 10m, such as `30s` or `2m`",
                    );
                self.push(problem);
                None
            }
        }
    }

    fn pull_secret(&mut self, header: &Header<'_>) -> Option<PullSecret> {
        let name_ok = self.check_name(
            &header.name,
            "PullSecret name (the Secret's name)",
            dns_subdomain_problem,
            "Secret names are DNS subdomains: lowercase letters, digits, '-' and '.'",
        );
        let spec = self.fields(header.spec?, fields::PULL_SECRET_SPEC, "PullSecret.spec")?;
        let format = match spec.get("format") {
            None => Some(SecretFormat::DockerConfigJson),
            Some(node) => self.enum_value(
                node,
                "format",
                &[
                    ("dockerconfigjson", SecretFormat::DockerConfigJson),
                    ("dockercfg", SecretFormat::Dockercfg),
                ],
            ),
        };
        let registries = self
            .required(&spec, "registries", "PullSecret.spec")
            .map(|n| self.string_list(n, "registries", true))
            .unwrap_or_default();
        let mut seen: Vec<&Located<String>> = Vec::new();
        for registry in &registries {
            if let Some(first) = seen.iter().find(|r| r.value == registry.value) {
                let problem = Problem::error(
                    "pullwarden::spec::duplicate_entry",
                    format!("registry `{}` is listed twice", registry.value),
                )
                .at(&registry.origin, "second time")
                .also(&first.origin, "first time");
                self.push(problem);
            } else {
                seen.push(registry);
            }
        }
        let namespaces = self
            .required(&spec, "namespaces", "PullSecret.spec")
            .map(|n| self.namespace_patterns(n, "namespaces", true))
            .unwrap_or_default();
        let exclude_namespaces = spec
            .get("excludeNamespaces")
            .map(|n| self.namespace_patterns(n, "excludeNamespaces", false))
            .unwrap_or_default();
        let mut service_accounts: Vec<ServiceAccountLink> = Vec::new();
        if let Some(list) = spec.get("serviceAccounts") {
            if let Value::Seq(items) = &list.value {
                for item in items {
                    let Some(link) = self.service_account_link(item) else {
                        continue;
                    };
                    if let Some(first) = service_accounts
                        .iter()
                        .find(|l| l.name.value == link.name.value)
                    {
                        let problem = Problem::error(
                            "pullwarden::spec::duplicate_entry",
                            format!("service account `{}` is listed twice", link.name.value),
                        )
                        .at(&link.name.origin, "second time")
                        .also(&first.name.origin, "first time")
                        .help("list it once, with every purpose in `for`");
                        self.push(problem);
                        continue;
                    }
                    service_accounts.push(link);
                }
            } else {
                self.wrong_type(list, "serviceAccounts", "a list");
            }
        }
        let clusters = spec
            .get("clusters")
            .map(|n| self.cluster_patterns(n))
            .unwrap_or_default();
        let format = format?;
        name_ok.then(|| PullSecret {
            name: header.name.value.clone(),
            origin: header.name.origin.clone(),
            format,
            registries,
            namespaces,
            exclude_namespaces,
            service_accounts,
            clusters,
        })
    }

    fn service_account_link(&mut self, node: &Node) -> Option<ServiceAccountLink> {
        let fields = self.fields(node, fields::SERVICE_ACCOUNT_LINK, "serviceAccounts[]")?;
        let name = self.required(&fields, "name", "serviceAccounts[]");
        let name = name.and_then(|n| self.non_empty_string(n, "serviceAccounts[].name"));
        let name_ok = name.as_ref().is_some_and(|n| {
            self.check_name(
                n,
                "service account name",
                dns_subdomain_problem,
                "ServiceAccount names are DNS subdomains: lowercase letters, digits, '-' and '.'",
            )
        });
        let (mut pull, mut mount) = (true, false);
        let mut purposes_ok = true;
        if let Some(list) = fields.get("for") {
            let Value::Seq(items) = &list.value else {
                self.wrong_type(list, "for", "a list of pull / mount");
                return None;
            };
            if items.is_empty() {
                let problem = Problem::error(
                    "pullwarden::spec::empty_list",
                    "`for` must list `pull`, `mount` or both",
                )
                .at(&self.origin(list), "empty list");
                self.push(problem);
                purposes_ok = false;
            }
            (pull, mount) = (false, false);
            for item in items {
                match self.enum_value(item, "for", &[("pull", 0u8), ("mount", 1u8)]) {
                    Some(0) => pull = true,
                    Some(_) => mount = true,
                    None => purposes_ok = false,
                }
            }
        }
        let if_missing = match fields.get("ifMissing") {
            None => Some(IfMissing::Error),
            Some(n) => self.enum_value(
                n,
                "ifMissing",
                &[
                    ("error", IfMissing::Error),
                    ("skip", IfMissing::Skip),
                    ("create", IfMissing::Create),
                ],
            ),
        };
        let (name, if_missing) = (name?, if_missing?);
        (name_ok && purposes_ok).then_some(ServiceAccountLink {
            name,
            pull,
            mount,
            if_missing,
        })
    }

    fn pull_grant(&mut self, header: &Header<'_>) -> Option<PullGrant> {
        let name_ok = self.check_name(
            &header.name,
            "PullGrant name",
            dns_subdomain_problem,
            "use lowercase letters, digits, '-' and '.' (it becomes part of RoleBinding names)",
        );
        let spec = self.fields(header.spec?, fields::PULL_GRANT_SPEC, "PullGrant.spec")?;
        let role = match spec.get("role") {
            None => Some(Located {
                value: DEFAULT_ROLE.to_string(),
                origin: header.name.origin.clone(),
            }),
            Some(node) => self.non_empty_string(node, "role").filter(|role| {
                self.check_name(
                    role,
                    "role",
                    role_name_problem,
                    "a ClusterRole name, e.g. system:image-puller",
                )
            }),
        };
        let namespaces = self
            .required(&spec, "namespaces", "PullGrant.spec")
            .map(|n| self.namespace_patterns(n, "namespaces", true))
            .unwrap_or_default();
        let mut to: Vec<Located<Subject>> = Vec::new();
        if let Some(list) = self.required(&spec, "to", "PullGrant.spec") {
            match &list.value {
                Value::Seq(items) if items.is_empty() => {
                    let problem = Problem::error(
                        "pullwarden::spec::empty_list",
                        "`to` must list at least one subject",
                    )
                    .at(&self.origin(list), "empty list");
                    self.push(problem);
                }
                Value::Seq(items) => {
                    for item in items {
                        let Some(subject) = self.subject(item) else {
                            continue;
                        };
                        if let Some(first) = to.iter().find(|s| s.value == subject.value) {
                            let problem = Problem::error(
                                "pullwarden::spec::duplicate_entry",
                                "this subject is listed twice",
                            )
                            .at(&subject.origin, "second time")
                            .also(&first.origin, "first time");
                            self.push(problem);
                            continue;
                        }
                        to.push(subject);
                    }
                }
                _ => self.wrong_type(list, "to", "a list"),
            }
        }
        let clusters = spec
            .get("clusters")
            .map(|n| self.cluster_patterns(n))
            .unwrap_or_default();
        let role = role?;
        name_ok.then(|| PullGrant {
            name: header.name.value.clone(),
            origin: header.name.origin.clone(),
            role,
            namespaces,
            to,
            clusters,
        })
    }

    fn subject(&mut self, node: &Node) -> Option<Located<Subject>> {
        let fields = self.fields(node, fields::SUBJECT, "to[]")?;
        if fields.entries.is_empty() && fields.unknown > 0 {
            return None;
        }
        if fields.entries.len() != 1 {
            let problem = Problem::error(
                "pullwarden::spec::invalid_subject",
                "each entry of `to` has exactly one of serviceAccount, allServiceAccountsIn, group, user",
            )
            .at(&self.origin(node), "one key per entry");
            self.push(problem);
            return None;
        }
        let (key, _, value_node) = fields.entries[0];
        if key == "allServiceAccountsIn" && matches!(value_node.value, Value::Map(_)) {
            let selector = self.label_selector(value_node, key, "namespace")?;
            return Some(Located {
                value: Subject::AllServiceAccountsIn(selector.value),
                origin: selector.origin,
            });
        }
        let value = self.non_empty_string(value_node, key)?;
        let subject = match key {
            "serviceAccount" => {
                let Some((namespace, name)) = value.value.split_once('/') else {
                    let problem = Problem::error(
                        "pullwarden::spec::invalid_subject",
                        format!("`{}` is not `namespace/name`", value.value),
                    )
                    .at(&value.origin, "expected namespace/name")
                    .help("e.g. `serviceAccount: project-a/default`");
                    self.push(problem);
                    return None;
                };
                let ns_ok = self.check_name(
                    &Located {
                        value: namespace.to_string(),
                        origin: value.origin.clone(),
                    },
                    "namespace",
                    dns_label_problem,
                    "namespace names are DNS labels",
                );
                let sa_ok = self.check_name(
                    &Located {
                        value: name.to_string(),
                        origin: value.origin.clone(),
                    },
                    "service account name",
                    dns_subdomain_problem,
                    "ServiceAccount names are DNS subdomains",
                );
                if !(ns_ok && sa_ok) {
                    return None;
                }
                Subject::ServiceAccount {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                }
            }
            "allServiceAccountsIn" => {
                Subject::AllServiceAccountsIn(self.namespace_pattern(&value, key)?.value)
            }
            "group" => Subject::Group(value.value.clone()),
            _ => Subject::User(value.value.clone()),
        };
        Some(Located {
            value: subject,
            origin: value.origin,
        })
    }
}

/// From a node's start to the end of its last descendant (a flow list's span
/// covers only its first token).
fn extent(node: &Node) -> std::ops::Range<usize> {
    let children: Vec<&Node> = match &node.value {
        Value::Seq(items) => items.iter().collect(),
        Value::Map(entries) => entries.iter().flat_map(|(k, v)| [k, v]).collect(),
        _ => Vec::new(),
    };
    let mut range = node.span.clone();
    for child in children {
        let inner = extent(child);
        range.start = range.start.min(inner.start);
        range.end = range.end.max(inner.end);
    }
    range
}

fn check_unique<'a>(
    problems: &mut Vec<Problem>,
    kind: &str,
    items: impl Iterator<Item = (&'a String, &'a Origin)>,
) {
    let mut seen: BTreeMap<&str, &Origin> = BTreeMap::new();
    for (name, origin) in items {
        if let Some(first) = seen.get(name.as_str()) {
            problems.push(
                Problem::error(
                    "pullwarden::spec::duplicate_name",
                    format!("two {kind} documents are named `{name}`"),
                )
                .at(origin, "second definition")
                .also(first, "first defined here")
                .help(format!(
                    "{kind} names are unique across the whole workspace"
                )),
            );
        } else {
            seen.insert(name, origin);
        }
    }
}

fn check_references(
    problems: &mut Vec<Problem>,
    registries: &BTreeMap<String, Registry>,
    declared: &[String],
    pull_secrets: &[PullSecret],
) {
    let mut names: Vec<&str> = declared.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    for secret in pull_secrets {
        for reference in &secret.registries {
            if !names.contains(&reference.value.as_str()) {
                let mut problem = Problem::error(
                    "pullwarden::spec::unknown_registry",
                    format!(
                        "PullSecret `{}` names a Registry `{}` that no document defines",
                        secret.name, reference.value
                    ),
                )
                .at(&reference.origin, "unknown registry");
                problem = match suggest(&reference.value, &names) {
                    Some(s) => problem.help(format!("did you mean `{s}`?")),
                    None if names.is_empty() => {
                        problem.help("the workspace defines no Registry documents")
                    }
                    None => problem.help(format!("defined registries: {}", names.join(", "))),
                };
                problems.push(problem);
            }
        }
        // Two registries naming the same server, where the server is written in the workspace.
        let mut servers: BTreeMap<String, &Located<String>> = BTreeMap::new();
        for reference in &secret.registries {
            if servers.values().any(|r| r.value == reference.value) {
                continue; // listed twice: reported as a duplicate entry
            }
            if let Some(Registry {
                source: RegistrySource::Login { server, .. },
                ..
            }) = registries.get(&reference.value)
            {
                let key = normalize_server(&server.value);
                if let Some(first) = servers.get(&key) {
                    problems.push(
                        Problem::error(
                            "pullwarden::spec::duplicate_server",
                            format!(
                                "PullSecret `{}` merges two registries for server `{}`",
                                secret.name, server.value
                            ),
                        )
                        .at(&reference.origin, "second registry for that server")
                        .also(&first.origin, "first one here")
                        .help("one secret holds one entry per server; keep one of them"),
                    );
                } else {
                    servers.insert(key, reference);
                }
            }
        }
    }
}

/// Servers compare without scheme, trailing slash or case (`https://Quay.io/` = `quay.io`).
pub fn normalize_server(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    s.trim_end_matches('/').to_ascii_lowercase()
}

fn check_scope(problems: &mut Vec<Problem>, ws: &Workspace) {
    let targets = ws
        .pull_secrets
        .iter()
        .flat_map(|s| s.namespaces.iter().map(move |n| ("PullSecret", &s.name, n)))
        .chain(
            ws.pull_grants
                .iter()
                .flat_map(|g| g.namespaces.iter().map(move |n| ("PullGrant", &g.name, n))),
        );
    for (kind, name, pattern) in targets {
        if let NamespacePattern::Exact(ns) = &pattern.value
            && !ws.scope.contains(ns)
        {
            let mut problem = Problem::error(
                "pullwarden::spec::outside_scope",
                format!("{kind} `{name}` targets namespace `{ns}`, which is outside the workspace's scope"),
            )
            .at(&pattern.origin, "outside the scope");
            if let Some(first) = ws.scope.include.first() {
                problem = problem.also(&first.origin, "scope defined here");
            }
            problems.push(problem.help(
                "widen `Workspace.spec.namespaces`, or remove the namespace from this document",
            ));
        }
    }
}

/// Cluster names unique; cluster limits only in a fleet, each name limit
/// naming a declared cluster; globs and selectors that choose no cluster, and
/// documents whose limits choose none, warned about. `fleet`: whether
/// `spec.clusters` was written (when none of its entries was valid, the
/// limits are not checked: the entries' problems were reported).
fn check_clusters(problems: &mut Vec<Problem>, ws: &Workspace, fleet: bool) {
    use crate::diag::codes;
    let mut seen: BTreeMap<&str, &Origin> = BTreeMap::new();
    let mut targets: BTreeMap<(&str, Option<&Path>), &Cluster> = BTreeMap::new();
    for cluster in &ws.clusters {
        if let Some(first) = seen.get(cluster.name.as_str()) {
            problems.push(
                Problem::error(
                    codes::DUPLICATE_CLUSTER,
                    format!("two clusters are named `{}`", cluster.name),
                )
                .at(&cluster.origin, "second cluster")
                .also(first, "first cluster with that name")
                .help("cluster names are unique in `Workspace.spec.clusters`"),
            );
            continue;
        }
        seen.insert(&cluster.name, &cluster.origin);
        let target = (cluster.context.as_str(), cluster.kubeconfig.as_deref());
        if let Some(first) = targets.get(&target) {
            problems.push(
                Problem::error(
                    codes::DUPLICATE_CLUSTER_CONTEXT,
                    format!(
                        "clusters `{}` and `{}` use the same kubeconfig context `{}`",
                        first.name, cluster.name, cluster.context
                    ),
                )
                .at(&cluster.origin, "second cluster")
                .also(&first.origin, "first cluster with that context")
                .help("each cluster is planned and pruned on its own, so two entries for one context would undo each other's cluster limits: give each its own `context` (or `kubeconfig`)"),
            );
        } else {
            targets.insert(target, cluster);
        }
    }
    // In declaration order, each once; help texts show at most 20.
    let mut names: Vec<&str> = Vec::new();
    let mut known: std::collections::BTreeSet<&str> = std::collections::BTreeSet::new();
    for cluster in &ws.clusters {
        if known.insert(&cluster.name) {
            names.push(&cluster.name);
        }
    }
    let declared = if names.len() > 20 {
        format!("{} and {} more", names[..20].join(", "), names.len() - 20)
    } else {
        names.join(", ")
    };
    let limited = ws
        .pull_secrets
        .iter()
        .map(|s| ("PullSecret", &s.name, &s.clusters))
        .chain(
            ws.pull_grants
                .iter()
                .map(|g| ("PullGrant", &g.name, &g.clusters)),
        )
        .filter(|(_, _, limits)| !limits.is_empty());
    for (kind, name, limits) in limited {
        if fleet && ws.clusters.is_empty() {
            continue;
        }
        if ws.clusters.is_empty() {
            problems.push(
                Problem::error(
                    codes::CLUSTERS_WITHOUT_FLEET,
                    format!(
                        "{kind} `{name}` is limited to clusters, but the Workspace declares no `spec.clusters`"
                    ),
                )
                .at(&limits[0].origin, "cluster limit")
                .help("declare the clusters in `Workspace.spec.clusters`, or remove `clusters` from this document"),
            );
            continue;
        }
        let mut unmatched = Vec::new();
        for limit in limits {
            let chosen = match &limit.value {
                NamespacePattern::Exact(cluster) => known.contains(cluster.as_str()),
                pattern => ws
                    .clusters
                    .iter()
                    .any(|c| pattern.matches_labeled(&c.name, &c.labels)),
            };
            match &limit.value {
                NamespacePattern::Exact(cluster) if !chosen => {
                    let mut problem = Problem::error(
                        codes::UNKNOWN_CLUSTER,
                        format!("{kind} `{name}` names a cluster `{cluster}` that the Workspace does not declare"),
                    )
                    .at(&limit.origin, "unknown cluster");
                    // A typo is looked for among a reasonable number of names only.
                    let typo = if names.len() <= 1_000 {
                        suggest(cluster, &names)
                    } else {
                        None
                    };
                    problem = match typo {
                        Some(s) => problem.help(format!("did you mean `{s}`?")),
                        None => problem.help(format!("declared clusters: {declared}")),
                    };
                    problems.push(problem);
                }
                _ if !chosen => unmatched.push(limit),
                _ => {}
            }
        }
        if unmatched.is_empty() {
            continue;
        }
        let what = |limit: &Located<ClusterPattern>| {
            if limit.value.is_selector() {
                "selector"
            } else {
                "glob"
            }
        };
        if unmatched.len() == limits.len() {
            let mut problem = Problem::warning(
                codes::NO_CLUSTER_CHOSEN,
                format!(
                    "{kind} `{name}` is placed in no cluster: its `clusters` choose none of the declared clusters"
                ),
            );
            for (i, limit) in unmatched.iter().enumerate() {
                let text = format!("this {} matches no declared cluster", what(limit));
                problem = if i == 0 {
                    problem.at(&limit.origin, text)
                } else {
                    problem.also(&limit.origin, text)
                };
            }
            problems.push(problem.help(format!(
                "declared clusters: {declared}; a selector matches the clusters' `labels`"
            )));
        } else {
            for limit in unmatched {
                problems.push(
                    Problem::warning(
                        codes::CLUSTER_PATTERN_MATCHES_NOTHING,
                        format!(
                            "a cluster {} of {kind} `{name}` matches no declared cluster",
                            what(limit)
                        ),
                    )
                    .at(&limit.origin, "matches no cluster")
                    .help(format!(
                        "declared clusters: {declared}; a selector matches the clusters' `labels`"
                    )),
                );
            }
        }
    }
}

/// The closest candidate by edit distance, if it is close enough to be a typo.
pub fn suggest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (levenshtein(&word.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(d, c)| *d <= (c.len() / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = if ca == *cb {
                prev
            } else {
                1 + prev.min(row[j]).min(row[j + 1])
            };
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_only() {
        assert_eq!(
            suggest("namespace", fields::PULL_SECRET_SPEC),
            Some("namespaces")
        );
        assert_eq!(
            suggest("registires", fields::PULL_SECRET_SPEC),
            Some("registries")
        );
        assert_eq!(suggest("zzz", fields::PULL_SECRET_SPEC), None);
        assert_eq!(normalize_server("https://Quay.io/"), "quay.io");
    }

    const FLEET: &str = "apiVersion: pullwarden.dev/v1alpha1
kind: Workspace
metadata: {name: fleet}
spec:
  clusters:
    - name: prod-eu
      labels: {env: prod, region: eu}
    - name: prod-us
      context: admin@prod-us
      kubeconfig: kube/us.yaml
      labels: {env: prod}
    - name: dev
---
apiVersion: pullwarden.dev/v1alpha1
kind: Registry
metadata: {name: quay}
spec: {server: quay.io, username: robot, password: {fromEnv: QUAY_TOKEN}}
";

    fn load(extra: &str) -> crate::Loaded {
        crate::load_str(
            Path::new("/ws/fleet/workspace.yaml"),
            &format!("{FLEET}{extra}"),
            &crate::credentials::ProcessEnvironment,
        )
    }

    /// `(code, is_error, line)` of every problem.
    fn problems(loaded: &crate::Loaded) -> Vec<(&'static str, bool, usize)> {
        loaded
            .problems
            .iter()
            .map(|p| {
                let data = p.to_data(&loaded.sources);
                (p.code, p.is_error(), data.line.unwrap_or(0))
            })
            .collect()
    }

    fn secret(clusters: &str) -> String {
        format!(
            "---\napiVersion: pullwarden.dev/v1alpha1\nkind: PullSecret\nmetadata: {{name: pull}}\nspec:\n  registries: [quay]\n  namespaces: [team-a]\n  clusters: {clusters}\n"
        )
    }

    #[test]
    fn clusters_are_read_with_their_defaults() {
        let loaded = load(&secret("[prod-*, {matchLabels: {env: prod}}, dev]"));
        assert_eq!(problems(&loaded), []);
        let ws = loaded.workspace.unwrap();
        let clusters: Vec<(&str, &str, Option<&Path>, usize)> = ws
            .clusters
            .iter()
            .map(|c| {
                (
                    c.name.as_str(),
                    c.context.as_str(),
                    c.kubeconfig.as_deref(),
                    c.labels.len(),
                )
            })
            .collect();
        assert_eq!(
            clusters,
            [
                ("prod-eu", "prod-eu", None, 2),
                (
                    "prod-us",
                    "admin@prod-us",
                    Some(Path::new("/ws/fleet/kube/us.yaml")),
                    1
                ),
                ("dev", "dev", None, 0),
            ]
        );
        let limits: Vec<&str> = ws.pull_secrets[0]
            .clusters
            .iter()
            .map(|p| p.value.as_str())
            .collect();
        assert_eq!(limits, ["prod-*", "env=prod", "dev"]);
        // The origin of a cluster is its `name`.
        let (line, _) = loaded
            .sources
            .line_column(ws.clusters[1].origin.file, ws.clusters[1].origin.span.start);
        assert_eq!(line, 8);
    }

    #[test]
    fn a_workspace_without_clusters_has_none_and_limits_nothing() {
        let loaded = crate::load_str(
            Path::new("workspace.yaml"),
            "apiVersion: pullwarden.dev/v1alpha1\nkind: Workspace\nmetadata: {name: one}\nspec: {}\n",
            &crate::credentials::ProcessEnvironment,
        );
        assert_eq!(problems(&loaded), []);
        assert!(loaded.workspace.unwrap().clusters.is_empty());
    }

    #[test]
    fn a_glob_or_selector_choosing_no_cluster_is_a_warning() {
        // One of two entries matches nothing: a warning at that entry.
        let loaded = load(&secret("[dev, {matchLabels: {env: staging}}]"));
        assert_eq!(
            problems(&loaded),
            [(
                crate::diag::codes::CLUSTER_PATTERN_MATCHES_NOTHING,
                false,
                25
            )]
        );
        // Every entry matches nothing: one warning for the document.
        let loaded = load(&secret(
            "[\"qa-*\", {matchExpressions: [{key: env, operator: In, values: [qa]}]}]",
        ));
        assert_eq!(
            problems(&loaded),
            [(crate::diag::codes::NO_CLUSTER_CHOSEN, false, 25)]
        );
        let problem = &loaded.problems[0];
        assert_eq!(
            problem.help.as_deref(),
            Some(
                "declared clusters: prod-eu, prod-us, dev; a selector matches the clusters' `labels`"
            )
        );
        assert_eq!(
            (problem.primary.is_some(), problem.secondary.len()),
            (true, 1),
            "both entries are pointed at"
        );
        let ws = loaded.workspace.unwrap();
        assert_eq!(
            ws.clusters_chosen_by(&ws.pull_secrets[0].clusters).count(),
            0
        );
        // `NotIn` matches clusters without the label.
        let loaded = load(&secret(
            "[{matchExpressions: [{key: region, operator: NotIn, values: [eu]}]}]",
        ));
        assert_eq!(problems(&loaded), []);
        let ws = loaded.workspace.unwrap();
        let chosen: Vec<&str> = ws
            .clusters_chosen_by(&ws.pull_secrets[0].clusters)
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(chosen, ["prod-us", "dev"]);
    }

    #[test]
    fn a_cluster_with_a_bad_field_is_still_declared() {
        let extra = secret("[prod-us]");
        let text = format!("{FLEET}{extra}").replace("context: admin@prod-us", "context: [a]");
        let loaded = crate::load_str(
            Path::new("workspace.yaml"),
            &text,
            &crate::credentials::ProcessEnvironment,
        );
        // Only the wrong type: `prod-us` is not also an unknown cluster.
        assert_eq!(
            problems(&loaded),
            [("pullwarden::spec::wrong_type", true, 9)]
        );
    }

    #[test]
    fn limits_are_not_checked_when_no_cluster_entry_is_valid() {
        let text = format!("{FLEET}{}", secret("[prod-us]"));
        let start = text.find("    - name: prod-eu").unwrap();
        let end = text.find("---").unwrap();
        let text = format!("{}    - name: Prod\n{}", &text[..start], &text[end..]);
        let loaded = crate::load_str(
            Path::new("workspace.yaml"),
            &text,
            &crate::credentials::ProcessEnvironment,
        );
        assert_eq!(
            problems(&loaded),
            [("pullwarden::spec::invalid_name", true, 6)]
        );
    }
}

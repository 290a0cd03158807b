//! Pulls from OpenShift's integrated registry: the first part of the image
//! path is the project (namespace), the rest the image stream, and the
//! registry lets a service account pull when RBAC allows `get` on
//! `imagestreams/layers` (API group `image.openshift.io`, or `""` for the
//! legacy API) in that namespace, for that stream.
//!
//! The API server's SubjectAccessReview is the answer; this module names the
//! bindings that grant it, from plain data.

use crate::live::RbacSubject;

use super::ImageRef;

/// Where OpenShift's integrated registry answers inside the cluster.
pub const DEFAULT_INTERNAL_REGISTRY: &str = "image-registry.openshift-image-registry.svc:5000";

/// The project and image stream of an image in the integrated registry at
/// `internal_host`, or `None` for any other image.
pub fn internal_project(image: &ImageRef, internal_host: &str) -> Option<(String, String)> {
    let path = image
        .repository
        .strip_prefix(internal_host)?
        .strip_prefix('/')?;
    let (project, stream) = path.split_once('/')?;
    (!project.is_empty() && !stream.is_empty()).then(|| (project.to_owned(), stream.to_owned()))
}

/// The user name and groups a service account authenticates as.
pub fn service_account_user(namespace: &str, name: &str) -> (String, Vec<String>) {
    (
        format!("system:serviceaccount:{namespace}:{name}"),
        vec![
            "system:serviceaccounts".to_owned(),
            format!("system:serviceaccounts:{namespace}"),
            "system:authenticated".to_owned(),
        ],
    )
}

/// Whether a binding subject names the service account `namespace/name`,
/// directly or through one of its groups.
pub fn subject_matches(subject: &RbacSubject, namespace: &str, name: &str) -> bool {
    let (user, groups) = service_account_user(namespace, name);
    match subject.kind.as_str() {
        "ServiceAccount" => subject.name == name && subject.namespace.as_deref() == Some(namespace),
        "User" => subject.name == user,
        "Group" => groups.contains(&subject.name),
        _ => false,
    }
}

/// One rule of a (Cluster)Role, as plain lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

/// Whether a rule allows pulling `stream`: verb `get` on `imagestreams/layers`
/// in `image.openshift.io` (wildcards as RBAC has them: `*` for verbs, groups
/// and resources, `*/layers`; an empty `resourceNames` allows every name).
/// The legacy `""` group that OpenShift's roles also list grants no pull: the
/// registry asks about `image.openshift.io`.
pub fn rule_allows_pull(rule: &Rule, stream: &str) -> bool {
    let any = |list: &[String], wanted: &[&str]| {
        list.iter()
            .any(|v| v == "*" || wanted.contains(&v.as_str()))
    };
    any(&rule.verbs, &["get"])
        && any(&rule.api_groups, &["image.openshift.io"])
        && any(&rule.resources, &["imagestreams/layers", "*/layers"])
        && (rule.resource_names.is_empty() || rule.resource_names.iter().any(|n| n == stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(list: &[&str]) -> Vec<String> {
        list.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn finds_the_project_of_an_internal_image() {
        let image = super::super::image_ref::parse(
            "image-registry.openshift-image-registry.svc:5000/project-b/app:v1",
        )
        .expect("valid");
        assert_eq!(
            internal_project(&image, DEFAULT_INTERNAL_REGISTRY),
            Some(("project-b".to_owned(), "app".to_owned()))
        );
        let other = super::super::image_ref::parse("quay.io/project-b/app").expect("valid");
        assert_eq!(internal_project(&other, DEFAULT_INTERNAL_REGISTRY), None);
        let near = super::super::image_ref::parse(
            "image-registry.openshift-image-registry.svc:50000/project-b/app",
        )
        .expect("valid");
        assert_eq!(internal_project(&near, DEFAULT_INTERNAL_REGISTRY), None);
    }

    #[test]
    fn subjects_match_directly_or_through_groups() {
        let sa = RbacSubject::service_account("a", "default");
        assert!(subject_matches(&sa, "a", "default"));
        assert!(!subject_matches(&sa, "b", "default"));
        assert!(subject_matches(
            &RbacSubject::group("system:serviceaccounts:a"),
            "a",
            "x"
        ));
        assert!(!subject_matches(
            &RbacSubject::group("system:serviceaccounts:b"),
            "a",
            "x"
        ));
        assert!(subject_matches(
            &RbacSubject::group("system:authenticated"),
            "a",
            "x"
        ));
    }

    #[test]
    fn rules_allow_get_on_layers_with_wildcards() {
        let puller = Rule {
            verbs: strings(&["get"]),
            api_groups: strings(&["image.openshift.io", ""]),
            resources: strings(&["imagestreams/layers"]),
            resource_names: Vec::new(),
        };
        assert!(rule_allows_pull(&puller, "app"));
        let star = Rule {
            verbs: strings(&["*"]),
            api_groups: strings(&["*"]),
            resources: strings(&["*/layers"]),
            resource_names: strings(&["app"]),
        };
        assert!(rule_allows_pull(&star, "app"));
        assert!(!rule_allows_pull(&star, "other"));
        let list_only = Rule {
            verbs: strings(&["list"]),
            ..puller.clone()
        };
        assert!(!rule_allows_pull(&list_only, "app"));
        let streams = Rule {
            resources: strings(&["imagestreams"]),
            ..puller.clone()
        };
        assert!(!rule_allows_pull(&streams, "app"));
        let legacy_only = Rule {
            api_groups: strings(&[""]),
            ..puller
        };
        assert!(
            !rule_allows_pull(&legacy_only, "app"),
            "the core group alone grants no pull"
        );
    }
}

//! The ServiceAccount admission plugin's pull-secret rule
//! (`plugin/pkg/admission/serviceaccount/admission.go`, `Admit`):
//!
//! - only on **create** (a pod is never updated with its ServiceAccount's
//!   secrets later, so a pod created before its ServiceAccount was linked
//!   never gets the new secret until it is recreated);
//! - only when the pod lists **no** `imagePullSecrets` itself (the lists are
//!   not merged);
//! - never for mirror pods (static pods the kubelet mirrors);
//! - the ServiceAccount's names are copied in order (duplicates and empty
//!   names included), from the pod's `serviceAccountName`, or `default`.
//!   A missing ServiceAccount forbids the create altogether.

/// The pod's `spec.imagePullSecrets` right after admission of a create.
pub fn pull_secrets_at_creation<S: AsRef<str>>(
    pod_lists: &[S],
    service_account_lists: &[S],
    mirror_pod: bool,
) -> Vec<String> {
    let source = if mirror_pod || !pod_lists.is_empty() {
        pod_lists
    } else {
        service_account_lists
    };
    source.iter().map(|s| s.as_ref().to_string()).collect()
}

/// The secrets a ServiceAccount lists *now* that a pod of it does not have,
/// in the ServiceAccount's order. Only meaningful for a pod whose list came
/// from its ServiceAccount (see [`pull_secrets_at_creation`]): such a pod was
/// created before these were added, and only a new pod gets them.
pub fn missed_since_creation<S: AsRef<str>>(
    pod_has: &[S],
    service_account_lists: &[S],
) -> Vec<String> {
    service_account_lists
        .iter()
        .map(AsRef::as_ref)
        .filter(|name| !name.is_empty() && !pod_has.iter().any(|p| p.as_ref() == *name))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_empty_pod_list_takes_the_service_accounts() {
        let sa = ["a", "", "b", "a"];
        assert_eq!(
            pull_secrets_at_creation(&[], &sa, false),
            vec!["a", "", "b", "a"]
        );
        assert_eq!(
            pull_secrets_at_creation(&["own"], &["a", "b"], false),
            vec!["own"]
        );
        assert_eq!(
            pull_secrets_at_creation(&[], &["a"], true),
            Vec::<String>::new()
        );
        assert_eq!(
            pull_secrets_at_creation::<&str>(&[], &[], false),
            Vec::<String>::new()
        );
    }

    #[test]
    fn secrets_added_after_creation_are_missed() {
        assert_eq!(
            missed_since_creation(&["a"], &["a", "b", "", "c"]),
            vec!["b", "c"]
        );
        assert_eq!(
            missed_since_creation(&["a", "b"], &["b", "a"]),
            Vec::<String>::new()
        );
    }
}

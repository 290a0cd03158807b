//! Pulls from OpenShift's integrated registry: the first part of the image
//! path is the project (namespace), the rest the image stream, and the
//! registry lets a service account pull when RBAC allows `get` on
//! `imagestreams/layers` (API group `image.openshift.io`, or `""` for the
//! legacy API) in that namespace, for that stream.
//!
//! The API server's SubjectAccessReview is the answer; `pullwarden-rbac`
//! names the bindings that grant it.

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

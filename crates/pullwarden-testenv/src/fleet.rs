//! Several control planes at once, for fleet tests: each a dedicated local
//! control plane of its own (never the external cluster), started together,
//! and one kubeconfig with a context per control plane, named after it,
//! acting as that control plane's admin.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kube::config::{Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext};

use crate::{ADMIN_CONTEXT, Options, TestEnv};

/// Named control planes and the kubeconfig reaching them all.
pub struct Fleet {
    members: Vec<(String, TestEnv)>,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

impl Fleet {
    /// Starts one control plane per name, all at once, and writes the
    /// kubeconfig (context `NAME` for each, as its admin).
    pub async fn start(names: &[&str]) -> Result<Fleet> {
        let mut seen = std::collections::BTreeSet::new();
        for name in names {
            if !seen.insert(*name) {
                bail!("the fleet names {name} twice");
            }
        }
        let started = futures_join(names.iter().map(|_| TestEnv::dedicated(Options::default())))
            .await
            .into_iter()
            .collect::<Result<Vec<TestEnv>>>()?;
        let members: Vec<(String, TestEnv)> = names
            .iter()
            .map(|name| (*name).to_owned())
            .zip(started)
            .collect();
        let dir = tempfile::Builder::new()
            .prefix("pullwarden-fleet-")
            .tempdir()?;
        let kubeconfig = dir.path().join("kubeconfig");
        let mut merged = Kubeconfig::default();
        for (name, env) in &members {
            let one = Kubeconfig::read_from(env.kubeconfig())
                .with_context(|| format!("reading {}", env.kubeconfig().display()))?;
            let context = one
                .contexts
                .iter()
                .find(|c| c.name == ADMIN_CONTEXT)
                .and_then(|c| c.context.clone())
                .context("no admin context")?;
            let cluster = one
                .clusters
                .iter()
                .find(|c| c.name == context.cluster)
                .and_then(|c| c.cluster.clone())
                .context("no admin cluster")?;
            let user = one
                .auth_infos
                .iter()
                .find(|u| Some(&u.name) == context.user.as_ref())
                .and_then(|u| u.auth_info.clone())
                .context("no admin user")?;
            merged.clusters.push(NamedCluster {
                name: name.clone(),
                cluster: Some(cluster),
                other: std::collections::BTreeMap::default(),
            });
            merged.auth_infos.push(NamedAuthInfo {
                name: name.clone(),
                auth_info: Some(user),
                other: std::collections::BTreeMap::default(),
            });
            merged.contexts.push(NamedContext {
                name: name.clone(),
                context: Some(kube::config::Context {
                    cluster: name.clone(),
                    user: Some(name.clone()),
                    ..context
                }),
                other: std::collections::BTreeMap::default(),
            });
        }
        merged.current_context = members.first().map(|(name, _)| name.clone());
        merged.api_version = Some("v1".to_owned());
        merged.kind = Some("Config".to_owned());
        std::fs::write(&kubeconfig, serde_json::to_string_pretty(&merged)?)?;
        // The merged file must reach every control plane as its admin.
        for (name, _) in &members {
            let client = crate::client_for(&kubeconfig, name).await?;
            client
                .apiserver_version()
                .await
                .with_context(|| format!("context {name} of the fleet kubeconfig"))?;
        }
        Ok(Fleet {
            members,
            kubeconfig,
            _dir: dir,
        })
    }

    /// The kubeconfig with a context per control plane, named after it.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// The names, in the order given.
    pub fn names(&self) -> Vec<&str> {
        self.members.iter().map(|(name, _)| name.as_str()).collect()
    }

    /// The control plane named `name`.
    ///
    /// # Panics
    /// When the fleet has no such member.
    pub fn env(&self, name: &str) -> &TestEnv {
        match self.members.iter().find(|(n, _)| n == name) {
            Some((_, env)) => env,
            None => panic!("no fleet member {name}"),
        }
    }

    /// Stops the control plane named `name` (its context stays in the
    /// kubeconfig and no longer answers).
    ///
    /// # Panics
    /// When the fleet has no such member.
    pub fn stop(&mut self, name: &str) {
        match self.members.iter_mut().find(|(n, _)| n == name) {
            Some((_, env)) => env.stop(),
            None => panic!("no fleet member {name}"),
        }
    }
}

/// Runs the futures concurrently and returns their results in order.
async fn futures_join<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut results = Vec::with_capacity(handles.len());
    for handle in handles {
        results.push(
            handle
                .await
                .expect("a control plane start-up task panicked"),
        );
    }
    results
}

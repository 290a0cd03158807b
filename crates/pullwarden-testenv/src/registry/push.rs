//! Pushing a tiny image through the registry API (no docker): two blob
//! uploads (POST, then PUT with `?digest=`) and a PUT of the OCI manifest.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http::{HeaderMap, Request};
use http_body_util::{BodyExt as _, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use super::User;

pub(crate) struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl HttpClient {
    /// A client trusting only the test CA.
    pub(crate) fn new(ca_pem: &str) -> Result<HttpClient> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert?)?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .build();
        Ok(HttpClient {
            inner: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    pub(crate) async fn send(
        &self,
        method: &str,
        url: &str,
        authorization: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Answer> {
        let mut request = Request::builder().method(method).uri(url);
        if let Some(authorization) = authorization {
            request = request.header("authorization", authorization);
        }
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        let request = request.body(Full::new(Bytes::from(body)))?;
        let exchange = async {
            let response = self.inner.request(request).await?;
            let (parts, body) = response.into_parts();
            let body = body.collect().await?.to_bytes();
            anyhow::Ok(Answer {
                status: parts.status.as_u16(),
                headers: parts.headers,
                body,
            })
        };
        tokio::time::timeout(Duration::from_secs(30), exchange)
            .await
            .context("no answer within 30 s")?
    }
}

pub(crate) fn basic(user: &User) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", user.name, user.password))
    )
}

fn digest(data: &[u8]) -> String {
    let hash = Sha256::digest(data);
    let mut hex = String::with_capacity(71);
    hex.push_str("sha256:");
    for byte in hash {
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

pub(crate) async fn tiny_image(
    client: &HttpClient,
    base_url: &str,
    repository: &str,
    tag: &str,
    authorization: &str,
) -> Result<String> {
    // an empty tar archive: two 512-byte zero blocks
    let layer = vec![0u8; 1024];
    let layer_digest = digest(&layer);
    let config = json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Labels": {"dev.pullwarden.testenv.ref": format!("{repository}:{tag}")}},
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
    })
    .to_string()
    .into_bytes();
    let config_digest = digest(&config);
    for blob in [&layer, &config] {
        upload_blob(client, base_url, repository, authorization, blob).await?;
    }
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.len(),
        }],
    })
    .to_string()
    .into_bytes();
    let manifest_digest = digest(&manifest);
    let answer = client
        .send(
            "PUT",
            &format!("{base_url}/v2/{repository}/manifests/{tag}"),
            Some(authorization),
            Some("application/vnd.oci.image.manifest.v1+json"),
            manifest,
        )
        .await?;
    if answer.status != 201 {
        bail!(
            "PUT manifest: HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let echoed = answer
        .headers
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok());
    if echoed != Some(manifest_digest.as_str()) {
        bail!("the registry answered digest {echoed:?}, expected {manifest_digest}");
    }
    Ok(manifest_digest)
}

async fn upload_blob(
    client: &HttpClient,
    base_url: &str,
    repository: &str,
    authorization: &str,
    blob: &[u8],
) -> Result<()> {
    let answer = client
        .send(
            "POST",
            &format!("{base_url}/v2/{repository}/blobs/uploads/"),
            Some(authorization),
            None,
            Vec::new(),
        )
        .await?;
    if answer.status != 202 {
        bail!(
            "POST blob upload: HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    let location = answer
        .headers
        .get("location")
        .and_then(|v| v.to_str().ok())
        .context("blob upload without Location")?;
    let location = if location.starts_with('/') {
        format!("{base_url}{location}")
    } else {
        location.to_owned()
    };
    let separator = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{separator}digest={}", digest(blob));
    let answer = client
        .send(
            "PUT",
            &url,
            Some(authorization),
            Some("application/octet-stream"),
            blob.to_vec(),
        )
        .await?;
    if answer.status != 201 {
        bail!(
            "PUT blob: HTTP {}: {}",
            answer.status,
            String::from_utf8_lossy(&answer.body)
        );
    }
    Ok(())
}

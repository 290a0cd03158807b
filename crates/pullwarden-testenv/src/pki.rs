//! The control plane's PKI: one CA, a serving leaf, client certificates and the
//! service-account signing key, all written as PEM files into the state dir.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate and its private key, as PEM text.
pub struct Pem {
    pub cert: String,
    pub key: String,
}

/// Paths and PEM contents of everything the servers and clients need.
pub struct Pki {
    pub ca_file: PathBuf,
    pub ca_pem: String,
    pub serving_cert_file: PathBuf,
    pub serving_key_file: PathBuf,
    pub sa_key_file: PathBuf,
    pub sa_pub_file: PathBuf,
    pub admin: Pem,
    pub user: Pem,
}

impl Pki {
    /// Generates a fresh PKI into `dir`. `admin_cn`/`user_cn` become the users'
    /// names; the admin is in `system:masters`, the user in no group.
    pub fn generate(dir: &Path, admin_cn: &str, user_cn: &str) -> Result<Pki> {
        std::fs::create_dir_all(dir)?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "pullwarden-testenv-ca");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let ca_pem = ca_cert.pem();
        let issuer = Issuer::new(ca_params, ca_key);

        // Serving leaf: CA:FALSE, serverAuth, SAN 127.0.0.1 + localhost (rustls
        // refuses a CA certificate used as end entity).
        let serving_key = KeyPair::generate()?;
        let mut serving = CertificateParams::new(vec!["localhost".to_owned()])?;
        serving
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        serving
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        serving.is_ca = IsCa::ExplicitNoCa;
        serving.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        serving.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let serving_cert = serving.signed_by(&serving_key, &issuer)?;

        let admin = client_cert(&issuer, admin_cn, &["system:masters"])?;
        let user = client_cert(&issuer, user_cn, &[])?;

        // ECDSA P-256 key for service-account tokens: kube-apiserver reads the
        // PKCS#8 private key for signing and the SPKI public key for verifying.
        let sa_key = KeyPair::generate()?;

        let write = |name: &str, text: &str| -> Result<PathBuf> {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        };
        Ok(Pki {
            ca_file: write("ca.crt", &ca_pem)?,
            serving_cert_file: write("serving.crt", &serving_cert.pem())?,
            serving_key_file: write("serving.key", &serving_key.serialize_pem())?,
            sa_key_file: write("sa.key", &sa_key.serialize_pem())?,
            sa_pub_file: write("sa.pub", &sa_key.public_key_pem())?,
            ca_pem,
            admin,
            user,
        })
    }
}

fn client_cert(issuer: &Issuer<'_, KeyPair>, cn: &str, groups: &[&str]) -> Result<Pem> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name.push(DnType::CommonName, cn);
    for group in groups {
        params
            .distinguished_name
            .push(DnType::OrganizationName, *group);
    }
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, issuer)?;
    Ok(Pem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

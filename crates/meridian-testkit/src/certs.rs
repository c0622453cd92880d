//! Test certificates: a real CA and leaves it signs.
//!
//! TLS stacks reject a self-signed leaf used as its own trust anchor, so tests get a CA
//! (`CA:TRUE`) and leaves with `CA:FALSE`, server-auth EKU and SAN names, like production.

use std::fs;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate authority for tests.
pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A leaf certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct Leaf {
    /// The leaf certificate alone (PEM).
    pub cert_pem: String,
    /// The leaf's private key (PKCS#8 PEM).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA with a fresh key; `name` becomes its common name.
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().expect("generate CA key");
        let cert = params.self_signed(&key).expect("self-sign CA");
        TestCa { issuer: Issuer::new(params, key), cert_pem: cert.pem() }
    }

    /// The CA certificate (PEM), to use as a trust anchor.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a server leaf (`CA:FALSE`) for these DNS names (wildcards allowed) plus IP 127.0.0.1.
    pub fn issue(&self, dns_names: &[&str]) -> Leaf {
        let mut params = CertificateParams::default();
        let common_name = dns_names.first().copied().unwrap_or("localhost");
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        for name in dns_names {
            let dns = (*name).to_string().try_into().expect("valid DNS name");
            params.subject_alt_names.push(SanType::DnsName(dns));
        }
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        let key = KeyPair::generate().expect("generate leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign leaf");
        Leaf { cert_pem: cert.pem(), key_pem: key.serialize_pem() }
    }

    /// Writes the CA certificate to `dir/<file_name>` and returns its path.
    pub fn write_cert(&self, dir: &Path, file_name: &str) -> PathBuf {
        let path = dir.join(file_name);
        fs::write(&path, &self.cert_pem).expect("write CA certificate");
        path
    }
}

impl Leaf {
    /// Writes `cert.pem` and `key.pem` into `dir`; returns `(cert_path, key_path)`.
    pub fn write_to(&self, dir: &Path) -> (PathBuf, PathBuf) {
        self.write_files(dir.join("cert.pem"), dir.join("key.pem"))
    }

    /// Writes `<stem>.crt.pem` and `<stem>.key.pem` into `dir`, for several leaves in one directory.
    pub fn write_named(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        self.write_files(dir.join(format!("{stem}.crt.pem")), dir.join(format!("{stem}.key.pem")))
    }

    fn write_files(&self, cert: PathBuf, key: PathBuf) -> (PathBuf, PathBuf) {
        fs::write(&cert, &self.cert_pem).expect("write leaf certificate");
        fs::write(&key, &self.key_pem).expect("write leaf key");
        (cert, key)
    }

    /// The leaf followed by the CA certificate: a full chain as servers usually send it.
    pub fn chain_pem(&self, ca: &TestCa) -> String {
        format!("{}{}", self.cert_pem, ca.cert_pem)
    }
}

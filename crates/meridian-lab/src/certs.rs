//! The lab CA and one peer certificate per gateway, for the mutual-TLS peer listener.
//!
//! Each leaf is `CA:FALSE`, usable as server and client certificate (gateways call each other
//! with it), with SAN DNS `gw-<region>-1` and `<region>.peer.meridian` and the gateway's IP.

use std::net::{IpAddr, Ipv4Addr};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::LabError;

/// A CA that signs every gateway of the lab.
pub struct LabCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

/// A certificate and its private key, PEM encoded.
#[derive(Debug, Clone)]
pub struct PeerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

impl LabCa {
    /// A new CA with a fresh key.
    pub fn new() -> Result<LabCa, LabError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "Meridian lab CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(LabCa { issuer: Issuer::new(params, key), cert_pem: cert.pem() })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The peer certificate of gateway `node_id` in `region`, reachable at `ip`.
    pub fn issue_peer(&self, node_id: &str, region: &str, ip: Ipv4Addr) -> Result<PeerCert, LabError> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, node_id);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages =
            vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        for name in [node_id.to_string(), format!("{region}.peer.meridian")] {
            params.subject_alt_names.push(SanType::DnsName(name.try_into()?));
        }
        params.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(ip)));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(PeerCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

//! Certificates made at test time, so no key material lives in the repository
//! and nothing expires between runs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// PEM files for a TLS test server and its clients, all inside one directory.
///
/// The server certificate names `127.0.0.1` and `localhost`. Both client
/// certificates carry the client-auth usage; only the first is signed by the
/// CA the server trusts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the server and client certificates: what a client trusts.
    pub ca_cert: PathBuf,
    /// The server's certificate (for `127.0.0.1` and `localhost`).
    pub server_cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub server_key: PathBuf,
    /// A client certificate signed by [`ca_cert`](Self::ca_cert).
    pub client_cert: PathBuf,
    /// The private key (PKCS#8) of [`client_cert`](Self::client_cert).
    pub client_key: PathBuf,
    /// A second, unrelated CA: a client trusting only it must refuse the server.
    pub other_ca_cert: PathBuf,
    /// A client certificate signed by [`other_ca_cert`](Self::other_ca_cert),
    /// which the server must refuse.
    pub other_client_cert: PathBuf,
    /// The private key (PKCS#8) of [`other_client_cert`](Self::other_client_cert).
    pub other_client_key: PathBuf,
}

impl TlsFiles {
    /// Generates a fresh set of CAs, certificates and keys as PEM files in `dir`
    /// (`ca.crt`, `server.crt`, `server.key`, `client.crt`, `client.key`,
    /// `other-ca.crt`, `other-client.crt`, `other-client.key`), replacing any
    /// files of those names.
    pub fn generate(dir: &Path) -> io::Result<TlsFiles> {
        let files = TlsFiles {
            ca_cert: dir.join("ca.crt"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.crt"),
            client_key: dir.join("client.key"),
            other_ca_cert: dir.join("other-ca.crt"),
            other_client_cert: dir.join("other-client.crt"),
            other_client_key: dir.join("other-client.key"),
        };

        let (ca_pem, ca) = new_ca("ticketlock test CA").map_err(to_io)?;
        fs::write(&files.ca_cert, ca_pem)?;
        let (cert, key) = new_leaf(
            &ca,
            "ticketlock test server",
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
        .map_err(to_io)?;
        fs::write(&files.server_cert, cert)?;
        fs::write(&files.server_key, key)?;
        let (cert, key) = new_leaf(
            &ca,
            "ticketlock test client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
        .map_err(to_io)?;
        fs::write(&files.client_cert, cert)?;
        fs::write(&files.client_key, key)?;

        let (other_pem, other) = new_ca("unrelated test CA").map_err(to_io)?;
        fs::write(&files.other_ca_cert, other_pem)?;
        let (cert, key) = new_leaf(
            &other,
            "stranger test client",
            &[],
            ExtendedKeyUsagePurpose::ClientAuth,
        )
        .map_err(to_io)?;
        fs::write(&files.other_client_cert, cert)?;
        fs::write(&files.other_client_key, key)?;
        Ok(files)
    }
}

fn to_io(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("generating test certificates: {e}"))
}

fn new_ca(name: &str) -> Result<(String, Issuer<'static, KeyPair>), rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate()?;
    let pem = params.self_signed(&key)?.pem();
    Ok((pem, Issuer::new(params, key)))
}

/// Returns the certificate and its key, both PEM.
fn new_leaf(
    ca: &Issuer<'_, KeyPair>,
    name: &str,
    alt_names: &[&str],
    usage: ExtendedKeyUsagePurpose,
) -> Result<(String, String), rcgen::Error> {
    let alt_names: Vec<String> = alt_names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(alt_names)?;
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, ca)?;
    Ok((cert.pem(), key.serialize_pem()))
}

//! The TLS acceptor for the SIP TLS listener: rustls with the ring provider (the project's one
//! provider), certificate chain and key read from PEM files at start-up.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::Error;

/// Builds the acceptor; every error names the file at fault.
pub(crate) fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, Error> {
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|e| {
            Error::Tls(format!(
                "cannot read certificate file {}: {e}",
                cert.display()
            ))
        })?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Tls(format!(
                "certificate file {} is not valid PEM: {e}",
                cert.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Tls(format!(
            "certificate file {} holds no certificate",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| Error::Tls(format!("cannot read private key {}: {e}", key.display())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            Error::Tls(format!(
                "certificate {} and key do not match: {e}",
                cert.display()
            ))
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

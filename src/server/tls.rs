//! TLS for TCP listeners (rustls): `--tls` serves HTTPS, `--tlsverify` also requires a client
//! certificate signed by `--tlscacert`, checked in the handshake.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// Build the server side of TLS from PEM files.
pub fn server_config(
    cert: &Path,
    key: &Path,
    ca: Option<&Path>,
    verify_clients: bool,
) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::invalid(format!("load certificate {}: {e}", cert.display())))?;
    if certs.is_empty() {
        return Err(TlsError::invalid(format!(
            "no certificate in {}",
            cert.display()
        )));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::invalid(format!("load private key {}: {e}", key.display())))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::invalid(format!("tls setup: {e}")))?;
    let builder = match ca.filter(|_| verify_clients) {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            let ca_certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    TlsError::invalid(format!("load CA certificate {}: {e}", ca.display()))
                })?;
            for c in ca_certs {
                roots.add(c).map_err(|e| {
                    TlsError::invalid(format!("CA certificate {}: {e}", ca.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(TlsError::invalid(format!(
                    "no CA certificate in {}",
                    ca.display()
                )));
            }
            let v = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let v = if verify_clients {
                v
            } else {
                v.allow_unauthenticated()
            };
            let verifier = v
                .build()
                .map_err(|e| TlsError::invalid(format!("client verifier: {e}")))?;
            builder.with_client_cert_verifier(verifier)
        }
        None if verify_clients => {
            return Err(TlsError::invalid(
                "--tlsverify needs --tlscacert to verify clients".to_string(),
            ))
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::invalid(format!("certificate and key: {e}")))?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

crate::module_error! {
    /// A TLS setup failure.
    pub struct TlsError;
}

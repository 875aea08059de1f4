//! TLS to Postgres, with libpq's `sslmode` meanings (tokio-postgres itself knows only `disable`,
//! `prefer` and `require`, and leaves the certificate check to the TLS connector):
//!
//! | `sslmode` | encrypted | server certificate checked |
//! |---|---|---|
//! | `disable` | no | - |
//! | `prefer` (the default) | if the server offers TLS | no |
//! | `require` | yes | no, unless a CA file is given: then as `verify-ca` |
//! | `verify-ca` | yes | signed by a trusted CA |
//! | `verify-full` | yes | signed by a trusted CA and naming the host |
//!
//! The trusted CAs are those of the CA file (`--postgres-ca-file`), else the Mozilla root store.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::Error;

/// How the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Not at all (`prefer`, `require` without a CA file): encrypted, but open to a man in the
    /// middle, as with libpq.
    Nothing,
    /// Signed by a trusted CA (`verify-ca`, `require` with a CA file).
    Ca,
    /// Signed by a trusted CA and valid for the host (`verify-full`).
    Full,
}

/// The URL for tokio-postgres (`verify-ca` and `verify-full` become `require`, which it knows)
/// and how to check the server's certificate.
pub fn sslmode(url: &str, ca_file: bool) -> (String, Verify) {
    for (mode, verify) in [("verify-full", Verify::Full), ("verify-ca", Verify::Ca)] {
        let given = format!("sslmode={mode}");
        if url.contains(&given) {
            return (url.replace(&given, "sslmode=require"), verify);
        }
    }
    let verify = if ca_file && url.contains("sslmode=require") {
        Verify::Ca
    } else {
        Verify::Nothing
    };
    (url.to_owned(), verify)
}

/// The TLS connector for `verify`, trusting the CAs of `ca_file` (PEM), else the Mozilla roots.
pub fn connector(
    verify: Verify,
    ca_file: Option<&Path>,
) -> Result<tokio_postgres_rustls::MakeRustlsConnect, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let io = |source| Error::Io {
                path: path.display().to_string(),
                source,
            };
            let pem = std::fs::read(path).map_err(io)?;
            let mut n = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| {
                    Error::Format(format!("{}: not a PEM certificate: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    Error::Format(format!("{}: unusable CA certificate: {e}", path.display()))
                })?;
                n += 1;
            }
            if n == 0 {
                return Err(Error::Format(format!(
                    "{}: holds no PEM certificate",
                    path.display()
                )));
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let roots = Arc::new(roots);
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Format(format!("postgres tls: {e}")))?;
    let config = match verify {
        Verify::Full => {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| Error::Format(format!("postgres tls: {e}")))?;
            builder.with_webpki_verifier(verifier)
        }
        Verify::Ca | Verify::Nothing => {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(Lenient {
                    roots: (verify == Verify::Ca).then_some(roots),
                    algorithms: provider.signature_verification_algorithms,
                }))
        }
    }
    .with_no_client_auth();
    Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
}

/// libpq's `require` (no `roots`: any certificate) and `verify-ca` (signed by one of `roots`,
/// whatever name it holds). The handshake's signatures are always checked.
#[derive(Debug)]
struct Lenient {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for Lenient {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                roots,
                intermediates,
                now,
                self.algorithms.all,
            )?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_modes_become_require_for_tokio_postgres() {
        assert_eq!(
            sslmode("postgres://u@h/db?sslmode=verify-full", false),
            ("postgres://u@h/db?sslmode=require".to_owned(), Verify::Full)
        );
        assert_eq!(
            sslmode("postgres://u@h/db?sslmode=verify-ca", false).1,
            Verify::Ca
        );
        assert_eq!(
            sslmode("postgres://u@h/db?sslmode=require", false).1,
            Verify::Nothing
        );
        assert_eq!(
            sslmode("postgres://u@h/db?sslmode=require", true).1,
            Verify::Ca
        );
        assert_eq!(sslmode("postgres://u@h/db", true).1, Verify::Nothing);
    }
}

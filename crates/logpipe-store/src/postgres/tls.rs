//! The rustls side of PostgreSQL connections: a [`MakeRustlsConnect`] built from a checked
//! [`TlsPlan`] (CA file or system roots, client certificate), with one certificate verifier per
//! level of trust:
//! - [`AcceptAny`] for `prefer` and `require` without a CA: libpq's semantics for those modes are
//!   "encrypt, do not verify" (a server with a self-signed certificate must still connect);
//!   handshake signatures are still checked, so the server holds the key of what it presented;
//! - [`ChainOnly`] for `verify-ca` (and `prefer`/`require` with a CA): the chain, not the name;
//! - [`Explained`] around rustls' own WebPKI verifier for `verify-full`.
//!
//! Every verifier rewrites a refusal into a message that names the cause and the setting to
//! look at, since it is what the operator reads in the store's error.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, Error, OtherError, RootCertStore,
    SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::sslmode::{Roots, TlsPlan, Verify};

/// The TLS connector for `plan`: reads the CA and client certificate files now, so a missing
/// or unreadable file is reported at open.
pub(crate) fn connector(plan: &TlsPlan) -> Result<MakeRustlsConnect, String> {
    // ring, as everywhere else in logpipe (no aws-lc-rs build); chosen here rather than through
    // the process default so the store does not depend on who installed what first.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier: Arc<dyn ServerCertVerifier> = match &plan.verify {
        Verify::Nothing => Arc::new(AcceptAny {
            provider: provider.clone(),
        }),
        Verify::Chain(roots) => Arc::new(ChainOnly {
            roots: Arc::new(load_roots(roots)?),
            source: describe(roots),
            provider: provider.clone(),
        }),
        Verify::Full(roots) => {
            let inner = WebPkiServerVerifier::builder_with_provider(
                Arc::new(load_roots(roots)?),
                provider.clone(),
            )
            .build()
            .map_err(|err| format!("building the certificate verifier: {err}"))?;
            Arc::new(Explained {
                inner,
                source: describe(roots),
            })
        }
    };
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| format!("TLS protocol versions: {err}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &plan.client {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certificates(cert, "sslcert")?;
            let key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
                format!(
                    "sslkey {}: no readable PEM private key ({err}); check postgres.sslkey \
                     (or sslkey= in the URL)",
                    key.display()
                )
            })?;
            builder.with_client_auth_cert(chain, key).map_err(|err| {
                format!(
                    "sslcert {} and sslkey do not make a usable client certificate ({err}); \
                     check that the key belongs to the certificate",
                    cert.display()
                )
            })?
        }
    };
    Ok(MakeRustlsConnect::new(config))
}

fn describe(roots: &Roots) -> String {
    match roots {
        Roots::File(path) => format!("sslrootcert {}", path.display()),
        Roots::System => "the system trust store (sslrootcert=system)".into(),
    }
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let certificates = match roots {
        Roots::File(path) => read_certificates(path, "sslrootcert")?,
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            if found.certs.is_empty() {
                return Err(format!(
                    "sslrootcert=system: no CA certificate in the system trust store ({:?}); \
                     install ca-certificates or name a CA file in postgres.sslrootcert",
                    found.errors
                ));
            }
            found.certs
        }
    };
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certificates);
    if added == 0 {
        return Err(format!(
            "{}: no usable CA certificate; check postgres.sslrootcert (or sslrootcert= in the URL)",
            describe(roots)
        ));
    }
    Ok(store)
}

/// The PEM certificates of `path`; `setting` names it in errors.
fn read_certificates(path: &Path, setting: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let hint = format!("check postgres.{setting} (or {setting}= in the URL)");
    let certificates = CertificateDer::pem_file_iter(path)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .map_err(|err| format!("{setting} {}: {err}; {hint}", path.display()))?;
    if certificates.is_empty() {
        return Err(format!(
            "{setting} {}: no PEM certificate in the file; {hint}",
            path.display()
        ));
    }
    Ok(certificates)
}

/// A refusal rewritten for the operator: `rustls` says what failed, this says where to look.
fn explain(err: Error, source: &str) -> Error {
    let Error::InvalidCertificate(cause) = &err else {
        return err;
    };
    let message = match cause {
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "certificate verify failed: {cause}; sslmode=verify-full checks the host of the \
                 URL against the server's certificate: connect with a name the certificate \
                 holds, or use sslmode=verify-ca to check the CA only"
            )
        }
        CertificateError::UnknownIssuer => format!(
            "certificate verify failed: the server's certificate is not signed by a CA of \
             {source} (UnknownIssuer); check postgres.sslrootcert (or sslrootcert= in the URL) \
             names the CA that signed the server's certificate"
        ),
        _ => format!(
            "certificate verify failed: {cause} (checked against {source}); check \
             postgres.sslrootcert (or sslrootcert= in the URL) names the CA that signed the \
             server's certificate"
        ),
    };
    // `Other`, not `InvalidCertificate(CertificateError::Other)`: rustls displays the latter
    // with `Debug`, which would bury the message in type names.
    Error::Other(OtherError(Arc::new(Message(message))))
}

#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Handshake signatures, checked with the algorithms of the verifier's `provider`.
macro_rules! signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// Accepts any server certificate: libpq's `prefer` and `require` without a CA encrypt without
/// verifying who is at the other end.
#[derive(Debug)]
struct AcceptAny {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        Ok(ServerCertVerified::assertion())
    }

    signatures!();
}

/// `verify-ca`: the certificate must chain to one of the roots; its names are not looked at.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    source: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let verified = ParsedCertificate::try_from(end_entity).and_then(|cert| {
            verify_server_cert_signed_by_trust_anchor(
                &cert,
                &self.roots,
                intermediates,
                now,
                self.provider.signature_verification_algorithms.all,
            )
        });
        verified
            .map(|()| ServerCertVerified::assertion())
            .map_err(|err| explain(err, &self.source))
    }

    signatures!();
}

/// `verify-full`: rustls' WebPKI verifier (chain and name), its refusals explained.
#[derive(Debug)]
struct Explained {
    inner: Arc<WebPkiServerVerifier>,
    source: String,
}

impl ServerCertVerifier for Explained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .map_err(|err| explain(err, &self.source))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

//! Opening [`RedisAggregates`](super::RedisAggregates)' connection: the [`Client`] for a URL,
//! with a private CA and a client certificate when [`AggOptions`] names them (redis-rs's own
//! `Client::build_with_tls`); the connection manager and the apply script loaded; and
//! [`explain`], which turns a failed handshake or a refused password into a configuration error
//! that says which setting to fix (`classify` asks it first).
//!
//! Passwords come from the URL only (`rediss://user:password@host:port/db`); errors show the URL
//! only as the caller's redacted `display_url`.

use std::error::Error as StdError;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, ClientTlsConfig, ErrorKind, RedisError, Script, TlsCertificates};
use rustls::{AlertDescription, CertificateError};

use super::{classify, deadline, with_context, APPLY_SCRIPT};
use crate::{AggError, AggOptions};

/// Connects (eagerly) and loads the apply script. Errors carry `display_url`.
pub(super) async fn open(
    url: &str,
    options: &AggOptions,
    display_url: &str,
) -> Result<(ConnectionManager, Script), AggError> {
    let tls = url.starts_with("rediss://");
    if tls {
        // rustls needs one crypto provider chosen per process; ring is the one this crate
        // builds. An error only means another part of the process installed one already.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
    let client = client(url, options, display_url)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(options.timeout))
        .set_response_timeout(Some(options.timeout))
        // One quick retry inside a call; the consumer's own backoff handles longer outages.
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_millis(500));
    let timeout = options.timeout;
    let connect = ConnectionManager::new_with_config(client, config);
    let connected = match deadline(timeout, "connect", connect).await {
        Ok(Ok(conn)) => Ok(conn),
        // A TLS-only port hangs up on plain text without a word; say so rather than leave
        // it looking like an outage that retrying would cure.
        Ok(Err(err)) if !tls && closed_before_reply(&err) => Err(AggError::Other(format!(
            "closed the connection before answering ({err}): the server may require TLS; use rediss:// (with redis.tls_ca_file for a private CA)"
        ))),
        Ok(Err(err)) => Err(classify("connect", &err)),
        // A plain-text Redis reads a TLS hello as the start of an inline command and waits
        // for the rest: the handshake gets no answer. Still an outage (a hung server looks
        // the same), with the likelier cause named.
        Err(AggError::Unavailable(detail)) if tls => Err(AggError::Unavailable(format!(
            "{detail}; if this port serves plain text (no TLS), use redis:// instead of rediss://"
        ))),
        Err(timed_out) => Err(timed_out),
    };
    let mut conn = connected.map_err(|err| with_context(err, display_url))?;
    let script = Script::new(APPLY_SCRIPT);
    // Loading now reports an old Redis (the script needs 7+) at startup, not at the first batch.
    // It is also the first command: a server that wants a password (NOAUTH) says so here.
    let loaded = match deadline(timeout, "SCRIPT LOAD", script.load_async(&mut conn)).await {
        Ok(Err(err)) if explain(&err).is_none() => match classify("SCRIPT LOAD", &err) {
            AggError::Other(detail) => Err(AggError::Other(format!(
                "refused the apply script (Redis 7 or newer is required): {detail}"
            ))),
            outage => Err(outage),
        },
        Ok(result) => result.map_err(|err| classify("SCRIPT LOAD", &err)),
        Err(timed_out) => Err(timed_out),
    };
    loaded.map_err(|err| with_context(err, display_url))?;
    Ok((conn, script))
}

/// The client for `url`: plain [`Client::open`] without TLS files, otherwise the files read and
/// handed to [`Client::build_with_tls`] (the caller has checked that the URL is `rediss://`).
fn client(url: &str, options: &AggOptions, display_url: &str) -> Result<Client, AggError> {
    let invalid_url =
        |err: RedisError| AggError::Other(format!("invalid Redis URL {display_url}: {err}"));
    if !options.has_tls_files() {
        return Client::open(url).map_err(invalid_url);
    }
    let root_cert = match &options.tls_ca_file {
        Some(path) => {
            let pem = read("redis.tls_ca_file", path)?;
            // An empty store would refuse every server with a misleading "unknown issuer".
            if !contains(&pem, b"-----BEGIN CERTIFICATE-----") {
                return Err(AggError::Other(format!(
                    "redis.tls_ca_file {} holds no PEM certificate (-----BEGIN CERTIFICATE-----): give the CA certificate that signed the Redis server's certificate",
                    path.display()
                )));
            }
            Some(pem)
        }
        None => None,
    };
    let client_tls = match (&options.tls_cert_file, &options.tls_key_file) {
        (Some(cert), Some(key)) => Some(ClientTlsConfig {
            client_cert: read("redis.tls_cert_file", cert)?,
            client_key: read("redis.tls_key_file", key)?,
        }),
        // AggOptions::check_tls refuses one without the other.
        _ => None,
    };
    let certificates = TlsCertificates {
        client_tls,
        root_cert,
    };
    Client::build_with_tls(url, certificates).map_err(|err| {
        AggError::Other(format!(
            "the TLS files for Redis at {display_url} cannot be used ({err}): redis.tls_ca_file must hold PEM certificates, redis.tls_cert_file a PEM certificate chain and redis.tls_key_file its PEM private key"
        ))
    })
}

fn read(key: &str, path: &Path) -> Result<Vec<u8>, AggError> {
    std::fs::read(path).map_err(|err| {
        AggError::Other(format!(
            "cannot read {key} {}: {err}; check the path and that logpipe may read it",
            path.display()
        ))
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// What to tell the operator when `err` is a configuration problem rather than an outage: a
/// refused password, a certificate that does not verify, a handshake the server refused. `None`
/// for anything else.
pub(super) fn explain(err: &RedisError) -> Option<String> {
    if err.kind() == ErrorKind::AuthenticationFailed
        || matches!(err.code(), Some("WRONGPASS" | "NOAUTH"))
    {
        return Some(format!(
            "authentication failed ({err}): Redis refused the credentials (it answers WRONGPASS \
             to a wrong user or password, NOAUTH when none is given); check the user in the \
             Redis URL (rediss://user@host:port/db for an ACL user, none for the default user's \
             requirepass) and the password: redis.password or redis.password_file, or in the URL \
             (rediss://user:password@host:port/db)"
        ));
    }
    let tls_error = rustls_error(err)?;
    Some(match tls_error {
        rustls::Error::InvalidCertificate(reason) => {
            let why = match reason {
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    "the server's certificate does not name the host in the URL: connect by a name (or IP) the certificate lists"
                }
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the server's certificate has expired: renew it"
                }
                _ => {
                    "the server's certificate is not signed by a CA this client trusts: check redis.tls_ca_file (the PEM of the CA that signed it; without it the system's roots are used)"
                }
            };
            format!("TLS certificate verification failed ({tls_error}): {why}")
        }
        rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired | AlertDescription::HandshakeFailure,
        ) => format!(
            "the server refused the TLS handshake ({tls_error}): it may require a client certificate (Redis tls-auth-clients yes): set redis.tls_cert_file and redis.tls_key_file"
        ),
        rustls::Error::AlertReceived(
            AlertDescription::BadCertificate
            | AlertDescription::UnknownCA
            | AlertDescription::CertificateUnknown
            | AlertDescription::DecryptError,
        ) => format!(
            "the server refused the client certificate ({tls_error}): check that redis.tls_cert_file is signed by the CA in the server's tls-ca-cert-file and that redis.tls_key_file is its key"
        ),
        rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
            format!(
                "the TLS handshake failed ({tls_error}): the server may not speak TLS on this port; a plain-text Redis needs redis:// instead of rediss://"
            )
        }
        _ => format!("TLS failed ({tls_error}): check redis.tls_ca_file, redis.tls_cert_file and redis.tls_key_file"),
    })
}

/// Whether `err`, from connecting with a plain `redis://` URL, looks like a TLS-only server
/// hanging up on a client that spoke plain text: the connection was accepted, then closed before
/// any reply (a refused connection is an outage, not this).
fn closed_before_reply(err: &RedisError) -> bool {
    err.is_connection_dropped() && !err.is_connection_refusal() && !err.is_timeout()
}

/// The rustls error inside `err`, if a TLS failure caused it. redis-rs keeps the I/O error in an
/// `Arc`, and the I/O error carries the rustls error as its payload.
fn rustls_error(err: &RedisError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(current) = next {
        if let Some(found) = as_rustls(current) {
            return Some(found);
        }
        next = current.source();
    }
    None
}

fn as_rustls<'e>(err: &'e (dyn StdError + 'static)) -> Option<&'e rustls::Error> {
    if let Some(tls) = err.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    if let Some(io) = err.downcast_ref::<std::io::Error>() {
        return io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    }
    if let Some(shared) = err.downcast_ref::<Arc<dyn StdError + Send + Sync>>() {
        let inner: &(dyn StdError + 'static) = &**shared;
        return as_rustls(inner);
    }
    None
}

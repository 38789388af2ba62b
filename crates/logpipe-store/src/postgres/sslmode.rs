//! libpq's TLS settings (`sslmode`, `sslrootcert`, `sslcert`, `sslkey`): read from the URL's
//! query string and from the caller's options, merged (the URL wins, parameter by parameter),
//! and checked into a [`TlsPlan`] that says what the connection must verify.
//!
//! tokio-postgres parses the rest of the URL, but its parser knows only `sslmode` values
//! `disable`, `prefer` and `require` and rejects the other three parameters, so they are taken
//! out of the query string here before it sees the URL.
//!
//! Semantics follow libpq's table "SSL Mode Descriptions"
//! (<https://www.postgresql.org/docs/current/libpq-ssl.html>):
//! - `disable`: plain TCP;
//! - `prefer` (the default): TLS if the server offers it, plain TCP if it does not;
//! - `require`: TLS or no connection;
//! - `verify-ca`: TLS, and the server's certificate must chain to a CA of `sslrootcert`;
//! - `verify-full`: as `verify-ca`, and the certificate must name the host of the URL.
//!
//! As in libpq, `prefer` and `require` with an `sslrootcert` verify the chain like `verify-ca`
//! (libpq turns on peer verification whenever it loaded a root certificate), and
//! `sslrootcert=system` (the system trust store) demands `verify-full` and implies it when no
//! `sslmode` is given. Two departures: nothing is read from `~/.postgresql/` (a service names its
//! files), and `prefer` does not retry in plain text after a failed TLS handshake (libpq does;
//! a server that offers TLS and then fails it is a problem to see, not to work around).

use std::path::PathBuf;
use std::str::FromStr;

use percent_encoding::percent_decode_str;
use serde::{Deserialize, Serialize};

/// libpq's `sslmode`. `allow` is not offered: it tries plain text first, which tokio-postgres
/// cannot do; `disable` or `prefer` cover its uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without verifying the server (unless `sslrootcert` is
    /// set); plain TCP otherwise.
    #[default]
    Prefer,
    /// TLS always, without verifying the server (unless `sslrootcert` is set).
    Require,
    /// TLS; the server's certificate must chain to a CA of `sslrootcert`.
    VerifyCa,
    /// TLS; the certificate must chain to a CA of `sslrootcert` and name the host.
    VerifyFull,
}

impl SslMode {
    /// The libpq spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }
}

impl FromStr for SslMode {
    type Err = String;

    fn from_str(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            "allow" => {
                return Err(
                    "sslmode `allow` is not supported: use `prefer` (TLS when the server \
                            offers it) or `disable`"
                        .into(),
                )
            }
            other => {
                return Err(format!(
                    "sslmode `{other}` is not one of disable, prefer, require, verify-ca, \
                     verify-full"
                ))
            }
        })
    }
}

/// The TLS settings of a PostgreSQL connection, each unset (`None`) or as given. The value
/// `system` of `sslrootcert` is libpq's: the system trust store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PgTls {
    pub sslmode: Option<SslMode>,
    /// A PEM file of CA certificates, or `system`.
    pub sslrootcert: Option<String>,
    /// A PEM client certificate (chain), presented when the server asks for one.
    pub sslcert: Option<PathBuf>,
    /// The PEM private key of `sslcert`.
    pub sslkey: Option<PathBuf>,
}

impl PgTls {
    /// `self` where set, `fallback` elsewhere.
    fn or(self, fallback: &PgTls) -> PgTls {
        PgTls {
            sslmode: self.sslmode.or(fallback.sslmode),
            sslrootcert: self.sslrootcert.or_else(|| fallback.sslrootcert.clone()),
            sslcert: self.sslcert.or_else(|| fallback.sslcert.clone()),
            sslkey: self.sslkey.or_else(|| fallback.sslkey.clone()),
        }
    }
}

/// Where CA certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Roots {
    File(PathBuf),
    /// The system trust store (`sslrootcert=system`).
    System,
}

/// What the server's certificate must pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verify {
    /// Nothing: the connection is encrypted against eavesdropping, not against a server in the
    /// middle (libpq's `prefer` and `require` without a CA).
    Nothing,
    /// A chain to one of the roots; any host name (`verify-ca`).
    Chain(Roots),
    /// A chain to one of the roots, and the host name (`verify-full`).
    Full(Roots),
}

/// The checked settings a connection is built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsPlan {
    pub mode: SslMode,
    pub verify: Verify,
    /// Certificate and key files.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// Takes `sslmode`, `sslrootcert`, `sslcert` and `sslkey` out of the URL's query string: the URL
/// without them, for tokio-postgres, and their values. Within the URL, `sslrootcert=system`
/// without `sslmode` means `verify-full`, as in libpq.
pub(crate) fn split_url(url: &str) -> Result<(String, PgTls), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), PgTls::default()));
    };
    let mut tls = PgTls::default();
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| format!("URL parameter `{name}` is not UTF-8 once decoded"))?
            .into_owned();
        match name {
            "sslmode" => tls.sslmode = Some(value.parse()?),
            "sslrootcert" => tls.sslrootcert = non_empty(value),
            "sslcert" => tls.sslcert = non_empty(value).map(PathBuf::from),
            "sslkey" => tls.sslkey = non_empty(value).map(PathBuf::from),
            _ => kept.push(pair),
        }
    }
    if tls.sslmode.is_none() && tls.sslrootcert.as_deref() == Some("system") {
        tls.sslmode = Some(SslMode::VerifyFull);
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, tls))
}

fn non_empty(value: String) -> Option<String> {
    (!value.trim().is_empty()).then_some(value)
}

/// The settings of `url` over `options`, checked; no file is read. Errors name both places a
/// setting can come from.
pub(crate) fn plan(url_settings: PgTls, options: &PgTls) -> Result<TlsPlan, String> {
    let tls = url_settings.or(options);
    let roots = tls.sslrootcert.as_deref().map(|root| match root {
        "system" => Roots::System,
        file => Roots::File(PathBuf::from(file)),
    });
    let mode = tls.sslmode.unwrap_or(if roots == Some(Roots::System) {
        SslMode::VerifyFull
    } else {
        SslMode::Prefer
    });
    if roots == Some(Roots::System) && mode != SslMode::VerifyFull && mode != SslMode::Disable {
        return Err(format!(
            "sslmode `{}` may not be used with sslrootcert=system (any certificate of a public \
             CA would pass without its host name checked): set sslmode to verify-full \
             (postgres.sslmode or sslmode= in the URL)",
            mode.as_str()
        ));
    }
    let verify = match (mode, roots) {
        (SslMode::Disable, _) | (SslMode::Prefer | SslMode::Require, None) => Verify::Nothing,
        (SslMode::Prefer | SslMode::Require | SslMode::VerifyCa, Some(roots)) => {
            Verify::Chain(roots)
        }
        (SslMode::VerifyFull, Some(roots)) => Verify::Full(roots),
        (SslMode::VerifyCa | SslMode::VerifyFull, None) => {
            return Err(format!(
                "sslmode `{}` verifies the server's certificate, so it needs the CA that signed \
                 it: set postgres.sslrootcert (or sslrootcert= in the URL) to that CA's PEM \
                 file, or to `system` for the system trust store",
                mode.as_str()
            ))
        }
    };
    let client = match (tls.sslcert, tls.sslkey) {
        (Some(cert), Some(key)) => Some((cert, key)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(
                "sslcert is set but sslkey is not: a client certificate needs its \
                        private key (postgres.sslkey or sslkey= in the URL)"
                    .into(),
            )
        }
        (None, Some(_)) => {
            return Err(
                "sslkey is set but sslcert is not: set postgres.sslcert (or sslcert= \
                        in the URL) to the client certificate of that key"
                    .into(),
            )
        }
    };
    Ok(TlsPlan {
        mode,
        verify,
        client: client.filter(|_| mode != SslMode::Disable),
    })
}

/// Checks the TLS settings of `url` over `options` without connecting or reading files: for
/// `config check`. The error says what to change.
pub fn check_tls_settings(url: &str, options: &PgTls) -> Result<(), String> {
    let (_, url_settings) = split_url(url)?;
    plan(url_settings, options).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(mode: Option<SslMode>, root: Option<&str>) -> PgTls {
        PgTls {
            sslmode: mode,
            sslrootcert: root.map(str::to_owned),
            ..PgTls::default()
        }
    }

    #[test]
    fn ssl_parameters_leave_the_url_and_the_rest_stays_as_written() {
        let (rest, tls) = split_url(
            "postgres://u:p@db:5432/logs?application_name=a%20b&sslmode=verify-full\
             &sslrootcert=%2Fetc%2Fca.crt&connect_timeout=3&sslcert=/c.crt&sslkey=/c.key",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p@db:5432/logs?application_name=a%20b&connect_timeout=3"
        );
        assert_eq!(tls.sslmode, Some(SslMode::VerifyFull));
        assert_eq!(tls.sslrootcert.as_deref(), Some("/etc/ca.crt"));
        assert_eq!(tls.sslcert, Some(PathBuf::from("/c.crt")));
        assert_eq!(tls.sslkey, Some(PathBuf::from("/c.key")));

        let (rest, tls) = split_url("postgres://db/logs?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://db/logs");
        assert_eq!(tls.sslmode, Some(SslMode::Require));
        let (rest, tls) = split_url("postgres://db/logs").unwrap();
        assert_eq!(
            (rest.as_str(), tls),
            ("postgres://db/logs", PgTls::default())
        );
    }

    #[test]
    fn an_unknown_sslmode_is_a_clear_error() {
        let error = split_url("postgres://db/x?sslmode=verify_full").unwrap_err();
        assert!(
            error.contains("`verify_full` is not one of disable, prefer"),
            "{error}"
        );
        let error = split_url("postgres://db/x?sslmode=allow").unwrap_err();
        assert!(error.contains("`allow` is not supported"), "{error}");
        let error = check_tls_settings("postgres://db/x?sslmode=on", &PgTls::default());
        assert!(error.unwrap_err().contains("`on`"));
    }

    #[test]
    fn url_parameters_win_over_options_one_by_one() {
        let options = PgTls {
            sslmode: Some(SslMode::Require),
            sslrootcert: Some("/config/ca.crt".into()),
            sslcert: Some("/config/c.crt".into()),
            sslkey: Some("/config/c.key".into()),
        };
        let (_, url) = split_url("postgres://db/x?sslmode=verify-full&sslkey=/url/c.key").unwrap();
        let plan = plan(url, &options).unwrap();
        assert_eq!(plan.mode, SslMode::VerifyFull);
        assert_eq!(
            plan.verify,
            Verify::Full(Roots::File("/config/ca.crt".into()))
        );
        assert_eq!(
            plan.client,
            Some(("/config/c.crt".into(), "/url/c.key".into()))
        );
        // Nothing in the URL: the options.
        let plan = super::plan(PgTls::default(), &options).unwrap();
        assert_eq!(plan.mode, SslMode::Require);
    }

    #[test]
    fn modes_verify_what_libpq_verifies() {
        let ca = Some("/ca.crt");
        let file = || Roots::File("/ca.crt".into());
        let cases = [
            (None, None, SslMode::Prefer, Verify::Nothing),
            (
                Some(SslMode::Disable),
                ca,
                SslMode::Disable,
                Verify::Nothing,
            ),
            (
                Some(SslMode::Require),
                None,
                SslMode::Require,
                Verify::Nothing,
            ),
            // A CA turns require (and prefer) into verify-ca, as libpq does.
            (
                Some(SslMode::Require),
                ca,
                SslMode::Require,
                Verify::Chain(file()),
            ),
            (None, ca, SslMode::Prefer, Verify::Chain(file())),
            (
                Some(SslMode::VerifyCa),
                ca,
                SslMode::VerifyCa,
                Verify::Chain(file()),
            ),
            (
                Some(SslMode::VerifyFull),
                ca,
                SslMode::VerifyFull,
                Verify::Full(file()),
            ),
            // system implies verify-full.
            (
                None,
                Some("system"),
                SslMode::VerifyFull,
                Verify::Full(Roots::System),
            ),
        ];
        for (mode, root, effective, verify) in cases {
            let plan = plan(settings(mode, root), &PgTls::default()).unwrap();
            assert_eq!(
                (plan.mode, plan.verify),
                (effective, verify),
                "{mode:?} {root:?}"
            );
        }
    }

    #[test]
    fn impossible_combinations_say_what_to_set() {
        let error = plan(settings(Some(SslMode::VerifyFull), None), &PgTls::default());
        assert!(error.unwrap_err().contains("set postgres.sslrootcert"));
        let error = plan(
            settings(Some(SslMode::Require), Some("system")),
            &PgTls::default(),
        );
        assert!(error.unwrap_err().contains("set sslmode to verify-full"));
        let cert_only = PgTls {
            sslcert: Some("/c.crt".into()),
            ..PgTls::default()
        };
        let error = plan(PgTls::default(), &cert_only).unwrap_err();
        assert!(error.contains("sslkey is not"), "{error}");
        let key_only = PgTls {
            sslkey: Some("/c.key".into()),
            ..PgTls::default()
        };
        let error = plan(PgTls::default(), &key_only).unwrap_err();
        assert!(error.contains("sslcert is not"), "{error}");
    }

    #[test]
    fn system_roots_in_the_url_imply_verify_full_over_a_weaker_option() {
        let (_, url) = split_url("postgres://db/x?sslrootcert=system").unwrap();
        let plan = plan(url, &settings(Some(SslMode::Prefer), None)).unwrap();
        assert_eq!(plan.verify, Verify::Full(Roots::System));
    }
}

//! Redis over TLS with authentication, against the servers `scripts/lib/redis_tls.sh` starts
//! (TLS only, requirepass plus an ACL user, one of them requiring a client certificate): counts
//! applied and read back through `rediss://` with a private CA, and each misconfiguration failing
//! as a configuration error that says what to fix and never shows a password. The option rules
//! that need no server are checked here too.

use std::path::PathBuf;

use super::support::*;
use crate::{AggError, AggOptions, Aggregates};

/// The coordinates `redis_tls_start` exports.
struct TlsEnv {
    host: String,
    port: String,
    mtls_port: String,
    user: String,
    password: String,
    default_password: String,
    certs: PathBuf,
}

const VARIABLES: [&str; 7] = [
    "LOGPIPE_TEST_REDIS_TLS_HOST",
    "LOGPIPE_TEST_REDIS_TLS_PORT",
    "LOGPIPE_TEST_REDIS_TLS_MTLS_PORT",
    "LOGPIPE_TEST_REDIS_TLS_USER",
    "LOGPIPE_TEST_REDIS_TLS_PASSWORD",
    "LOGPIPE_TEST_REDIS_TLS_DEFAULT_PASSWORD",
    "LOGPIPE_TEST_REDIS_TLS_CERTS",
];

impl TlsEnv {
    fn get() -> TlsEnv {
        TlsEnv::from_lookup(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// Fails (never skips) naming every variable that is missing.
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> TlsEnv {
        let missing: Vec<&str> = VARIABLES
            .into_iter()
            .filter(|name| lookup(name).is_none())
            .collect();
        assert!(
            missing.is_empty(),
            "{} not set: these tests need the TLS Redis servers of scripts/lib/redis_tls.sh; run scripts/test.sh, \
             or `source scripts/lib/redis_tls.sh && redis_tls_start DIR` (redis_tls_stop DIR afterwards)",
            missing.join(", ")
        );
        let get = |name: &str| lookup(name).unwrap_or_default();
        TlsEnv {
            host: get(VARIABLES[0]),
            port: get(VARIABLES[1]),
            mtls_port: get(VARIABLES[2]),
            user: get(VARIABLES[3]),
            password: get(VARIABLES[4]),
            default_password: get(VARIABLES[5]),
            certs: PathBuf::from(get(VARIABLES[6])),
        }
    }

    /// `rediss://user:password@host:port` (`user` empty: the default user's requirepass).
    fn url(&self, user: &str, password: &str, port: &str) -> String {
        format!("rediss://{user}:{password}@{}:{port}", self.host)
    }

    fn acl_url(&self) -> String {
        self.url(&self.user, &self.password, &self.port)
    }

    /// Options trusting the test CA, under a key prefix of their own.
    fn options(&self) -> AggOptions {
        AggOptions {
            key_prefix: unique_prefix(),
            tls_ca_file: Some(self.certs.join("ca.crt")),
            ..AggOptions::default()
        }
    }

    fn with_client_certificate(&self, options: AggOptions) -> AggOptions {
        AggOptions {
            tls_cert_file: Some(self.certs.join("logpipe-client.crt")),
            tls_key_file: Some(self.certs.join("logpipe-client.key")),
            ..options
        }
    }
}

/// Delivers records, reads the stats back, compares them with the records' own count, and
/// deletes the test keys through the same (TLS) connection.
async fn counts_round_trip(store: &Aggregates, prefix: &str) {
    let logs = generate(300, 5, 2);
    for batch in logs.chunks(100) {
        deliver(store, batch).await;
    }
    let query = query(5, None, 10);
    let stats = store.stats(&query).await.expect("stats over TLS");
    assert_eq!(stats, expected(&logs, &query, 48 * 60));
    assert_eq!(stats.total, 300);
    let Aggregates::Redis(redis) = store else {
        panic!("expected the Redis store, got {}", store.kind());
    };
    let mut conn = redis.connection();
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS");
    assert!(!keys.is_empty(), "nothing written under {prefix}");
    let _: u64 = ::redis::cmd("DEL")
        .arg(&keys)
        .query_async(&mut conn)
        .await
        .expect("DEL");
}

/// The error of opening `url`, checked to be a configuration error that shows none of
/// `secrets`.
async fn open_error(url: &str, options: &AggOptions, secrets: &[&str]) -> String {
    let err = Aggregates::open(url, options)
        .await
        .expect_err("opening should fail");
    assert!(
        matches!(err, AggError::Other(_)),
        "expected a configuration error, not an outage: {err}"
    );
    let text = err.to_string();
    for secret in secrets {
        assert!(!text.contains(secret), "the error shows a password: {text}");
    }
    text
}

#[test]
#[should_panic(expected = "LOGPIPE_TEST_REDIS_TLS_HOST, LOGPIPE_TEST_REDIS_TLS_PORT")]
fn missing_tls_servers_fail_naming_the_variables() {
    TlsEnv::from_lookup(|_| None);
}

#[tokio::test]
async fn acl_user_over_tls_with_a_private_ca_counts() {
    let env = TlsEnv::get();
    let options = env.options();
    let store = Aggregates::open(&env.acl_url(), &options)
        .await
        .expect("open rediss:// as the ACL user with tls_ca_file");
    assert!(store.ping().await);
    let shown = format!("{store:?}");
    assert!(!shown.contains(&env.password), "{shown}");
    counts_round_trip(&store, &options.key_prefix).await;
}

#[tokio::test]
async fn default_user_with_requirepass_over_tls_counts() {
    let env = TlsEnv::get();
    let options = env.options();
    let url = env.url("", &env.default_password, &env.port);
    let store = Aggregates::open(&url, &options)
        .await
        .expect("open rediss:// with the requirepass password");
    counts_round_trip(&store, &options.key_prefix).await;
}

#[tokio::test]
async fn a_required_client_certificate_is_given_and_counts() {
    let env = TlsEnv::get();
    let options = env.with_client_certificate(env.options());
    let url = env.url(&env.user, &env.password, &env.mtls_port);
    let store = Aggregates::open(&url, &options)
        .await
        .expect("open rediss:// with a client certificate");
    counts_round_trip(&store, &options.key_prefix).await;
}

#[tokio::test]
async fn a_missing_client_certificate_fails_clearly() {
    let env = TlsEnv::get();
    let url = env.url(&env.user, &env.password, &env.mtls_port);
    let text = open_error(&url, &env.options(), &[&env.password]).await;
    assert!(text.contains("client certificate"), "{text}");
    assert!(text.contains("redis.tls_cert_file"), "{text}");
}

#[tokio::test]
async fn a_wrong_password_fails_clearly() {
    let env = TlsEnv::get();
    let wrong = "not-the-password-4711";
    for url in [
        env.url(&env.user, wrong, &env.port),
        env.url("", wrong, &env.port),
    ] {
        let text = open_error(&url, &env.options(), &[wrong, &env.password]).await;
        assert!(text.contains("authentication failed"), "{text}");
        assert!(text.contains("WRONGPASS"), "{text}");
        assert!(
            text.contains("redis.password or redis.password_file"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn no_password_fails_clearly() {
    let env = TlsEnv::get();
    let url = format!("rediss://{}:{}", env.host, env.port);
    let text = open_error(&url, &env.options(), &[]).await;
    assert!(text.contains("authentication failed"), "{text}");
    assert!(text.contains("NOAUTH"), "{text}");
    assert!(!text.contains("Redis 7"), "blames the version: {text}");
}

#[tokio::test]
async fn a_wrong_ca_fails_clearly() {
    let env = TlsEnv::get();
    let options = AggOptions {
        tls_ca_file: Some(env.certs.join("other-ca.crt")),
        ..env.options()
    };
    let text = open_error(&env.acl_url(), &options, &[&env.password]).await;
    assert!(text.contains("certificate verification failed"), "{text}");
    assert!(text.contains("redis.tls_ca_file"), "{text}");
}

#[tokio::test]
async fn a_plain_url_against_the_tls_port_fails_clearly() {
    let env = TlsEnv::get();
    let url = format!(
        "redis://{}:{}@{}:{}",
        env.user, env.password, env.host, env.port
    );
    let text = open_error(&url, &AggOptions::default(), &[&env.password]).await;
    assert!(text.contains("may require TLS"), "{text}");
    assert!(text.contains("rediss://"), "{text}");
}

/// A plain-text Redis either waits for the rest of what it takes for an inline command (the
/// handshake times out) or answers it with an error that is no TLS record, depending on whether
/// the random bytes of the TLS hello hold a newline; both name the likely cause.
#[tokio::test]
async fn a_tls_url_against_a_plain_port_names_the_likely_cause() {
    let plain = redis_url();
    let Some(address) = plain.strip_prefix("redis://") else {
        panic!("LOGPIPE_TEST_REDIS_URL is not a redis:// URL: {plain}");
    };
    let options = AggOptions {
        timeout: std::time::Duration::from_secs(1),
        ..AggOptions::default()
    };
    for _ in 0..3 {
        let err = Aggregates::open(&format!("rediss://{address}"), &options)
            .await
            .expect_err("TLS against a plain-text port");
        let text = err.to_string();
        match err {
            AggError::Other(_) => assert!(text.contains("may not speak TLS"), "{text}"),
            AggError::Unavailable(_) => assert!(
                text.contains("if this port serves plain text (no TLS), use redis://"),
                "{text}"
            ),
            other => panic!("unexpected error: {other}"),
        }
    }
}

#[tokio::test]
async fn a_certificate_without_its_key_is_refused_naming_both() {
    for options in [
        AggOptions {
            tls_cert_file: Some("client.crt".into()),
            ..AggOptions::default()
        },
        AggOptions {
            tls_key_file: Some("client.key".into()),
            ..AggOptions::default()
        },
    ] {
        let text = open_error("rediss://127.0.0.1:1", &options, &[]).await;
        assert!(text.contains("redis.tls_cert_file"), "{text}");
        assert!(text.contains("redis.tls_key_file"), "{text}");
    }
}

#[tokio::test]
async fn tls_files_need_a_rediss_url() {
    let options = AggOptions {
        tls_ca_file: Some("ca.crt".into()),
        ..AggOptions::default()
    };
    for url in ["redis://u:pw-1234@127.0.0.1:1", ""] {
        let text = open_error(url, &options, &["pw-1234"]).await;
        assert!(text.contains("use rediss://"), "{text}");
    }
}

#[tokio::test]
async fn unreadable_or_empty_tls_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing-ca.crt");
    let options = AggOptions {
        tls_ca_file: Some(missing.clone()),
        ..AggOptions::default()
    };
    let text = open_error("rediss://127.0.0.1:1", &options, &[]).await;
    assert!(text.contains("cannot read redis.tls_ca_file"), "{text}");
    assert!(text.contains(&missing.display().to_string()), "{text}");

    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "not a certificate\n").unwrap();
    let options = AggOptions {
        tls_ca_file: Some(empty),
        ..AggOptions::default()
    };
    let text = open_error("rediss://127.0.0.1:1", &options, &[]).await;
    assert!(text.contains("holds no PEM certificate"), "{text}");
}

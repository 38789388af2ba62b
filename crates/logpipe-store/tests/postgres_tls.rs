//! The store against a PostgreSQL that accepts TLS only (`scripts/lib/postgres_tls.sh`, started
//! by scripts/test.sh): each `sslmode` does what libpq's does, client-certificate login works, and
//! every refusal says why. Coordinates come from LOGPIPE_TEST_POSTGRES_TLS_URL (role
//! `logpipe_tls`, password in the URL, no sslmode), LOGPIPE_TEST_POSTGRES_TLS_PORT and
//! LOGPIPE_TEST_POSTGRES_TLS_DIR (the certificates of scripts/lib/certs.sh).

mod common;

use std::sync::atomic::{AtomicU32, Ordering};

use common::{now, sample_logs};
use logpipe_store::{LogQuery, LogStore, PgTls, SslMode, StoreError, StoreOptions};

fn required_env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not set: these tests need the TLS-only PostgreSQL of \
             scripts/lib/postgres_tls.sh. Run scripts/test.sh, or: source scripts/lib/services.sh; \
             source scripts/lib/postgres_tls.sh; ensure_postgres_tls /tmp/logpipe-pg-tls"
            )
        })
}

/// `postgres://logpipe_tls:PASSWORD@127.0.0.1:PORT/logpipe`
fn password_url() -> String {
    required_env("LOGPIPE_TEST_POSTGRES_TLS_URL")
}

fn port() -> String {
    required_env("LOGPIPE_TEST_POSTGRES_TLS_PORT")
}

/// A file of the certificate directory.
fn cert(name: &str) -> String {
    format!("{}/{name}", required_env("LOGPIPE_TEST_POSTGRES_TLS_DIR"))
}

/// `base` with `params` appended to its query string.
fn with(base: &str, params: &str) -> String {
    let separator = if base.contains('?') { '&' } else { '?' };
    format!("{base}{separator}{params}")
}

/// Options on a schema of the test's own.
fn options() -> StoreOptions {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    StoreOptions {
        schema: format!(
            "tls_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ),
        pool_size: 2,
        ..StoreOptions::default()
    }
}

async fn open(url: &str, options: &StoreOptions) -> Result<LogStore, StoreError> {
    LogStore::open(url, options).await
}

/// Migrates, writes 50 rows, reads them back; then checks on the store's own connection that it
/// is encrypted and who it is logged in as, and drops the schema.
async fn round_trip(store: &LogStore, options: &StoreOptions, user: &str) {
    store.migrate().await.expect("migrate over TLS");
    let report = store.write(&sample_logs(50, 0, now(), 1)).await.unwrap();
    assert_eq!(report.inserted, 50);
    let page = store
        .query(&LogQuery {
            limit: 100,
            ..LogQuery::default()
        })
        .await
        .unwrap();
    assert_eq!(page.logs.len(), 50);
    let LogStore::Postgres(pg) = store else {
        panic!("not PostgreSQL: {store:?}");
    };
    let client = pg.pool().get().await.unwrap();
    let row = client
        .query_one(
            "SELECT ssl, current_user::text FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "the connection is not encrypted");
    assert_eq!(row.get::<_, String>(1), user);
    client
        .batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", options.schema))
        .await
        .unwrap();
}

/// The error of opening `url`, as the operator reads it.
async fn refusal(url: &str, options: &StoreOptions) -> String {
    match open(url, options).await {
        Ok(_) => panic!("{url} connected; it should have been refused"),
        Err(err) => {
            eprintln!("{url} refused: {err}");
            err.to_string()
        }
    }
}

#[tokio::test]
async fn verify_full_with_the_test_ca_migrates_writes_and_queries() {
    let options = options();
    let url = with(
        &password_url(),
        &format!("sslmode=verify-full&sslrootcert={}", cert("ca.crt")),
    );
    let store = open(&url, &options).await.expect("verify-full");
    round_trip(&store, &options, "logpipe_tls").await;
}

#[tokio::test]
async fn verify_full_from_the_options_checks_a_dns_name() {
    // The settings as the config keys give them, and `localhost` (a DNS name of the server
    // certificate) rather than its IP address.
    let options = StoreOptions {
        tls: PgTls {
            sslmode: Some(SslMode::VerifyFull),
            sslrootcert: Some(cert("ca.crt")),
            ..PgTls::default()
        },
        ..options()
    };
    let url = password_url().replace("@127.0.0.1:", "@localhost:");
    let store = open(&url, &options)
        .await
        .expect("verify-full on localhost");
    round_trip(&store, &options, "logpipe_tls").await;
}

#[tokio::test]
async fn verify_ca_checks_the_chain_and_not_the_name() {
    // `host` is what the certificate is checked against; `hostaddr` is where to connect.
    let elsewhere = password_url().replace("@127.0.0.1:", "@not-the-server.invalid:");
    let elsewhere = with(&elsewhere, "hostaddr=127.0.0.1");
    let ca = format!("sslrootcert={}", cert("ca.crt"));
    let options = options();
    let store = open(
        &with(&elsewhere, &format!("sslmode=verify-ca&{ca}")),
        &options,
    )
    .await
    .expect("verify-ca ignores the host name");
    round_trip(&store, &options, "logpipe_tls").await;

    let error = refusal(
        &with(&elsewhere, &format!("sslmode=verify-full&{ca}")),
        &options,
    )
    .await;
    assert!(
        error.contains("certificate verify failed")
            && error.contains("not-the-server.invalid")
            && error.contains("sslmode=verify-ca"),
        "{error}"
    );
}

#[tokio::test]
async fn a_client_certificate_logs_in_as_its_common_name() {
    let url = format!(
        "postgres://logpipe_cert@127.0.0.1:{}/logpipe?sslmode=verify-full&sslrootcert={}",
        port(),
        cert("ca.crt")
    );
    let options = options();
    let with_certificate = with(
        &url,
        &format!(
            "sslcert={}&sslkey={}",
            cert("logpipe_cert-client.crt"),
            cert("logpipe_cert-client.key")
        ),
    );
    let store = open(&with_certificate, &options)
        .await
        .expect("certificate login");
    round_trip(&store, &options, "logpipe_cert").await;

    // The same role without its certificate: the server's `cert` method refuses it.
    let error = refusal(&url, &options).await;
    assert!(error.contains("certificate"), "{error}");
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_with_the_setting_to_check() {
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = with(
            &password_url(),
            &format!("sslmode={mode}&sslrootcert={}", cert("other-ca.crt")),
        );
        let error = refusal(&url, &options()).await;
        assert!(
            error.contains("certificate verify failed") && error.contains("postgres.sslrootcert"),
            "sslmode={mode}: {error}"
        );
    }
}

#[tokio::test]
async fn sslmode_disable_is_refused_and_the_error_says_the_server_demands_tls() {
    let url = with(&password_url(), "sslmode=disable");
    let error = refusal(&url, &options()).await;
    assert!(
        error.contains("no encryption")
            && error.contains("requires TLS")
            && error.contains("sslmode"),
        "{error}"
    );
}

#[tokio::test]
async fn require_and_prefer_without_a_ca_encrypt_without_verifying() {
    // The server's certificate is signed by a CA this client was never told about.
    for params in ["sslmode=require", ""] {
        let options = options();
        let url = if params.is_empty() {
            password_url()
        } else {
            with(&password_url(), params)
        };
        let store = open(&url, &options)
            .await
            .unwrap_or_else(|err| panic!("{params:?}: {err}"));
        round_trip(&store, &options, "logpipe_tls").await;
    }
}

#[tokio::test]
async fn a_missing_ca_file_is_named() {
    let url = with(
        &password_url(),
        "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt",
    );
    let error = refusal(&url, &options()).await;
    assert!(
        error.contains("/nonexistent/ca.crt") && error.contains("postgres.sslrootcert"),
        "{error}"
    );
}

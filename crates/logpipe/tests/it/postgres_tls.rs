//! `logpipe migrate` against the TLS-only PostgreSQL of scripts/lib/postgres_tls.sh: the TLS
//! settings from the URL's query string and from the config keys, end to end through the binary.

use crate::support::{finished, logpipe, required_env};

/// A schema of this test process's own.
fn schema(tag: &str) -> String {
    format!("tls_cli_{tag}_{}", std::process::id())
}

fn cert(name: &str) -> String {
    format!("{}/{name}", required_env("LOGPIPE_TEST_POSTGRES_TLS_DIR"))
}

/// `logpipe migrate --postgres-url URL` with `env`: exit code, stdout, stderr.
fn migrate(url: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let mut command = logpipe();
    command.envs(env.iter().copied());
    finished(command, &["migrate", "--postgres-url", url])
}

#[test]
fn migrate_over_verify_full_from_the_url() {
    let base = required_env("LOGPIPE_TEST_POSTGRES_TLS_URL");
    let schema = schema("url");
    let url = format!("{base}?sslmode=verify-full&sslrootcert={}", cert("ca.crt"));
    let (code, stdout, stderr) = migrate(&url, &[("LOGPIPE_POSTGRES_SCHEMA", &schema)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("applied to `{schema}`")),
        "{stdout}"
    );

    // The wrong CA: refused, and the message says what to check.
    let url = format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        cert("other-ca.crt")
    );
    let (code, _, stderr) = migrate(&url, &[("LOGPIPE_POSTGRES_SCHEMA", &schema)]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("certificate verify failed") && stderr.contains("postgres.sslrootcert"),
        "{stderr}"
    );
}

#[test]
fn migrate_over_verify_full_from_the_config_keys_and_the_url_wins() {
    let base = required_env("LOGPIPE_TEST_POSTGRES_TLS_URL");
    let schema = schema("keys");
    let ca = cert("ca.crt");
    let keys = [
        ("LOGPIPE_POSTGRES_SCHEMA", schema.as_str()),
        ("LOGPIPE_POSTGRES_SSLMODE", "verify-full"),
        ("LOGPIPE_POSTGRES_SSLROOTCERT", ca.as_str()),
    ];
    let (code, stdout, stderr) = migrate(&base, &keys);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stdout.contains(&format!("applied to `{schema}`")),
        "{stdout}"
    );

    // The keys are what verifies: another CA in them fails the same connection.
    let other = cert("other-ca.crt");
    let mut wrong = keys;
    wrong[2] = ("LOGPIPE_POSTGRES_SSLROOTCERT", other.as_str());
    let (code, _, stderr) = migrate(&base, &wrong);
    assert_ne!(code, 0);
    assert!(stderr.contains("certificate verify failed"), "{stderr}");

    // sslmode=disable in the URL beats verify-full in the keys, and this server demands TLS.
    let (code, _, stderr) = migrate(&format!("{base}?sslmode=disable"), &keys);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("no encryption") && stderr.contains("requires TLS"),
        "{stderr}"
    );
}

/// The whole pipeline on the TLS-only server: the consumer's pool stores the events and the query
/// API's pool reads them back (`/api/v1/logs`), with verify-full from the config keys and the
/// password as `postgres.password` (the URL holds none).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pipeline_stores_and_queries_through_verify_full() {
    use crate::consumer_flow::{assert_exact, generate, post_all, wait_for_rows};
    use crate::support::{start, test_config, unique};

    let server = url::Url::parse(&required_env("LOGPIPE_TEST_POSTGRES_TLS_URL")).unwrap();
    let mut config = test_config("");
    let mut url = server.clone();
    url.set_password(None).unwrap();
    config.postgres.url = url.to_string();
    config.postgres.password = server.password().unwrap().into();
    config.postgres.sslmode = logpipe_store::SslMode::VerifyFull;
    config.postgres.sslrootcert = cert("ca.crt");
    config.postgres.schema = schema("pipeline");
    let app = start(config, logpipe::app::Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let run = unique("pg-tls");
    let events = generate(200, 4, &run);
    assert_eq!(post_all(&base, &events, 50).await, 200);
    wait_for_rows(&run, &base, 200).await;
    assert_exact(&base, &run, &events).await;
    app.shutdown().await.unwrap();
}

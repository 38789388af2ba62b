//! `postgres.sslmode`, `postgres.sslrootcert`, `postgres.sslcert`, `postgres.sslkey`: parsed,
//! checked with the URL's own parameters, handed to the store, printed without secrets.

use super::*;

const URL: &str = "postgres://app@db/logs";

#[test]
fn tls_keys_default_to_prefer_and_reach_the_store() {
    let c = load(None, &[], &[]).unwrap();
    assert_eq!(c.postgres.sslmode, logpipe_store::SslMode::Prefer);
    assert_eq!(
        c.postgres.store_options().tls,
        logpipe_store::PgTls {
            sslmode: Some(logpipe_store::SslMode::Prefer),
            ..logpipe_store::PgTls::default()
        }
    );

    let file = format!(
        "[postgres]\nurl = \"{URL}\"\nsslmode = \"verify-full\"\nsslrootcert = \"/etc/ca.crt\"\n\
         sslcert = \"/etc/c.crt\"\nsslkey = \"/etc/c.key\"\n"
    );
    let c = load(Some(&file), &[], &[]).unwrap();
    let tls = c.postgres.query_store_options().tls;
    assert_eq!(tls.sslmode, Some(logpipe_store::SslMode::VerifyFull));
    assert_eq!(tls.sslrootcert.as_deref(), Some("/etc/ca.crt"));
    assert_eq!(tls.sslcert, Some("/etc/c.crt".into()));
    assert_eq!(tls.sslkey, Some("/etc/c.key".into()));

    // Every key has its environment variable.
    let c = load(
        None,
        &[
            ("LOGPIPE_POSTGRES_URL", URL),
            ("LOGPIPE_POSTGRES_SSLMODE", "verify-ca"),
            ("LOGPIPE_POSTGRES_SSLROOTCERT", "system"),
        ],
        &[],
    );
    // system demands verify-full, as in libpq.
    let message = err(c);
    assert!(message.contains("verify-full"), "{message}");
}

#[test]
fn an_unknown_sslmode_names_the_key_and_the_values() {
    let message = err(load(
        Some("[postgres]\nsslmode = \"verify_full\"\n"),
        &[],
        &[],
    ));
    assert!(
        message.contains("postgres.sslmode") && message.contains("verify-full"),
        "{message}"
    );
    // In the URL: the same check, at config check rather than at the first connection.
    let message = err(load(
        None,
        &[("LOGPIPE_POSTGRES_URL", "postgres://db/logs?sslmode=on")],
        &[],
    ));
    assert!(
        message.contains("postgres.url") && message.contains("sslmode `on`"),
        "{message}"
    );
}

#[test]
fn a_certificate_needs_its_key_and_verification_needs_a_ca() {
    let file = format!("[postgres]\nurl = \"{URL}\"\nsslcert = \"/etc/c.crt\"\n");
    let message = err(load(Some(&file), &[], &[]));
    assert!(message.contains("sslkey"), "{message}");
    // The key in the URL completes the key in the file.
    let file = format!("[postgres]\nurl = \"{URL}?sslkey=/etc/c.key\"\nsslcert = \"/etc/c.crt\"\n");
    load(Some(&file), &[], &[]).unwrap();

    let file = format!("[postgres]\nurl = \"{URL}\"\nsslmode = \"verify-ca\"\n");
    let message = err(load(Some(&file), &[], &[]));
    assert!(message.contains("postgres.sslrootcert"), "{message}");
    // The URL's sslmode wins over the key.
    let file = format!("[postgres]\nurl = \"{URL}?sslmode=require\"\nsslmode = \"verify-ca\"\n");
    load(Some(&file), &[], &[]).unwrap();
}

#[test]
fn config_check_shows_the_tls_paths_and_no_secret() {
    let mut c = Config::default();
    c.postgres.url = "postgres://app:hunter2@db/logs?sslmode=verify-full&sslkey=/url/c.key".into();
    c.postgres.sslrootcert = "/etc/logpipe/ca.crt".into();
    c.postgres.sslcert = "/etc/logpipe/client.crt".into();
    c.postgres.sslkey = "/etc/logpipe/client.key".into();
    let shown = toml::to_string(&redact::redacted(&c)).unwrap();
    assert!(!shown.contains("hunter2"), "{shown}");
    for path in [
        "/etc/logpipe/ca.crt",
        "/etc/logpipe/client.key",
        "sslkey=/url/c.key",
    ] {
        assert!(shown.contains(path), "{path} missing: {shown}");
    }
    assert!(shown.contains("sslmode = \"prefer\""), "{shown}");
}

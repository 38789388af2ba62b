//! Secrets through the binary: `logpipe config check` (text and `--json`) never shows a secret
//! given by value, by environment variable or by file, and shows the files' paths; against a
//! PostgreSQL and a Redis that demand a password (scripts/lib/auth_services.sh), a password given
//! apart from the URL connects, and a wrong one is refused without appearing in the error.

use std::collections::BTreeMap;
use std::path::Path;

use crate::support::{logpipe, required_env, unique};

const PG_PW: &str = "pg-pass-3c9e71a0";
const TOKEN: &str = "internal-token-d41f7b2e";
const KEY: &str = "api-key-8b0c5a6f9e2d";
const SASL_PW: &str = "sasl-pass-6a2f0d";

/// `logpipe ARGS` with `env`: exit success, stdout, stdout and stderr together.
fn run(args: &[&str], env: &BTreeMap<String, String>) -> (bool, String, String) {
    let out = logpipe().args(args).envs(env).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let all = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    (out.status.success(), stdout, all)
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

/// `config check` and `config check --json` succeed, show neither secret, and show `shown`.
fn assert_check_hides(args: &[&str], env: &BTreeMap<String, String>, shown: &[&str]) {
    for json in [false, true] {
        let mut argv = vec!["config", "check"];
        argv.extend_from_slice(args);
        if json {
            argv.push("--json");
        }
        let (ok, _, out) = run(&argv, env);
        assert!(ok, "{argv:?} failed:\n{out}");
        for secret in [PG_PW, TOKEN, KEY, SASL_PW] {
            assert!(!out.contains(secret), "{argv:?} shows {secret}:\n{out}");
        }
        for text in shown {
            assert!(out.contains(text), "{argv:?} does not show {text}:\n{out}");
        }
    }
}

#[test]
fn config_check_never_shows_a_secret_by_value_env_or_file() {
    let dir = tempfile::tempdir().unwrap();
    // By value, in the config file.
    let file = write(
        dir.path(),
        "logpipe.toml",
        &format!(
            "[postgres]\nurl = \"postgres://app@db:5432/logs\"\npassword = \"{PG_PW}\"\n\
             [producer]\ninternal_token = \"{TOKEN}\"\n[gateway]\napi_keys = [\"{KEY}\"]\n\
             [kafka.properties]\n\"sasl.password\" = \"{SASL_PW}\"\n"
        ),
    );
    assert_check_hides(&["--config", &file], &BTreeMap::new(), &["<redacted>"]);

    // By environment variable.
    let by_env = env(&[
        ("LOGPIPE_POSTGRES_URL", "postgres://app@db:5432/logs"),
        ("LOGPIPE_POSTGRES_PASSWORD", PG_PW),
        ("LOGPIPE_PRODUCER_INTERNAL_TOKEN", TOKEN),
        ("LOGPIPE_GATEWAY_API_KEYS", KEY),
        ("LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD", SASL_PW),
    ]);
    assert_check_hides(&[], &by_env, &["<redacted>"]);

    // By file, named by environment variables; the paths show.
    let pg = write(dir.path(), "pg", &format!("{PG_PW}\n"));
    let token = write(dir.path(), "token", &format!("{TOKEN}\n"));
    let keys = write(dir.path(), "keys", &format!("# keys\n{KEY}\n"));
    let sasl = write(dir.path(), "sasl", &format!("{SASL_PW}\n"));
    let by_file = env(&[
        ("LOGPIPE_POSTGRES_URL", "postgres://app@db:5432/logs"),
        ("LOGPIPE_POSTGRES_PASSWORD_FILE", &pg),
        ("LOGPIPE_PRODUCER_INTERNAL_TOKEN_FILE", &token),
        ("LOGPIPE_GATEWAY_API_KEYS_FILE", &keys),
        ("LOGPIPE_KAFKA_PROPERTY_FILE_SASL_PASSWORD", &sasl),
    ]);
    assert_check_hides(&[], &by_file, &["<redacted>", &pg, &token, &keys, &sasl]);

    // Both ways at once is refused, naming both keys.
    let mut both = by_file.clone();
    both.insert("LOGPIPE_POSTGRES_PASSWORD".into(), PG_PW.into());
    let (ok, _, out) = run(&["config", "check"], &both);
    assert!(!ok);
    assert!(
        out.contains("`postgres.password`") && out.contains("`postgres.password_file`"),
        "{out}"
    );
    assert!(!out.contains(PG_PW), "{out}");
}

/// The password-protected services of scripts/lib/auth_services.sh.
struct AuthServices {
    pg_url: String,
    pg_password: String,
    redis_url: String,
    redis_password: String,
}

fn auth_services() -> AuthServices {
    AuthServices {
        pg_url: required_env("LOGPIPE_TEST_AUTH_POSTGRES_URL"),
        pg_password: required_env("LOGPIPE_TEST_AUTH_POSTGRES_PASSWORD"),
        redis_url: required_env("LOGPIPE_TEST_AUTH_REDIS_URL"),
        redis_password: required_env("LOGPIPE_TEST_AUTH_REDIS_PASSWORD"),
    }
}

#[test]
fn a_store_password_from_a_file_connects_and_a_wrong_one_stays_out_of_the_error() {
    let services = auth_services();
    let dir = tempfile::tempdir().unwrap();
    let pg_file = write(dir.path(), "pg", &format!("{}\n", services.pg_password));
    let redis_file = write(
        dir.path(),
        "redis",
        &format!("{}\n", services.redis_password),
    );
    let schema = unique("it_secrets").replace('-', "_");
    let base = env(&[
        ("LOGPIPE_POSTGRES_URL", &services.pg_url),
        ("LOGPIPE_POSTGRES_SCHEMA", &schema),
        ("LOGPIPE_REDIS_URL", &services.redis_url),
        ("LOGPIPE_REDIS_KEY_PREFIX", &schema),
    ]);

    // The right passwords, from files: the schema is applied and the aggregates checked.
    let mut good = base.clone();
    good.insert("LOGPIPE_POSTGRES_PASSWORD_FILE".into(), pg_file.clone());
    good.insert("LOGPIPE_REDIS_PASSWORD_FILE".into(), redis_file.clone());
    let (ok, _, out) = run(&["migrate"], &good);
    assert!(ok, "migrate with postgres.password_file:\n{out}");
    let (ok, _, out) = run(&["aggregates", "verify", "--since", "1h"], &good);
    assert!(ok, "aggregates verify with both password files:\n{out}");
    for secret in [&services.pg_password, &services.redis_password] {
        assert!(!out.contains(secret.as_str()), "{out}");
    }

    // Without a password the server refuses: the password really is checked.
    let (ok, _, out) = run(&["migrate"], &base);
    assert!(!ok, "migrate without a password succeeded:\n{out}");

    // A wrong PostgreSQL password, by value: refused, and not in the error.
    let wrong_pg = "wrong-pg-password-5d1e";
    let mut bad = base.clone();
    bad.insert("LOGPIPE_POSTGRES_PASSWORD".into(), wrong_pg.into());
    let (ok, _, out) = run(&["migrate"], &bad);
    assert!(!ok, "migrate with a wrong password succeeded:\n{out}");
    assert!(out.contains("password authentication failed"), "{out}");
    assert!(!out.contains(wrong_pg), "the wrong password shows:\n{out}");

    // A wrong Redis password, by file: refused, and not in the error.
    let wrong_redis = "wrong-redis-password-a7c3";
    let wrong_file = write(dir.path(), "wrong", &format!("{wrong_redis}\n"));
    let mut bad = good.clone();
    bad.insert("LOGPIPE_REDIS_PASSWORD_FILE".into(), wrong_file);
    let (ok, _, out) = run(&["aggregates", "verify", "--since", "1h"], &bad);
    assert!(!ok, "verify with a wrong Redis password succeeded:\n{out}");
    assert!(out.contains("Password authentication failed"), "{out}");
    assert!(
        !out.contains(wrong_redis),
        "the wrong password shows:\n{out}"
    );
}

#[tokio::test]
async fn the_library_connects_with_the_password_spliced_in_only_at_the_call() {
    let services = auth_services();
    let mut config = logpipe::config::Config::default();
    config.postgres.url = services.pg_url.clone();
    config.postgres.password = services.pg_password.as_str().into();
    config.redis.url = services.redis_url.clone();
    config.redis.password = services.redis_password.as_str().into();
    config.redis.key_prefix = unique("it-secrets");
    logpipe_store::LogStore::open(
        config.postgres.connect_url().expose(),
        &config.postgres.store_options(),
    )
    .await
    .expect("PostgreSQL accepts postgres.password");
    logpipe_aggregates::Aggregates::open(
        config.redis.connect_url().expose(),
        &config.redis.agg_options(),
    )
    .await
    .expect("Redis accepts redis.password");
    // What is logged stays clean.
    let shown = format!("{config:?} {}", config.postgres.url);
    assert!(!shown.contains(&services.pg_password), "{shown}");
    assert!(!shown.contains(&services.redis_password), "{shown}");

    config.redis.password = "wrong-redis-password-0e9b".into();
    let error = logpipe_aggregates::Aggregates::open(
        config.redis.connect_url().expose(),
        &config.redis.agg_options(),
    )
    .await
    .expect_err("a wrong password is refused")
    .to_string();
    assert!(!error.contains("wrong-redis-password"), "{error}");
}

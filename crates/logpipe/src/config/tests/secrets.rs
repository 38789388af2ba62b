//! Secrets from every source (the file's value, a `LOGPIPE_*` variable, a `*_file` setting and
//! its variable): they load, and never show in `config check`'s text or JSON nor in `Debug`; a
//! value set twice or an unreadable file is an error naming the keys or the path.

use std::path::Path;

use super::{err, load};
use crate::config::*;

/// Every way `config check` and logging could show a config.
fn shown(config: &Config) -> String {
    format!(
        "{}\n{}\n{config:?}\n{config:#?}",
        toml::to_string_pretty(&redact::redacted(config)).unwrap(),
        serde_json::to_string_pretty(&redact::redacted(config)).unwrap(),
    )
}

fn assert_hidden(config: &Config, secrets: &[&str]) {
    let shown = shown(config);
    for secret in secrets {
        assert!(!shown.contains(secret), "{secret} shows in:\n{shown}");
    }
    assert!(shown.contains(redact::MASK), "{shown}");
}

/// Writes `content` to `name` in `dir` and returns the path as text.
fn secret_file(dir: &Path, name: &str, content: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    path.display().to_string()
}

const PG_PW: &str = "pg-pass-7f3a9c";
const REDIS_PW: &str = "redis-pass-41bd0e";
const TOKEN: &str = "internal-token-5e8d21c0";
const KEY1: &str = "api-key-one-a1b2c3d4e5";
const KEY2: &str = "api-key-two-f6e5d4c3b2";
const SASL_PW: &str = "sasl-pass-9d7c6b";

fn assert_loaded(c: &Config) {
    assert_eq!(c.postgres.password.expose(), PG_PW);
    assert_eq!(c.redis.password.expose(), REDIS_PW);
    assert_eq!(c.producer.internal_token.expose(), TOKEN);
    let keys: Vec<&str> = c.gateway.api_keys.iter().map(Secret::expose).collect();
    assert_eq!(keys, [KEY1, KEY2]);
    assert_eq!(c.kafka.properties["sasl.password"], SASL_PW);
    assert_hidden(c, &[PG_PW, REDIS_PW, TOKEN, KEY1, KEY2, SASL_PW]);
}

#[test]
fn secrets_given_by_value_load_and_never_show() {
    let file = format!(
        r#"
[postgres]
url = "postgres://app@db:5432/logs"
password = "{PG_PW}"
[redis]
url = "redis://cache:6379"
password = "{REDIS_PW}"
[producer]
internal_token = "{TOKEN}"
[gateway]
api_keys = ["{KEY1}", "{KEY2}"]
[kafka.properties]
"sasl.password" = "{SASL_PW}"
"#
    );
    assert_loaded(&load(Some(&file), &[], &[]).unwrap());
}

#[test]
fn secrets_given_by_environment_load_and_never_show() {
    let keys = format!("{KEY1},{KEY2}");
    let env = [
        ("LOGPIPE_POSTGRES_URL", "postgres://app@db:5432/logs"),
        ("LOGPIPE_POSTGRES_PASSWORD", PG_PW),
        ("LOGPIPE_REDIS_URL", "redis://cache:6379"),
        ("LOGPIPE_REDIS_PASSWORD", REDIS_PW),
        ("LOGPIPE_PRODUCER_INTERNAL_TOKEN", TOKEN),
        ("LOGPIPE_GATEWAY_API_KEYS", &keys),
        ("LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD", SASL_PW),
    ];
    assert_loaded(&load(None, &env, &[]).unwrap());
}

#[test]
fn secrets_given_by_file_load_and_never_show_while_their_paths_do() {
    let dir = tempfile::tempdir().unwrap();
    let pg = secret_file(dir.path(), "pg", &format!("{PG_PW}\n"));
    let redis = secret_file(dir.path(), "redis", &format!("{REDIS_PW}\r\n"));
    let token = secret_file(dir.path(), "token", TOKEN);
    let keys = secret_file(
        dir.path(),
        "keys",
        &format!("# the shipper\n{KEY1}\n\n  {KEY2}  \n# retired: old-key-0000000000000\n"),
    );
    let sasl = secret_file(dir.path(), "sasl", &format!("{SASL_PW}\n"));
    // Files named in the config file.
    let file = format!(
        r#"
[postgres]
url = "postgres://app@db:5432/logs"
password_file = "{pg}"
[redis]
url = "redis://cache:6379"
password_file = "{redis}"
[producer]
internal_token_file = "{token}"
[gateway]
api_keys_file = "{keys}"
[kafka.property_files]
"sasl.password" = "{sasl}"
"#
    );
    let c = load(Some(&file), &[], &[]).unwrap();
    assert_loaded(&c);
    let shown = shown(&c);
    for path in [&pg, &redis, &token, &keys, &sasl] {
        assert!(shown.contains(path.as_str()), "{path} not shown: {shown}");
    }
    assert!(!shown.contains("old-key"), "{shown}");

    // The same files named by environment variables.
    let env = [
        ("LOGPIPE_POSTGRES_URL", "postgres://app@db:5432/logs"),
        ("LOGPIPE_POSTGRES_PASSWORD_FILE", pg.as_str()),
        ("LOGPIPE_REDIS_URL", "redis://cache:6379"),
        ("LOGPIPE_REDIS_PASSWORD_FILE", redis.as_str()),
        ("LOGPIPE_PRODUCER_INTERNAL_TOKEN_FILE", token.as_str()),
        ("LOGPIPE_GATEWAY_API_KEYS_FILE", keys.as_str()),
        ("LOGPIPE_KAFKA_PROPERTY_FILE_SASL_PASSWORD", sasl.as_str()),
    ];
    let c = load(None, &env, &[]).unwrap();
    assert_loaded(&c);
    assert_eq!(
        c.kafka.property_files["sasl.password"],
        Path::new(&sasl),
        "LOGPIPE_KAFKA_PROPERTY_FILE_* fills kafka.property_files"
    );
    // And by flag.
    let c = load(
        None,
        &[],
        &[("producer.property_files.\"sasl.password\"", sasl.as_str())],
    )
    .unwrap();
    assert_eq!(c.producer.properties["sasl.password"], SASL_PW);
}

#[test]
fn a_property_read_from_a_file_is_masked_whatever_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let id = secret_file(dir.path(), "id", "client-id-b7e4\n");
    let c = load(
        None,
        &[("LOGPIPE_CONSUMER_PROPERTY_FILE_CLIENT_RACK", id.as_str())],
        &[],
    )
    .unwrap();
    assert_eq!(c.consumer.properties["client.rack"], "client-id-b7e4");
    assert_hidden(&c, &["client-id-b7e4"]);
}

#[test]
fn a_value_and_its_file_together_are_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let path = secret_file(dir.path(), "s", "from-file-0123456789\n");
    for (env, value_key, file_key) in [
        (
            [
                ("LOGPIPE_POSTGRES_PASSWORD", "pw-value"),
                ("LOGPIPE_POSTGRES_PASSWORD_FILE", path.as_str()),
            ],
            "postgres.password",
            "postgres.password_file",
        ),
        (
            [
                ("LOGPIPE_GATEWAY_API_KEYS", "key-value-0123456789"),
                ("LOGPIPE_GATEWAY_API_KEYS_FILE", path.as_str()),
            ],
            "gateway.api_keys",
            "gateway.api_keys_file",
        ),
        (
            [
                ("LOGPIPE_PRODUCER_INTERNAL_TOKEN", "token-value-0123456789"),
                ("LOGPIPE_PRODUCER_INTERNAL_TOKEN_FILE", path.as_str()),
            ],
            "producer.internal_token",
            "producer.internal_token_file",
        ),
        (
            [
                ("LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD", "pw-value"),
                ("LOGPIPE_KAFKA_PROPERTY_FILE_SASL_PASSWORD", path.as_str()),
            ],
            "kafka.properties.\"sasl.password\"",
            "kafka.property_files.\"sasl.password\"",
        ),
    ] {
        let message = err(load(None, &env, &[]));
        assert!(
            message.contains(&format!("`{value_key}`"))
                && message.contains(&format!("`{file_key}`")),
            "{message}"
        );
        assert!(!message.contains("from-file"), "{message}");
    }
}

#[test]
fn an_unreadable_or_empty_secret_file_is_an_error_naming_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing").display().to_string();
    let message = err(load(
        None,
        &[("LOGPIPE_REDIS_PASSWORD_FILE", missing.as_str())],
        &[],
    ));
    assert!(
        message.contains("redis.password_file") && message.contains(&missing),
        "{message}"
    );
    assert!(message.contains("No such file"), "the OS error: {message}");

    // A directory cannot be read as a file; the error still names the path.
    let folder = dir.path().display().to_string();
    let message = err(load(
        None,
        &[("LOGPIPE_KAFKA_PROPERTY_FILE_SASL_PASSWORD", folder.as_str())],
        &[],
    ));
    assert!(
        message.contains("kafka.property_files.\"sasl.password\"") && message.contains(&folder),
        "{message}"
    );

    let empty = secret_file(dir.path(), "empty", "\n");
    let message = err(load(
        None,
        &[("LOGPIPE_PRODUCER_INTERNAL_TOKEN_FILE", empty.as_str())],
        &[],
    ));
    assert!(message.contains("is empty"), "{message}");
    // A key file with comments only would open ingest to anyone.
    let comments = secret_file(dir.path(), "comments", "# no keys yet\n\n");
    let message = err(load(
        None,
        &[("LOGPIPE_GATEWAY_API_KEYS_FILE", comments.as_str())],
        &[],
    ));
    assert!(message.contains("holds no key"), "{message}");
}

#[test]
fn rules_on_secrets_never_echo_them() {
    let dir = tempfile::tempdir().unwrap();
    let short = secret_file(dir.path(), "short", "shortkey-77\n");
    let message = err(load(
        None,
        &[("LOGPIPE_GATEWAY_API_KEYS_FILE", short.as_str())],
        &[],
    ));
    assert!(message.contains("gateway.api_keys"), "{message}");
    assert!(!message.contains("shortkey-77"), "{message}");
}

#[test]
fn parse_and_type_errors_name_the_place_but_never_a_secret() {
    // A syntax error: the line is named, not quoted (it may hold the password).
    let error = Config::from_toml_str(
        "[postgres]\nurl = \"postgres://db/logs\"\npassword = hunter2-secret\n",
    )
    .unwrap_err()
    .to_string();
    assert!(!error.contains("hunter2"), "{error}");
    assert!(error.contains("line 3"), "{error}");
    // A secret of the wrong type: the key and what was expected, not the value.
    for (toml, key) in [
        (
            "[gateway]\napi_keys = \"my-secret-api-key-0123456789\"\n",
            "gateway.api_keys",
        ),
        (
            "[postgres]\npassword = 1234567890123\n",
            "postgres.password",
        ),
        (
            "[kafka.properties]\n\"sasl.password\" = 98765432109\n",
            "sasl.password",
        ),
    ] {
        let error = Config::from_toml_str(toml).unwrap_err().to_string();
        assert!(error.contains(key), "{error}");
        assert!(error.contains("expected"), "{error}");
        for secret in ["my-secret-api-key", "1234567890123", "98765432109"] {
            assert!(!error.contains(secret), "{error}");
        }
    }
    // Other keys keep serde's whole message, value included.
    let error = Config::from_toml_str("[consumer]\nbatch_size = \"many\"\n")
        .unwrap_err()
        .to_string();
    assert!(error.contains("many"), "{error}");
}

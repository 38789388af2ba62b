//! Secrets never leave the process in clear: `logpipe config check` and start-up logs print the
//! effective configuration through [`redacted`], which masks passwords in URLs, API keys, and
//! librdkafka properties that hold credentials.

use super::Config;

/// Shown in place of a secret.
pub const MASK: &str = "<redacted>";

/// A copy of the configuration that is safe to print.
pub fn redacted(config: &Config) -> Config {
    let mut c = config.clone();
    c.postgres.url = redact_url(&c.postgres.url);
    c.redis.url = redact_url(&c.redis.url);
    c.gateway.api_keys = c
        .gateway
        .api_keys
        .iter()
        .map(|_| MASK.to_string())
        .collect();
    for props in [
        &mut c.kafka.properties,
        &mut c.producer.properties,
        &mut c.consumer.properties,
    ] {
        for (key, value) in props.iter_mut() {
            if is_secret_property(key) {
                *value = MASK.to_string();
            }
        }
    }
    c
}

/// librdkafka properties that carry credentials or private keys.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl_key",
        "token",
    ]
    .iter()
    .any(|needle| key.contains(needle))
}

/// Masks the password (and a bare username used as a token) of a URL; leaves the rest readable.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut url) if url.password().is_some() => {
            // `<` and `>` would be percent-encoded by the URL type; splice the mask in as text.
            const PLACEHOLDER: &str = "LOGPIPEREDACTED";
            let _ = url.set_password(Some(PLACEHOLDER));
            url.to_string().replace(PLACEHOLDER, MASK)
        }
        Ok(_) => raw.to_string(),
        // Not a URL: it may still hold a secret; print nothing of it.
        Err(_) if raw.is_empty() => String::new(),
        Err(_) => MASK.to_string(),
    }
}

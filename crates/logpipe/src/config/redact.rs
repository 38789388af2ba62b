//! Secrets never leave the process in clear: `logpipe config check` and start-up logs print the
//! effective configuration through [`redacted`], which masks passwords in URLs and librdkafka
//! properties that hold credentials or came from files; API keys, the internal token and the
//! store passwords are [`Secret`](super::Secret)s, masked wherever they are printed. Every URL that is logged or echoed (store URLs,
//! the producer URL, the consumers' metrics URLs) goes through [`redact_url`] first.

use super::Config;

/// Shown in place of a secret.
pub const MASK: &str = "<redacted>";

/// Shown in place of a secret query-parameter value: plain characters, so the URL stays a URL.
pub const QUERY_MASK: &str = "***";

/// A copy of the configuration that is safe to print.
pub fn redacted(config: &Config) -> Config {
    let mut c = config.clone();
    c.postgres.url = redact_url(&c.postgres.url);
    c.redis.url = redact_url(&c.redis.url);
    c.gateway.producer_url = redact_url(&c.gateway.producer_url);
    for url in &mut c.gateway.consumer_metrics_urls {
        *url = redact_url(url);
    }
    // `gateway.api_keys`, `producer.internal_token` and the store passwords are `Secret`s,
    // which print as the mask by themselves. Properties read from files are masked whatever
    // their name: a file is how secrets are mounted.
    for (props, files) in [
        (&mut c.kafka.properties, &c.kafka.property_files),
        (&mut c.producer.properties, &c.producer.property_files),
        (&mut c.consumer.properties, &c.consumer.property_files),
    ] {
        for (key, value) in props.iter_mut() {
            if is_secret_property(key) || files.contains_key(key) {
                *value = MASK.to_string();
            }
        }
    }
    c
}

/// `{:?}` of a config shows what [`redacted`] does: URL passwords, secret-looking properties and
/// properties read from files are masked, as the [`Secret`](super::Secret)s are.
impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Config {
            kafka,
            producer,
            consumer,
            gateway,
            limits,
            http,
            postgres,
            redis,
            log,
            retry,
            dlq,
        } = redacted(self);
        f.debug_struct("Config")
            .field("kafka", &kafka)
            .field("producer", &producer)
            .field("consumer", &consumer)
            .field("gateway", &gateway)
            .field("limits", &limits)
            .field("http", &http)
            .field("postgres", &postgres)
            .field("redis", &redis)
            .field("log", &log)
            .field("retry", &retry)
            .field("dlq", &dlq)
            .finish()
    }
}

/// librdkafka properties that carry credentials or private keys.
pub fn is_secret_property(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "jaas",
        "sasl.oauthbearer.config",
        "ssl.key.pem",
        "ssl_key",
        "token",
    ]
    .iter()
    .any(|needle| key.contains(needle))
}

/// Query-parameter names that carry a secret whatever surrounds them.
const SECRET_PARAM_PARTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "accesskey",
    "access_key",
    "privatekey",
    "private_key",
    "credential",
    "signature",
];

/// Query-parameter names that are secrets only as a whole word (`pass` yes, `passive` no).
const SECRET_PARAM_NAMES: &[&str] = &["pass", "pwd", "key", "auth", "sig", "sas"];

/// Whether a query parameter named `name` (already percent-decoded) holds a secret.
pub fn is_secret_param(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase().replace('-', "_");
    SECRET_PARAM_PARTS.iter().any(|part| name.contains(part))
        || SECRET_PARAM_NAMES.contains(&name.as_str())
        // `sslkey`, `x_key`, `x.key`: a key of some kind.
        || name.ends_with("_key")
        || name.ends_with(".key")
}

/// Masks the secrets of a URL and leaves the rest readable: the userinfo password becomes
/// [`MASK`], and the value of every secret-looking query parameter ([`is_secret_param`])
/// becomes [`QUERY_MASK`]. A string that is not a URL is masked whole, since it may be a secret.
pub fn redact_url(raw: &str) -> String {
    let mut url = match url::Url::parse(raw) {
        Ok(url) => url,
        Err(_) if raw.is_empty() => return String::new(),
        Err(_) => return MASK.to_string(),
    };
    let mut changed = false;
    if let Some(query) = url.query() {
        let masked = redact_query(query);
        if masked != query {
            url.set_query(Some(&masked));
            changed = true;
        }
    }
    // `<` and `>` would be percent-encoded by the URL type; splice the mask in as text.
    const PLACEHOLDER: &str = "LOGPIPEREDACTED";
    let password = url.password().is_some();
    if password {
        let _ = url.set_password(Some(PLACEHOLDER));
        changed = true;
    }
    if !changed {
        return raw.to_string();
    }
    let shown = url.to_string();
    if password {
        shown.replacen(PLACEHOLDER, MASK, 1)
    } else {
        shown
    }
}

/// `a=1&password=x` → `a=1&password=***`, pair by pair, keeping every other byte as written
/// (re-encoding the whole query would change how the rest reads).
fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let decoded: String = url::form_urlencoded::parse(name.as_bytes())
                .map(|(k, _)| k.into_owned())
                .next()
                .unwrap_or_default();
            if is_secret_param(&decoded) && !value.is_empty() {
                format!("{name}={QUERY_MASK}")
            } else {
                pair.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userinfo_password_is_masked_and_the_user_kept() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/logs"),
            "postgres://app:<redacted>@db:5432/logs"
        );
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:<redacted>@cache:6379/0"
        );
    }

    #[test]
    fn secret_query_parameters_are_masked_in_any_position() {
        for (raw, shown) in [
            (
                "postgres://db/logs?password=hunter2",
                "postgres://db/logs?password=***",
            ),
            (
                "postgres://db/logs?sslmode=require&password=hunter2&application_name=lp",
                "postgres://db/logs?sslmode=require&password=***&application_name=lp",
            ),
            (
                "http://c:8082/metrics?token=abc&x=1",
                "http://c:8082/metrics?token=***&x=1",
            ),
            ("http://c/metrics?a=1&pwd=p", "http://c/metrics?a=1&pwd=***"),
            ("http://c/?pass=p", "http://c/?pass=***"),
            ("http://c/?Secret=p", "http://c/?Secret=***"),
            ("http://c/?key=p", "http://c/?key=***"),
            ("http://c/?api_key=p", "http://c/?api_key=***"),
            ("http://c/?api-key=p", "http://c/?api-key=***"),
            ("http://c/?apiKey=p", "http://c/?apiKey=***"),
            ("http://c/?access_key=p", "http://c/?access_key=***"),
            ("http://c/?access_token=p", "http://c/?access_token=***"),
            ("http://c/?client_secret=p", "http://c/?client_secret=***"),
            ("http://c/?sslpassword=p", "http://c/?sslpassword=***"),
            // A percent-encoded name is still recognised.
            ("http://c/?pass%77ord=p", "http://c/?pass%77ord=***"),
        ] {
            let got = redact_url(raw);
            assert_eq!(got, shown, "{raw}");
        }
    }

    #[test]
    fn password_in_userinfo_and_query_together() {
        let got = redact_url("postgres://u:pw1@db/x?password=pw2&sslmode=disable");
        assert_eq!(
            got,
            "postgres://u:<redacted>@db/x?password=***&sslmode=disable"
        );
    }

    #[test]
    fn harmless_urls_are_unchanged() {
        for raw in [
            "http://127.0.0.1:8081",
            "http://127.0.0.1:8082/metrics",
            "postgres://postgres@127.0.0.1:5432/test",
            "postgres://db/x?sslmode=require&application_name=logpipe",
            // Look-alikes that are not secrets.
            "http://c/?passive=1&keyword=x&monkey=3",
            // An empty value has nothing to hide.
            "http://c/?password=",
        ] {
            assert_eq!(redact_url(raw), raw);
        }
    }

    #[test]
    fn what_is_not_a_url_is_masked_whole() {
        assert_eq!(redact_url(""), "");
        assert_eq!(redact_url("host=db password=hunter2"), MASK);
    }

    #[test]
    fn redacted_config_masks_every_url_it_prints() {
        let mut c = Config::default();
        c.gateway.producer_url = "http://u:pp1@producer:8081/?token=tt1".into();
        c.gateway.consumer_metrics_urls = vec!["http://c:8082/metrics?api_key=kk1".into()];
        c.producer.internal_token = "internal-token-0123456789".into();
        let shown = toml::to_string(&redacted(&c)).unwrap();
        for secret in ["pp1", "tt1", "kk1", "internal-token-0123456789"] {
            assert!(!shown.contains(secret), "{secret} leaked: {shown}");
        }
        assert!(
            shown.contains("http://c:8082/metrics?api_key=***"),
            "{shown}"
        );
    }
}

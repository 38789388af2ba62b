//! Store passwords joined to their URLs at the point of use: `postgres.password` and
//! `redis.password` stay out of `postgres.url` / `redis.url` (which are then safe to log), and
//! [`PostgresConfig::connect_url`] / [`RedisConfig::connect_url`] splice them in only for the
//! call that connects. Also the rules [`check`] applies to those keys at validation.

use anyhow::ensure;

use super::{Config, PostgresConfig, RedisConfig, Secret};

impl PostgresConfig {
    /// The URL to connect with: `url` with `password` in place of the URL's own password when
    /// set. Hand it straight to the store; never log it (log `url`).
    pub fn connect_url(&self) -> Secret {
        with_password(&self.url, &self.password)
    }
}

impl RedisConfig {
    /// The URL to connect with: `url` with `password` in place of the URL's own password when
    /// set. Hand it straight to the aggregates; never log it (log `url`).
    pub fn connect_url(&self) -> Secret {
        with_password(&self.url, &self.password)
    }
}

/// `url` with `password` as its userinfo password (percent-encoded by the URL type, so any
/// character may appear in the password); `url` unchanged when `password` is empty or `url`
/// cannot take one ([`check`] refuses that combination at load).
fn with_password(url: &str, password: &Secret) -> Secret {
    if password.is_empty() {
        return Secret::from(url);
    }
    let Ok(mut parsed) = url::Url::parse(url) else {
        return Secret::from(url);
    };
    match parsed.set_password(Some(password.expose())) {
        Ok(()) => Secret::from(String::from(parsed)),
        Err(()) => Secret::from(url),
    }
}

/// `postgres.password` and `redis.password` need a URL with a host to go into.
pub(super) fn check(config: &Config) -> anyhow::Result<()> {
    for (key, url, password) in [
        ("postgres", &config.postgres.url, &config.postgres.password),
        ("redis", &config.redis.url, &config.redis.password),
    ] {
        if password.is_empty() {
            continue;
        }
        ensure!(
            !url.trim().is_empty(),
            "config key `{key}.password` is set but `{key}.url` is empty (the embedded store \
             takes no password); set {key}.url, or unset {key}.password / {key}.password_file"
        );
        let host = url::Url::parse(url)
            .ok()
            .is_some_and(|u| u.host_str().is_some_and(|h| !h.is_empty()));
        ensure!(
            host,
            "config key `{key}.password` needs `{key}.url` to name a host (a URL like \
             {key}://user@host:port/...) to put the password into; for a Unix socket put the \
             password in the URL"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_replaces_the_urls_own_and_is_encoded() {
        let url = |url: &str, password: &str| {
            with_password(url, &Secret::from(password))
                .expose()
                .to_string()
        };
        assert_eq!(
            url("postgres://app@db:5432/logs", "p@ss:w/rd"),
            "postgres://app:p%40ss%3Aw%2Frd@db:5432/logs"
        );
        assert_eq!(
            url("postgres://app:old@db/logs?sslmode=disable", "new"),
            "postgres://app:new@db/logs?sslmode=disable"
        );
        assert_eq!(
            url("redis://cache:6379/0", "s3cret"),
            "redis://:s3cret@cache:6379/0"
        );
        // No password: the URL as written.
        assert_eq!(
            url("redis://:inurl@cache:6379", ""),
            "redis://:inurl@cache:6379"
        );
    }

    #[test]
    fn a_password_without_a_url_host_is_refused() {
        let mut config = Config::default();
        config.redis.password = "s3cret-value".into();
        let error = check(&config).unwrap_err().to_string();
        assert!(error.contains("redis.url"), "{error}");
        config.redis.url = "unix:///run/redis.sock".into();
        let error = check(&config).unwrap_err().to_string();
        assert!(error.contains("host"), "{error}");
        assert!(!error.contains("s3cret"), "{error}");
        config.redis.url = "redis://cache:6379".into();
        check(&config).unwrap();
    }
}

//! `[http]`: the limits every logpipe HTTP listener (gateway, producer service, consumer
//! health/metrics) enforces on its connections and requests, so a slow or hostile client cannot
//! hold a socket, a task or a shutdown open for ever.

use std::time::Duration;

use anyhow::ensure;
use serde::{Deserialize, Serialize};

use super::Config;

/// Server limits shared by the three HTTP services.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A client must send a request's whole header within this time, or the connection is
    /// closed. hyper also runs this clock while a kept-alive connection waits for its next
    /// request, so it bounds idle keep-alive connections too.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// A connection on which no byte moves in either direction for this long is closed (e.g. a
    /// client that stops reading its response). Must be at least `request_timeout`, so a
    /// request that is still being handled always gets its answer first.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Upper bound on one request, body read included; past it the client gets 503
    /// `request_timeout` with `Retry-After`. Must exceed the longest legitimate wait: a publish
    /// (`producer.enqueue_timeout` + `producer.delivery_timeout`) and the gateway's own
    /// `gateway.request_timeout`.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Most open connections per listener; past it new connections wait in the kernel's accept
    /// backlog until one closes.
    pub max_connections: usize,
    /// Most requests handled at once per listener; past it the client gets 503 `overloaded`
    /// with `Retry-After` at once (health and metrics routes are exempt).
    pub max_in_flight_requests: usize,
    /// After SIGTERM, open connections get this long to finish their requests; then the
    /// listener closes them and returns.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            // A real client sends its header in one packet; 10 s leaves room for a slow mobile
            // link while freeing a slowloris socket quickly.
            header_read_timeout: Duration::from_secs(10),
            // Above `request_timeout` (see the rule there); a reader stalled for a minute is gone.
            idle_timeout: Duration::from_secs(60),
            // Twice the gateway's 15 s upstream bound and well above a publish's 1 s enqueue +
            // 10 s delivery wait: only a stuck request ever reaches it.
            request_timeout: Duration::from_secs(30),
            // Far above any real fleet of log shippers (which keep a few pooled connections
            // each), and well below the default 1 Mi file-descriptor limit of containers.
            max_connections: 10_000,
            // A gateway request takes milliseconds; 1024 at once is already a backlog worth
            // shedding, and it bounds the memory of buffered bodies (1024 x max_body_bytes).
            max_in_flight_requests: 1024,
            // Matches the default 30 s Kubernetes grace period minus the time the producer and
            // the consumer need to flush after the listeners stop.
            shutdown_timeout: Duration::from_secs(10),
        }
    }
}

impl HttpConfig {
    /// The rules of `[http]`, some against the producer's and the gateway's timeouts.
    pub(crate) fn check(config: &Config) -> anyhow::Result<()> {
        let h = &config.http;
        for (key, value) in [
            ("http.header_read_timeout", h.header_read_timeout),
            ("http.idle_timeout", h.idle_timeout),
            ("http.request_timeout", h.request_timeout),
        ] {
            ensure!(!value.is_zero(), "config key `{key}`: must be more than 0");
        }
        for (key, value) in [
            ("http.max_connections", h.max_connections),
            ("http.max_in_flight_requests", h.max_in_flight_requests),
        ] {
            ensure!(value >= 1, "config key `{key}`: must be at least 1");
        }
        let publish = config.producer.enqueue_timeout + config.producer.delivery_timeout;
        let longest = publish.max(config.gateway.request_timeout);
        ensure!(
            h.request_timeout > longest,
            "config key `http.request_timeout`: {} would cut off requests that may legitimately \
             take up to {} (producer.enqueue_timeout + producer.delivery_timeout, or \
             gateway.request_timeout); raise it above that",
            humantime::format_duration(h.request_timeout),
            humantime::format_duration(longest)
        );
        ensure!(
            h.idle_timeout >= h.request_timeout,
            "config key `http.idle_timeout`: {} is less than `http.request_timeout` ({}), so a \
             connection could be closed while its request is still being handled; raise it",
            humantime::format_duration(h.idle_timeout),
            humantime::format_duration(h.request_timeout)
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_pass() {
        HttpConfig::check(&Config::default()).unwrap();
    }

    #[test]
    fn a_request_timeout_below_a_publish_is_rejected_with_the_key() {
        let mut config = Config::default();
        config.http.request_timeout = Duration::from_secs(5);
        let message = HttpConfig::check(&config).unwrap_err().to_string();
        assert!(message.contains("http.request_timeout"), "{message}");
        assert!(message.contains("delivery_timeout"), "{message}");
    }

    #[test]
    fn an_idle_timeout_below_the_request_timeout_is_rejected() {
        let mut config = Config::default();
        config.http.idle_timeout = Duration::from_secs(20);
        let message = HttpConfig::check(&config).unwrap_err().to_string();
        assert!(message.contains("http.idle_timeout"), "{message}");
    }

    #[test]
    fn zero_limits_are_rejected() {
        let mut config = Config::default();
        config.http.max_in_flight_requests = 0;
        let message = HttpConfig::check(&config).unwrap_err().to_string();
        assert!(message.contains("http.max_in_flight_requests"), "{message}");
    }
}

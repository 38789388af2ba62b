//! `[gateway]` and `[limits]`: the HTTP ingest edge and the limits of the event model.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ApiKeyConfig, Secret};

/// The HTTP ingest gateway (`logpipe gateway`, :8080).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Producer service URL in split mode (`logpipe gateway`). `logpipe run` calls the producer
    /// in-process and ignores this.
    pub producer_url: String,
    /// Largest request body accepted, in bytes, after gzip decompression too (413 beyond).
    pub max_body_bytes: usize,
    /// Most events in one batch request (413 beyond).
    pub max_batch_events: usize,
    /// Upper bound on one request's handling; beyond it the client gets 503, never a hang.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// `Retry-After` sent with 503 responses.
    #[serde(with = "humantime_serde")]
    pub retry_after: Duration,
    /// Plain API keys, each with the `ingest` and `read` scopes. Clients send
    /// `Authorization: Bearer KEY` or `X-API-Key: KEY`. Env: `LOGPIPE_GATEWAY_API_KEYS=key1,key2`.
    /// Prefer `keys`, which stores digests and scopes each key. Never printed.
    pub api_keys: Vec<Secret>,
    /// A file holding `api_keys` instead, one key per line (blank lines and `#` comments
    /// ignored), read at start-up: a mounted Kubernetes or Docker secret. Not with `api_keys`.
    pub api_keys_file: PathBuf,
    /// Scoped API keys, stored as SHA-256 digests (`[[gateway.keys]]`). With neither these nor
    /// `api_keys`, ingest is open and stored logs are served only to clients on this machine.
    pub keys: Vec<ApiKeyConfig>,
    /// Without any API key, serve stored logs (query API, dashboard data) to clients that are not
    /// on this machine too. Off: an explicit opt-in to exposing every stored log.
    pub public_reads_without_keys: bool,
    /// The consumers the dashboard reads in split mode (`logpipe gateway`), summed over all of
    /// them: each one's typed figures come from `/stats` beside the URL (a `/metrics` URL, a base
    /// URL or a `/stats` URL all work). Empty shows consumer figures as not available. `logpipe
    /// run` reads its own consumer in-process and ignores this.
    pub consumer_metrics_urls: Vec<String>,
    /// `GET /api/v1/logs?q=…` (a substring scan) without `since` searches this far back from
    /// `until` (or now).
    #[serde(with = "humantime_serde")]
    pub query_default_range: Duration,
    /// Widest time range a `q` search may cover (400 beyond, naming this maximum).
    #[serde(with = "humantime_serde")]
    pub query_max_range: Duration,
    /// Longest `q`, in characters (400 beyond).
    pub query_max_q_chars: usize,
    /// Loki push: the stream labels that name the service, first present wins.
    pub loki_service_labels: Vec<String>,
    /// Loki push: the service of a stream with none of `loki_service_labels`.
    pub loki_default_service: String,
    /// Elasticsearch bulk: where a document keeps each event field.
    pub elasticsearch_fields: ElasticsearchFields,
    /// A second listen address serving the OTLP/HTTP receiver (`POST /v1/logs`) and health, on
    /// the port OpenTelemetry exporters default to (`0.0.0.0:4318`). Empty (the default): off;
    /// `/v1/logs` is served on `listen` either way.
    #[serde(with = "optional_addr")]
    pub otlp_listen: Option<SocketAddr>,
    /// The service of OTLP log records whose resource has no `service.name` (what the
    /// OpenTelemetry SDKs themselves report then).
    pub otlp_default_service: logpipe_model::ServiceName,
}

/// `[gateway.elasticsearch_fields]`: the document fields (dotted paths, looked up both as nested
/// objects and as literal dotted keys) that become an event's fields; ECS names by default.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ElasticsearchFields {
    pub message: String,
    pub timestamp: String,
    pub level: String,
    pub service: String,
    pub host: String,
    /// The service of a document without the `service` field.
    pub default_service: String,
}

impl Default for ElasticsearchFields {
    fn default() -> Self {
        Self {
            message: "message".into(),
            timestamp: "@timestamp".into(),
            level: "log.level".into(),
            service: "service.name".into(),
            host: "host.name".into(),
            default_service: "unknown_service".into(),
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            producer_url: "http://127.0.0.1:8081".into(),
            max_body_bytes: 10 * 1024 * 1024,
            max_batch_events: 10_000,
            request_timeout: Duration::from_secs(15),
            retry_after: Duration::from_secs(1),
            api_keys: Vec::new(),
            api_keys_file: PathBuf::new(),
            keys: Vec::new(),
            public_reads_without_keys: false,
            consumer_metrics_urls: vec!["http://127.0.0.1:8082/metrics".into()],
            query_default_range: Duration::from_secs(24 * 3600),
            query_max_range: Duration::from_secs(7 * 24 * 3600),
            query_max_q_chars: 200,
            loki_service_labels: ["service_name", "service", "job", "app"]
                .map(String::from)
                .to_vec(),
            loki_default_service: "unknown_service".into(),
            elasticsearch_fields: ElasticsearchFields::default(),
            otlp_listen: None,
            otlp_default_service: "unknown_service".parse().expect("a valid service name"),
        }
    }
}

/// An optional listen address written as a string: empty is off (TOML has no null, and an
/// environment variable can only be set to empty).
mod optional_addr {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(addr: &Option<SocketAddr>, s: S) -> Result<S::Ok, S::Error> {
        match addr {
            Some(addr) => s.collect_str(addr),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        if text.trim().is_empty() {
            return Ok(None);
        }
        text.trim().parse().map(Some).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a listen address like 0.0.0.0:4318 (or empty for off): {e}"
            ))
        })
    }
}

/// Limits of the log event model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest `message`, in bytes.
    pub max_message_bytes: usize,
    /// Most keys in `attributes`.
    pub max_attributes: usize,
    /// Largest `attributes` object, in bytes of compact JSON.
    pub max_attributes_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        let d = logpipe_model::Limits::default();
        Self {
            max_message_bytes: d.max_message_bytes,
            max_attributes: d.max_attributes,
            max_attributes_bytes: d.max_attributes_bytes,
        }
    }
}

impl LimitsConfig {
    pub fn to_model(&self) -> logpipe_model::Limits {
        logpipe_model::Limits {
            max_message_bytes: self.max_message_bytes,
            max_attributes: self.max_attributes,
            max_attributes_bytes: self.max_attributes_bytes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::Config;
    use std::time::Duration;

    #[test]
    fn query_bounds_are_validated_naming_the_key() {
        let error = |tune: fn(&mut Config)| {
            let mut c = Config::default();
            tune(&mut c);
            c.validate().unwrap_err().to_string()
        };
        assert!(Config::default().validate().is_ok());
        let e = error(|c| c.gateway.query_default_range = Duration::from_secs(8 * 24 * 3600));
        assert!(e.contains("gateway.query_default_range"), "{e}");
        let e = error(|c| c.gateway.query_default_range = Duration::ZERO);
        assert!(e.contains("gateway.query_default_range"), "{e}");
        let e = error(|c| c.gateway.query_max_range = Duration::from_secs(1));
        assert!(e.contains("gateway.query_max_range"), "{e}");
        let e = error(|c| c.gateway.query_max_q_chars = 0);
        assert!(e.contains("gateway.query_max_q_chars"), "{e}");
        let e = error(|c| c.gateway.loki_default_service = "no spaces".into());
        assert!(e.contains("gateway.loki_default_service"), "{e}");
        let e = error(|c| c.gateway.elasticsearch_fields.default_service = String::new());
        assert!(
            e.contains("gateway.elasticsearch_fields.default_service"),
            "{e}"
        );
        let e = error(|c| c.gateway.elasticsearch_fields.message = String::new());
        assert!(e.contains("gateway.elasticsearch_fields.message"), "{e}");
    }

    #[test]
    fn otlp_keys_parse_empty_as_off_and_name_the_key_when_wrong() {
        let load = |toml: &str| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("logpipe.toml");
            std::fs::write(&path, toml).unwrap();
            Config::load(&super::super::Sources {
                file: Some(path),
                env: Vec::new(),
                overrides: Vec::new(),
            })
        };
        let c = load("[gateway]\notlp_listen = \"\"\n").unwrap();
        assert_eq!(c.gateway.otlp_listen, None);
        assert_eq!(c.gateway.otlp_default_service.as_str(), "unknown_service");
        let c =
            load("[gateway]\notlp_listen = \"0.0.0.0:4318\"\notlp_default_service = \"edge\"\n")
                .unwrap();
        assert_eq!(c.gateway.otlp_listen.map(|a| a.port()), Some(4318));
        assert_eq!(c.gateway.otlp_default_service.as_str(), "edge");
        for bad in [
            "otlp_listen = \"4318\"",
            "otlp_default_service = \"my service\"",
        ] {
            let e = format!("{:#}", load(&format!("[gateway]\n{bad}\n")).unwrap_err());
            let key = bad.split(' ').next().unwrap();
            assert!(e.contains(&format!("gateway.{key}")), "{e}");
        }
        let from_env = Config::load(&super::super::Sources {
            file: None,
            env: vec![(
                "LOGPIPE_GATEWAY_OTLP_LISTEN".into(),
                "127.0.0.1:4318".into(),
            )],
            overrides: Vec::new(),
        })
        .unwrap();
        assert_eq!(from_env.gateway.otlp_listen.map(|a| a.port()), Some(4318));
    }
}

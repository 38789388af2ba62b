//! The gateway's client for the producer service in split mode: keep-alive connection pool,
//! one POST per ingest request carrying `producer.internal_token` (when set) as a bearer token,
//! failures mapped back to [`PublishError`], and a readiness probe: the producer's
//! `/health/ready` (which itself means "Kafka reachable") and, until it succeeds, an empty publish
//! that proves the producer takes this gateway's token. A gateway with the wrong token is not
//! ready, and says why, instead of answering every ingest request 503.

use crate::config::redact::redact_url;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use super::service::{INGEST_MS_HEADER, PUBLISH_PATH};
use super::{Batch, PublishError};
use crate::http::REQUEST_ID_HEADER;
use crate::kafka::health::KafkaHealth;
use crate::retry;

/// HTTP client of the producer service.
#[derive(Clone)]
pub struct ProducerClient {
    http: reqwest::Client,
    base: String,
    /// `Authorization` value sent with each publish; `None` when no token is configured.
    authorization: Option<reqwest::header::HeaderValue>,
    health: KafkaHealth,
    /// Whether the producer accepted the token: proven once by the probe, withdrawn by a 401.
    authorized: Arc<AtomicBool>,
    /// Whether the current refusal was logged (once per refusal, not per probe).
    refusal_logged: Arc<AtomicBool>,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
    #[serde(default)]
    failed: Vec<FailedItem>,
    /// The producer's limit, with `too_many_events`.
    #[serde(default)]
    limit: Option<usize>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: String,
    message: String,
}

#[derive(Deserialize)]
struct FailedItem {
    index: usize,
    reason: String,
}

impl ProducerClient {
    /// A client for the producer at `base` (`http://host:8081`); `timeout` bounds each call;
    /// `token` is `producer.internal_token` (empty sends none).
    pub fn new(base: &str, timeout: Duration, token: &str) -> anyhow::Result<Self> {
        let authorization = if token.is_empty() {
            None
        } else {
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| {
                    anyhow::anyhow!(
                        "config key `producer.internal_token`: must be visible ASCII characters only"
                    )
                })?;
            value.set_sensitive(true);
            Some(value)
        };
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            base: base.trim_end_matches('/').to_string(),
            authorization,
            health: KafkaHealth::default(),
            authorized: Arc::new(AtomicBool::new(false)),
            refusal_logged: Arc::new(AtomicBool::new(false)),
        })
    }

    /// The producer's readiness as last probed.
    pub fn health(&self) -> &KafkaHealth {
        &self.health
    }

    /// Probes `/health/ready` every `interval` until `stop`; ready also needs the token
    /// accepted.
    pub fn start_health_monitor(&self, interval: Duration, stop: CancellationToken) {
        let me = self.clone();
        retry::spawn_every(interval, stop, move || {
            let me = me.clone();
            async move {
                let timeout = interval.max(Duration::from_secs(1));
                let ready = me
                    .http
                    .get(format!("{}/health/ready", me.base))
                    .timeout(timeout)
                    .send()
                    .await
                    .map(|r| r.status().is_success())
                    .unwrap_or(false);
                if ready && !me.authorized.load(Ordering::Relaxed) {
                    me.probe_token(timeout).await;
                }
                me.health
                    .set(ready && me.authorized.load(Ordering::Relaxed));
            }
        });
    }

    /// An empty publish (the producer answers it without touching Kafka): 2xx proves the token,
    /// 401 refuses it.
    async fn probe_token(&self, timeout: Duration) {
        let mut request = self
            .http
            .post(format!("{}{PUBLISH_PATH}", self.base))
            .header("content-type", "application/x-ndjson")
            .timeout(timeout);
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        match request.send().await.map(|r| r.status()) {
            Ok(status) if status.is_success() => {
                self.authorized.store(true, Ordering::Relaxed);
                self.refusal_logged.store(false, Ordering::Relaxed);
            }
            Ok(reqwest::StatusCode::UNAUTHORIZED) => self.refused(),
            // Unreachable or busy: the next round probes again.
            _ => {}
        }
    }

    /// The producer refused the token: not ready until a probe succeeds again.
    fn refused(&self) {
        self.authorized.store(false, Ordering::Relaxed);
        if !self.refusal_logged.swap(true, Ordering::Relaxed) {
            tracing::error!(producer = %redact_url(&self.base), "the producer service refuses this gateway's internal token (401): set `producer.internal_token` (LOGPIPE_PRODUCER_INTERNAL_TOKEN) to the same value for the gateway and the producer; the gateway reports not ready until then");
        }
        self.health.set(false);
    }

    /// Sends the batch to the producer and waits for its verdict.
    pub async fn publish(&self, batch: &Batch) -> Result<(), PublishError> {
        let mut body = Vec::with_capacity(batch.events.len() * 256);
        for event in &batch.events {
            event.write_json(&mut body);
            body.push(b'\n');
        }
        let mut request = self
            .http
            .post(format!("{}{PUBLISH_PATH}", self.base))
            .header(REQUEST_ID_HEADER, &*batch.request_id)
            .header(INGEST_MS_HEADER, batch.ingest_ms.to_string())
            .header("content-type", "application/x-ndjson");
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization.clone());
        }
        let response = request.body(body).send().await.map_err(|e| {
            PublishError::Unavailable(format!(
                "producer service at {} unreachable: {}",
                redact_url(&self.base),
                e.without_url()
            ))
        })?;
        if response.status().is_success() {
            return Ok(());
        }
        let status = response.status();
        if status == reqwest::StatusCode::UNAUTHORIZED {
            self.refused();
            return Err(PublishError::Unavailable(format!(
                "the producer service at {} refused the gateway's internal token (401): set \
                 `producer.internal_token` (LOGPIPE_PRODUCER_INTERNAL_TOKEN) to the same value for \
                 the gateway and the producer",
                redact_url(&self.base)
            )));
        }
        let parsed: Option<ErrorBody> = response.json().await.ok();
        Err(match parsed {
            Some(body) => match body.error.code.as_str() {
                "saturated" => PublishError::Saturated,
                "too_many_events" => PublishError::TooLarge {
                    events: batch.events.len(),
                    limit: body.limit.unwrap_or(0),
                },
                "delivery_failed" => PublishError::Partial {
                    failed: body
                        .failed
                        .into_iter()
                        .map(|f| (f.index, f.reason))
                        .collect(),
                },
                _ => PublishError::Unavailable(format!(
                    "producer service answered {status}: {}",
                    body.error.message
                )),
            },
            None => PublishError::Unavailable(format!("producer service answered {status}")),
        })
    }
}

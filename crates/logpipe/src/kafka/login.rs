//! The start-up login check: one metadata request through a client built from `kafka.properties`,
//! watching librdkafka's error callback. Credentials the cluster refuses (SASL) or a broker
//! certificate that does not verify stop a process, or an operator command, at once with the keys
//! to fix. Without it librdkafka retries the login in the background for ever: a producer looks up
//! but answers 503, and a command waits out its timeout with "is the broker reachable?".
//!
//! An unreachable cluster is not an error here: a producer starts without Kafka and catches up,
//! and commands report it their own way.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use crate::config::KafkaConfig;

use super::client_config;

/// What the login check found when the cluster did not refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Login {
    /// A broker answered a metadata request: the login (if any) was accepted.
    Accepted,
    /// No broker answered within the timeout; the last error librdkafka gave, if any.
    Unreachable(String),
}

/// What one error of librdkafka's error callback means for the check.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// The cluster refused the client: fatal, with what to fix.
    Refused(String),
    /// Every broker is down (or could not be reached): stop waiting.
    Unreachable(String),
    /// Anything else: librdkafka keeps trying until the timeout.
    Other,
}

/// Sorts an error of librdkafka's error callback.
fn classify(code: Option<RDKafkaErrorCode>, reason: &str, bootstrap: &str) -> Failure {
    match code {
        Some(RDKafkaErrorCode::Authentication) => Failure::Refused(format!(
            "Kafka at {bootstrap} refused the login: {reason}. SASL authentication failed: check \
             kafka.properties \"sasl.username\" and \"sasl.password\" (env \
             LOGPIPE_KAFKA_PROPERTY_SASL_USERNAME / LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD), and that \
             \"sasl.mechanism\" is one the cluster enables"
        )),
        // A handshake cut short by a restarting broker is also an SSL error; only a certificate
        // that does not verify is certain to fail again.
        Some(RDKafkaErrorCode::SSL) if reason.contains("certificate verify failed") => {
            Failure::Refused(format!(
                "the TLS handshake with Kafka at {bootstrap} failed: {reason}. Check that \
                 kafka.properties \"ssl.ca.location\" names the CA that signed the brokers' \
                 certificates, and that they are issued for the host names in kafka.brokers"
            ))
        }
        Some(RDKafkaErrorCode::AllBrokersDown) => Failure::Unreachable(reason.to_string()),
        _ => Failure::Other,
    }
}

/// Records the first refusal and whether all brokers went down.
#[derive(Default)]
struct LoginContext {
    bootstrap: String,
    refused: Mutex<Option<String>>,
    unreachable: Mutex<Option<String>>,
}

impl ClientContext for LoginContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // librdkafka reports a failed connection through the error callback only some of the
        // time (a certificate that does not verify often not at all), but logs every one as FAIL.
        if let Some(code) = failure_logged(fac, log_message) {
            // Without the `[thrd:…]: ` prefix of log lines, as error callbacks say it.
            let reason = match log_message.split_once("]: ") {
                Some((thread, rest)) if thread.starts_with("[thrd:") => rest,
                _ => log_message,
            };
            self.record(classify(Some(code), reason, &self.bootstrap));
        }
        DefaultClientContext.log(level, fac, log_message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let failure = classify(error.rdkafka_error_code(), reason, &self.bootstrap);
        tracing::debug!(%error, reason, ?failure, "Kafka login check");
        self.record(failure);
    }
}

/// The error a FAIL log line reports, when it is a refusal.
fn failure_logged(fac: &str, message: &str) -> Option<RDKafkaErrorCode> {
    if fac != "FAIL" {
        None
    } else if message.contains("SASL authentication error") {
        Some(RDKafkaErrorCode::Authentication)
    } else if message.contains("certificate verify failed") {
        Some(RDKafkaErrorCode::SSL)
    } else {
        None
    }
}

// A producer is the lightest client whose error events can be polled on demand; it sends nothing.
impl ProducerContext for LoginContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &DeliveryResult<'_>, _: ()) {}
}

impl LoginContext {
    /// Keeps the first refusal and the first "all brokers down".
    fn record(&self, failure: Failure) {
        let (slot, message) = match failure {
            Failure::Refused(message) => (&self.refused, message),
            Failure::Unreachable(message) => (&self.unreachable, message),
            Failure::Other => return,
        };
        slot.lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert(message);
    }

    fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn unreachable(&self) -> Option<String> {
        self.unreachable
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Logs in to the cluster at `bootstrap` with `kafka.properties` and asks for its metadata,
/// within `kafka.request_timeout`. An error when the cluster refused the credentials or the
/// broker's certificate did not verify; otherwise whether a broker answered.
pub async fn check_login(kafka: &KafkaConfig, bootstrap: &str) -> anyhow::Result<Login> {
    let (kafka, bootstrap) = (kafka.clone(), bootstrap.to_string());
    tokio::task::spawn_blocking(move || check_login_blocking(&kafka, &bootstrap)).await?
}

/// The operator commands' check: an error when the cluster at `kafka.brokers` refused the login.
/// Nothing to check with the embedded broker; an unreachable cluster is left to the command,
/// which reports it its own way.
pub async fn require_login(kafka: &KafkaConfig) -> anyhow::Result<()> {
    if !kafka.is_embedded() {
        if let Login::Unreachable(why) = check_login(kafka, &kafka.brokers).await? {
            tracing::debug!(why, "Kafka did not answer the login check");
        }
    }
    Ok(())
}

fn check_login_blocking(kafka: &KafkaConfig, bootstrap: &str) -> anyhow::Result<Login> {
    let context = LoginContext {
        bootstrap: bootstrap.to_string(),
        ..Default::default()
    };
    let client: BaseProducer<LoginContext> =
        client_config(kafka, bootstrap, "login", &Default::default())
            .create_with_context(context)
            .map_err(|e| anyhow::anyhow!("creating the Kafka login-check client: {e}"))?;
    let context: Arc<LoginContext> = client.context().clone();
    let deadline = Instant::now() + kafka.request_timeout;
    loop {
        // Short requests, so a refusal reported meanwhile is acted on within a second.
        let slice = deadline
            .saturating_duration_since(Instant::now())
            .min(Duration::from_millis(500))
            .max(Duration::from_millis(10));
        let last = match client.client().fetch_metadata(None, slice) {
            Ok(_) => return Ok(Login::Accepted),
            Err(e) => e,
        };
        // Runs the error callback for what librdkafka reported meanwhile.
        client.poll(Duration::ZERO);
        if let Some(refusal) = context.refused() {
            anyhow::bail!(refusal);
        }
        if let Some(down) = context.unreachable() {
            return Ok(Login::Unreachable(down));
        }
        if Instant::now() >= deadline {
            return Ok(Login::Unreachable(last.to_string()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REASON: &str = "SASL authentication error: Authentication failed during authentication \
                          due to invalid credentials with SASL mechanism SCRAM-SHA-512";

    #[test]
    fn a_refused_sasl_login_names_the_keys_to_fix() {
        let Failure::Refused(message) =
            classify(Some(RDKafkaErrorCode::Authentication), REASON, "k1:9094")
        else {
            panic!("an authentication error is a refusal");
        };
        for part in [
            "k1:9094",
            "SASL authentication failed",
            "invalid credentials",
            "\"sasl.username\"",
            "\"sasl.password\"",
            "LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD",
        ] {
            assert!(message.contains(part), "`{part}` missing from: {message}");
        }
    }

    #[test]
    fn only_an_unverified_certificate_is_a_refusal_among_tls_errors() {
        let verify = classify(
            Some(RDKafkaErrorCode::SSL),
            "SSL handshake failed: ssl/statem/statem_clnt.c:2091: error:0A000086:SSL \
             routines::certificate verify failed: broker certificate could not be verified",
            "k1:9094",
        );
        assert!(
            matches!(&verify, Failure::Refused(m) if m.contains("\"ssl.ca.location\"")),
            "{verify:?}"
        );
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::SSL),
                "SSL handshake failed: Disconnected",
                "k1:9094"
            ),
            Failure::Other,
            "a handshake cut short may succeed on the next try"
        );
    }

    #[test]
    fn refusals_are_read_from_fail_log_lines_too() {
        assert_eq!(
            failure_logged(
                "FAIL",
                "sasl_ssl://k1:9094/bootstrap: error:0A000086:SSL routines::certificate verify \
                 failed (after 60ms in state SSL_HANDSHAKE)"
            ),
            Some(RDKafkaErrorCode::SSL)
        );
        assert_eq!(
            failure_logged("FAIL", &format!("sasl_ssl://k1:9094/bootstrap: {REASON}")),
            Some(RDKafkaErrorCode::Authentication)
        );
        assert_eq!(
            failure_logged("FAIL", "k1:9094/bootstrap: Connect to ipv4#k1:9094 failed"),
            None
        );
        assert_eq!(failure_logged("REQTMOUT", REASON), None, "only FAIL lines");
    }

    #[test]
    fn all_brokers_down_ends_the_wait_and_the_rest_is_retried() {
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::AllBrokersDown),
                "1/1 brokers are down",
                "k1:9094"
            ),
            Failure::Unreachable("1/1 brokers are down".into())
        );
        assert_eq!(
            classify(
                Some(RDKafkaErrorCode::BrokerTransportFailure),
                "Connection refused",
                "k1:9094"
            ),
            Failure::Other
        );
        assert_eq!(classify(None, "whatever", "k1:9094"), Failure::Other);
    }

    #[tokio::test]
    async fn a_cluster_that_answers_is_accepted() {
        let broker = crate::kafka::embedded::EmbeddedBroker::start(1, &[]).unwrap();
        let kafka = KafkaConfig {
            brokers: broker.bootstrap_servers().to_string(),
            ..Default::default()
        };
        let login = check_login(&kafka, &kafka.brokers).await.unwrap();
        assert_eq!(login, Login::Accepted);
    }

    #[tokio::test]
    async fn a_closed_port_is_unreachable_not_refused() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let kafka = KafkaConfig {
            brokers: format!("127.0.0.1:{port}"),
            request_timeout: Duration::from_secs(10),
            ..Default::default()
        };
        let started = Instant::now();
        let login = check_login(&kafka, &kafka.brokers).await.unwrap();
        assert!(matches!(login, Login::Unreachable(_)), "{login:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a refused connection ends the wait early: {:?}",
            started.elapsed()
        );
    }
}

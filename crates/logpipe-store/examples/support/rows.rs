//! The generated rows the store benchmarks write (`copy_bench`, `drain_variants`): the same mix
//! in both, so their figures compare.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, Utc};
use logpipe_model::{
    normalise_timestamp, EnrichedLog, Fingerprint, KafkaCoordinates, Level, LogEvent, RawValue,
};

const SERVICES: [&str; 8] = [
    "checkout-api",
    "payments",
    "search",
    "inventory",
    "auth",
    "gateway",
    "notifications",
    "recommendations",
];
const MESSAGES: [&str; 6] = [
    "GET /api/v1/orders/{} completed in {} ms with status 200",
    "payment authorised for order {} amount {} EUR via card ending 4242",
    "cache miss for key user:{}:profile, loaded from database in {} ms",
    "Timeout talking to inventory-db after {} ms (attempt {} of 3)",
    "user {} logged in from 10.0.{}.17 using password authentication",
    "failed to deliver notification {} to device: upstream returned 503 after {} ms",
];

/// A production-like mix: 60% INFO, 25% DEBUG, 8% WARN, 5% ERROR, 1.5% TRACE, 0.5% FATAL.
fn level_of(i: usize) -> Level {
    match i * 7919 % 1000 {
        0..600 => Level::Info,
        600..850 => Level::Debug,
        850..930 => Level::Warn,
        930..980 => Level::Error,
        980..995 => Level::Trace,
        _ => Level::Fatal,
    }
}

/// Realistic rows: eight services, six message shapes with numbers, the level mix above, attributes on two thirds,
/// trace ids on half, timestamps over the last few minutes (today's partition).
pub fn generate(rows: usize) -> Vec<EnrichedLog> {
    let now = normalise_timestamp(Utc::now());
    let tags = Arc::new(BTreeMap::from([
        ("env".to_owned(), "prod".to_owned()),
        ("region".to_owned(), "eu-west-1".to_owned()),
    ]));
    let topic: Arc<str> = Arc::from("application-logs");
    (0..rows)
        .map(|i| {
            let shape = MESSAGES[i % MESSAGES.len()];
            let message = shape
                .replacen("{}", &(i * 7919 % 100_000).to_string(), 1)
                .replacen("{}", &(i % 977).to_string(), 1);
            let template = shape.replace("{}", "<num>");
            let level = level_of(i);
            let timestamp = now - Duration::milliseconds((rows - i) as i64);
            EnrichedLog {
                event: LogEvent {
                    timestamp,
                    level,
                    service: SERVICES[i % SERVICES.len()].parse().expect("service"),
                    message: message.parse().expect("message"),
                    host: Some(format!("web-{}", i % 16).parse().expect("host")),
                    trace_id: (i % 2 == 0).then(|| {
                        format!("{:032x}", i as u128 * 0x9E37_79B9 + 1)
                            .parse()
                            .expect("trace")
                    }),
                    span_id: (i % 2 == 0).then(|| {
                        format!("{:016x}", i as u64 * 0x9E37 + 1)
                            .parse()
                            .expect("span")
                    }),
                    attributes: (i % 3 != 0).then(|| {
                        RawValue::from_string(format!(
                            r#"{{"user_id":{},"region":"eu","plan":"pro"}}"#,
                            i % 5000
                        ))
                        .expect("attributes")
                    }),
                },
                coordinates: KafkaCoordinates {
                    topic: Arc::clone(&topic),
                    partition: (i % 12) as i32,
                    offset: (i / 12) as i64,
                    index: 0,
                },
                kafka_timestamp: Some(timestamp),
                severity_number: level.severity_number(),
                fingerprint: Fingerprint(
                    ((i % MESSAGES.len()) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ),
                template,
                ingested_at: Some(timestamp),
                processed_at: now,
                request_id: Some(format!("req-{:08x}", i / 50)),
                tags: Arc::clone(&tags),
            }
        })
        .collect()
}

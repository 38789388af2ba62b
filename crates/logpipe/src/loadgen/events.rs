//! What `logpipe loadgen` sends: realistic generated events (levels, message templates, hosts,
//! trace ids, now and then an invalid one) and request bodies made of them.

use std::io::Write;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

use super::protocol::Protocol;

const LEVELS: &[(&str, u32)] = &[
    ("DEBUG", 5),
    ("INFO", 70),
    ("WARN", 15),
    ("ERROR", 9),
    ("FATAL", 1),
];
const TEMPLATES: &[&str] = &[
    "GET /api/orders/{n} completed in {ms} ms",
    "payment failed for order {n}: card declined",
    "connection to 10.0.{a}.{b}:5432 reset after {ms} ms",
    "user {n} logged in from 192.168.{a}.{b}",
    "cache miss for key session:{hex}",
    "retrying request {hex} (attempt {a})",
    "slow query took {ms} ms: SELECT * FROM items WHERE id = {n}",
    "job {hex} finished: {n} rows processed",
];

/// One generated event (valid, or invalid in a realistic way).
pub(super) fn event(rng: &mut SmallRng, services: usize, invalid_ratio: f64) -> serde_json::Value {
    let service = format!("svc-{}", rng.random_range(0..services.max(1)));
    let total: u32 = LEVELS.iter().map(|(_, w)| w).sum();
    let mut pick = rng.random_range(0..total);
    let level = LEVELS
        .iter()
        .find(|(_, w)| {
            if pick < *w {
                true
            } else {
                pick -= w;
                false
            }
        })
        .map(|(l, _)| *l)
        .unwrap_or("INFO");
    let template = TEMPLATES[rng.random_range(0..TEMPLATES.len())];
    let message = template
        .replace("{n}", &rng.random_range(1..1_000_000u32).to_string())
        .replace("{ms}", &rng.random_range(1..5000u32).to_string())
        .replace("{a}", &rng.random_range(0..256u32).to_string())
        .replace("{b}", &rng.random_range(0..256u32).to_string())
        .replace("{hex}", &format!("{:016x}", rng.random::<u64>()));
    let trace_id = format!(
        "{:016x}{:016x}",
        rng.random::<u64>() | 1,
        rng.random::<u64>()
    );
    let region = ["eu", "us", "ap"][rng.random_range(0..3)];
    let build = rng.random_range(100..110);
    let mut event = json!({
        "level": level,
        "service": service,
        "message": message,
        "host": format!("host-{}", rng.random_range(0..8)),
        "trace_id": trace_id,
        "attributes": {"region": region, "build": build}
    });
    if invalid_ratio > 0.0 && rng.random_bool(invalid_ratio.clamp(0.0, 1.0)) {
        match rng.random_range(0..3) {
            0 => {
                event.as_object_mut().map(|o| o.remove("message"));
            }
            1 => event["level"] = json!("LOUD"),
            _ => event["service"] = json!("bad service name!"),
        }
    }
    event
}

/// A request body ready to send, with how many events it holds.
pub struct Body {
    pub bytes: Bytes,
    pub events: u64,
}

/// The bodies a run cycles through: 64 requests of `batch` generated events, in `protocol`.
/// The same seed makes the same events whatever the protocol, so protocols compare.
pub fn bodies(
    protocol: Protocol,
    batch: usize,
    services: usize,
    invalid_ratio: f64,
    gzip: bool,
) -> anyhow::Result<Vec<Body>> {
    let mut rng = SmallRng::seed_from_u64(0x1095_15e5 ^ services as u64);
    (0..64)
        .map(|_| {
            let events: Vec<_> = (0..batch.max(1))
                .map(|_| event(&mut rng, services, invalid_ratio))
                .collect();
            encode(protocol, &events, gzip)
        })
        .collect()
}

/// A request body of `events` in `protocol` (logpipe's: one object alone for the single-event
/// route, else an array).
pub fn encode(
    protocol: Protocol,
    events: &[serde_json::Value],
    gzip: bool,
) -> anyhow::Result<Body> {
    let json = protocol.encode(events)?;
    let bytes = if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&json)?;
        encoder.finish()?
    } else {
        json
    };
    Ok(Body {
        bytes: Bytes::from(bytes),
        events: events.len() as u64,
    })
}

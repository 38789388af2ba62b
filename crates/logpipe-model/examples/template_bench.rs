//! Micro-benchmark of message templating and fingerprinting (prints figures, asserts nothing):
//! `cargo run --release -p logpipe-model --example template_bench`.

use std::hint::black_box;
use std::time::Instant;

use logpipe_model::{fingerprint, message_template};

/// Messages shaped like real ones, about 80 bytes, with values that vary.
fn typical_messages(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| match i % 8 {
            0 => format!(
                "payment failed for order {} after {}ms (user={}, provider=stripe, retry=false)",
                1000 + i,
                i % 97,
                i
            ),
            1 => format!(
                "GET /api/v1/users/{i}/orders?page={} returned 500 in {}.{}ms from 10.1.{}.7",
                i % 7,
                i % 50,
                i % 10,
                i % 256
            ),
            2 => format!(
                "connection to db-3.internal:5432 refused, retrying in {}s (attempt {}/5)",
                i % 9,
                i % 5
            ),
            3 => format!(
                "user \"alice{i}\" logged in from 192.168.{}.{} at 2026-11-25T12:00:00Z",
                i % 256,
                i % 200
            ),
            4 => format!(
                "cache miss for key session:{:016x} (ttl 300s), loading from primary",
                i * 7919
            ),
            5 => {
                format!("request 123e4567-e89b-12d3-a456-{i:012x} timed out waiting for inventory")
            }
            6 => format!(
                "disk usage at {}.5% on /var/lib/postgresql/data, threshold is 90%, cleaning up",
                i % 100
            ),
            _ => format!(
                "worker-{} finished batch of {} events in {}ms, committed offset {}",
                i % 10,
                500,
                i % 300,
                i * 500
            ),
        })
        .collect()
}

fn bench_message_template() {
    let messages = typical_messages(1_000);
    let bytes: usize = messages.iter().map(String::len).sum();
    let rounds = 100;
    // Warm up caches and the allocator.
    for message in &messages {
        black_box(message_template(black_box(message)));
    }
    let started = Instant::now();
    for _ in 0..rounds {
        for message in &messages {
            black_box(message_template(black_box(message)));
        }
    }
    let template_ns = started.elapsed().as_nanos() as f64 / (rounds * messages.len()) as f64;
    let started = Instant::now();
    for _ in 0..rounds {
        for message in &messages {
            let template = message_template(black_box(message));
            black_box(fingerprint("checkout-api", &template));
        }
    }
    let both_ns = started.elapsed().as_nanos() as f64 / (rounds * messages.len()) as f64;
    println!(
        "message_template: {template_ns:.0} ns/message; with fingerprint: {both_ns:.0} ns/message \
         ({} messages, {:.0} bytes on average)",
        rounds * messages.len(),
        bytes as f64 / messages.len() as f64
    );
}

fn main() {
    bench_message_template();
}

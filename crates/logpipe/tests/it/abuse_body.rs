//! Abusive ingest bodies: gzip bombs, small on the wire, that hold millions of tiny items or
//! inflate far past `gateway.max_body_bytes`. Each is refused with 413 while the gateway's peak
//! memory stays bounded, because items are counted while the body is scanned and decompression
//! stops at the size limit.

use std::io::Write;

use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use logpipe::app::Roles;

use crate::support::{start, test_config};

/// The test process's peak resident set size (`VmHWM`), in KiB; the gateway runs in this process.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// One gzip member of `head`, `piece` repeated `times`, then `tail`, compressed as it is written
/// so the test itself never holds the inflated text (its memory would blur the gateway's).
fn gzip_member(head: &[u8], piece: &[u8], times: usize, tail: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(head).unwrap();
    let per_chunk = (64 * 1024 / piece.len()).max(1);
    let chunk = piece.repeat(per_chunk);
    let mut left = times;
    while left > 0 {
        let n = left.min(per_chunk);
        encoder.write_all(&chunk[..n * piece.len()]).unwrap();
        left -= n;
    }
    encoder.write_all(tail).unwrap();
    encoder.finish().unwrap()
}

struct Bomb {
    name: &'static str,
    content_type: &'static str,
    body: Bytes,
    code: &'static str,
}

fn bombs(max_body: usize) -> Vec<Bomb> {
    // 5,000,000 items in 10 MB of JSON: under the body limit, far over the event limit.
    let ones = gzip_member(b"[", b"1,", 4_999_999, b"1]");
    // 3,000,000 NDJSON lines in 9 MB.
    let lines = gzip_member(b"", b"{}\n", 3_000_000, b"");
    // 64 gzip members of 1 MiB each: 64 MiB once inflated, over six times the body limit.
    let member = gzip_member(b"", b"1,", 512 * 1024, b"");
    let huge: Vec<u8> = std::iter::repeat_n(&member[..], 64)
        .flatten()
        .copied()
        .collect();
    assert!(
        64 * 1024 * 1024 > 6 * max_body,
        "the bomb must inflate far past the limit"
    );
    println!(
        "bombs on the wire: {} B array of 5,000,000 items, {} B NDJSON of 3,000,000 lines, {} B inflating to 64 MiB",
        ones.len(),
        lines.len(),
        huge.len()
    );
    assert!(ones.len() < 16 * 1024 && lines.len() < 16 * 1024);
    vec![
        Bomb {
            name: "array",
            content_type: "application/json",
            body: ones.into(),
            code: "too_many_events",
        },
        Bomb {
            name: "ndjson",
            content_type: "application/x-ndjson",
            body: lines.into(),
            code: "too_many_events",
        },
        Bomb {
            name: "inflates past the limit",
            content_type: "application/json",
            body: huge.into(),
            code: "payload_too_large",
        },
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abuse_body_gzip_bombs_are_413_with_bounded_memory() {
    let config = test_config("");
    let max_body = config.gateway.max_body_bytes;
    let app = start(config, Roles::All).await;
    let url = format!("http://{}/api/v1/logs/batch", app.gateway_addr.unwrap());
    let client = reqwest::Client::new();
    let bombs = bombs(max_body);

    let hwm_before = vm_hwm_kib();
    // Twenty of each kind, all at once.
    let requests = bombs.iter().flat_map(|bomb| {
        let (client, url) = (&client, &url);
        (0..20).map(move |_| {
            let request = client
                .post(url)
                .header("content-type", bomb.content_type)
                .header("content-encoding", "gzip")
                .body(bomb.body.clone());
            async move {
                let response = request.send().await.expect("an answer");
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.expect("a JSON error");
                (bomb, status, body)
            }
        })
    });
    let answers = futures::future::join_all(requests).await;
    let hwm_after = vm_hwm_kib();

    println!(
        "VmHWM before {} MiB, after {} MiB, growth {} MiB ({} requests)",
        hwm_before / 1024,
        hwm_after / 1024,
        hwm_after.saturating_sub(hwm_before) / 1024,
        answers.len()
    );
    assert_eq!(answers.len(), 60);
    for (bomb, status, body) in &answers {
        assert_eq!(*status, 413, "{}: {body}", bomb.name);
        assert_eq!(body["error"]["code"], bomb.code, "{}: {body}", bomb.name);
    }
    assert!(
        hwm_after.saturating_sub(hwm_before) < 100 * 1024,
        "peak memory grew by more than 100 MiB"
    );
    app.shutdown().await.unwrap();
}

//! Fuzzes the gateway's gzip body decoding: the fuzz input is a `Content-Encoding: gzip` body.
//!
//! `gunzip` below is the same flate2 call and limit logic as `gunzip` in
//! crates/logpipe/src/gateway/body.rs (a `MultiGzDecoder` read through `take(limit + 1)`, then
//! refused when over the limit), copied because that function is private and depending on the
//! whole logpipe crate would pull librdkafka and OpenSSL into every sanitizer build. Keep the two
//! in step.
//!
//! Invariants: no panic; a decoded body is never above the limit (a gzip bomb is refused after
//! reading at most `limit + 1` bytes); and the limit only decides, never changes, the result: a
//! body accepted under the limit decodes to the same bytes under a larger one.
#![no_main]

use std::io::Read;

use libfuzzer_sys::fuzz_target;

/// Far below the gateway's 10 MiB default, so the fuzzer reaches the over-limit path (a ratio of
/// about 1000:1 from ~70 bytes of input) and a bomb costs microseconds, not milliseconds.
const LIMIT: usize = 64 * 1024;

#[derive(Debug, PartialEq)]
enum Outcome {
    Decoded(Vec<u8>),
    InvalidGzip,
    TooLarge,
}

fn gunzip(raw: &[u8], limit: usize) -> Outcome {
    let mut out = Vec::with_capacity((raw.len() * 4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
    if decoder.read_to_end(&mut out).is_err() {
        return Outcome::InvalidGzip;
    }
    if out.len() > limit {
        return Outcome::TooLarge;
    }
    Outcome::Decoded(out)
}

fuzz_target!(|data: &[u8]| {
    match gunzip(data, LIMIT) {
        Outcome::Decoded(out) => {
            assert!(out.len() <= LIMIT, "decoded past the limit");
            assert_eq!(
                gunzip(data, 2 * LIMIT),
                Outcome::Decoded(out),
                "a larger limit changed an accepted body"
            );
        }
        Outcome::TooLarge => match gunzip(data, 2 * LIMIT) {
            Outcome::Decoded(out) => assert!(out.len() > LIMIT, "refused a body within the limit"),
            Outcome::TooLarge | Outcome::InvalidGzip => {}
        },
        Outcome::InvalidGzip => {}
    }
});

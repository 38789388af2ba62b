//! Reading an ingest request body: content type, size limit (before and after gzip), and gzip.
//! Bodies are read with a hard limit on the wire and a hard limit on the decompressed size, so
//! neither a huge upload nor a gzip bomb can take more than `max_body_bytes` of memory.
//!
//! Inflating stops as soon as the output passes the limit, and only [`INFLATE_SLOTS`] bodies
//! inflate at once, process-wide: a gzip body of 10 KB can inflate to the whole limit, so without
//! that bound many small bombs at once would cost their number times the limit.

use std::io::Read;
use std::sync::LazyLock;

use axum::body::{Body, BodyDataStream, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use futures::StreamExt;

use crate::http::ApiError;

/// How the events in a body are framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `application/json`: one object (single route) or an array (batch route).
    Json,
    /// `application/x-ndjson`: one object per line (batch route only).
    Ndjson,
}

/// The media type of `Content-Type`, lower-case, without parameters (`charset`, ...); empty when
/// absent or unreadable.
pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Decides the framing from `Content-Type`; anything else is 415.
pub fn framing(headers: &HeaderMap, allow_ndjson: bool) -> Result<Framing, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = media_type(headers);
    match essence.as_str() {
        "application/json" => Ok(Framing::Json),
        "application/x-ndjson" | "application/ndjson" if allow_ndjson => Ok(Framing::Ndjson),
        _ => {
            let expected = if allow_ndjson {
                "application/json (an array) or application/x-ndjson"
            } else {
                "application/json"
            };
            let got = if raw.is_empty() {
                "no Content-Type"
            } else {
                raw
            };
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("expected Content-Type {expected}, got {got}"),
            ))
        }
    }
}

fn too_large(limit: usize, what: &str) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("{what} is larger than {limit} bytes; split it into smaller batches"),
    )
}

/// Reads the whole body (at most `limit` bytes, decompressed too) and gunzips it when
/// `Content-Encoding: gzip`.
pub async fn read(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        drain(body.into_data_stream()).await;
        return Err(too_large(limit, "the request body"));
    }
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim().to_ascii_lowercase());
    let gzip = match encoding.as_deref() {
        None | Some("") | Some("identity") => false,
        Some("gzip") | Some("x-gzip") => true,
        Some(other) => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_encoding",
                format!("Content-Encoding `{other}` is not supported; send gzip or no encoding"),
            ))
        }
    };
    // Read by hand rather than through `Limited`: past the limit the rest of the body is still
    // there to drain.
    let mut stream = body.into_data_stream();
    let mut raw = Vec::with_capacity(declared.unwrap_or(0) as usize);
    while let Some(chunk) = stream.next().await {
        let data = chunk.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "body_read_failed",
                format!("could not read the request body: {e}"),
            )
        })?;
        if raw.len() + data.len() > limit {
            drain(stream).await;
            return Err(too_large(limit, "the request body"));
        }
        raw.extend_from_slice(&data);
    }
    let raw = Bytes::from(raw);
    if !gzip {
        return Ok(raw);
    }
    // The compressed body is read whole before a slot is taken: a slot held across network reads
    // would let a slow client block every gzip request.
    let _slot = INFLATE_SLOTS
        .acquire()
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    let big = raw.len() > 64 * 1024;
    let decode = move || gunzip(&raw[..], raw.len(), limit);
    // Large bodies decompress on the blocking pool so they do not stall other requests.
    if big {
        tokio::task::spawn_blocking(decode).await.map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?
    } else {
        decode()
    }
}

/// Reads and discards what is left of a refused body (at most [`DRAIN_MAX_BYTES`], for at most
/// [`DRAIN_MAX_TIME`]) before the 413 goes out. Answering while the client is still sending
/// makes the server close a connection with unread data, and most clients then report a
/// connection reset instead of the 413 that says what to do; draining lets them read it.
async fn drain(mut stream: BodyDataStream) {
    let mut drained = 0usize;
    let _ = tokio::time::timeout(DRAIN_MAX_TIME, async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len();
            if drained > DRAIN_MAX_BYTES {
                break;
            }
        }
    })
    .await;
}

/// How much of a refused body [`drain`] reads at most.
const DRAIN_MAX_BYTES: usize = 64 * 1024 * 1024;
/// How long [`drain`] reads at most.
const DRAIN_MAX_TIME: std::time::Duration = std::time::Duration::from_secs(2);

/// How many gzip bodies inflate at the same time, process-wide (one per CPU): each may grow to
/// `max_body_bytes` while it inflates, so this bounds the memory of many bombs sent at once.
static INFLATE_SLOTS: LazyLock<tokio::sync::Semaphore> = LazyLock::new(|| {
    let cpus = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    tokio::sync::Semaphore::new(cpus)
});

/// Inflates `raw` (`raw_len` compressed bytes), reading no further than the first output byte
/// past `limit`: a bomb costs at most `limit` bytes and the work to produce them, whatever it
/// would inflate to.
fn gunzip(raw: impl Read, raw_len: usize, limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity(raw_len.saturating_mul(4).min(limit));
    let mut decoder = flate2::read::MultiGzDecoder::new(raw).take(limit as u64 + 1);
    decoder.read_to_end(&mut out).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_gzip",
            format!("the body is not valid gzip: {e}"),
        )
    })?;
    if out.len() > limit {
        return Err(too_large(limit, "the decompressed body"));
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        encoder.write_all(bytes).unwrap();
        encoder.finish().unwrap()
    }

    /// Counts the compressed bytes the decoder asked for.
    struct Counting<'a> {
        inner: &'a [u8],
        read: usize,
    }

    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.read += n;
            Ok(n)
        }
    }

    #[test]
    fn gunzip_takes_up_to_the_limit_and_refuses_one_byte_more() {
        let body = gzip(&[b'x'; 1000]);
        assert_eq!(gunzip(&body[..], body.len(), 1000).unwrap().len(), 1000);
        let refused = gunzip(&body[..], body.len(), 999).unwrap_err();
        assert_eq!(refused.status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(refused.code, "payload_too_large");
        assert!(
            refused.message.contains("decompressed body"),
            "{}",
            refused.message
        );
        // Concatenated gzip members are one body, counted together.
        let twice = [body.clone(), body].concat();
        assert_eq!(gunzip(&twice[..], twice.len(), 2000).unwrap().len(), 2000);
        assert_eq!(
            gunzip(&twice[..], twice.len(), 1999).unwrap_err().code,
            "payload_too_large"
        );
    }

    #[test]
    fn a_bomb_is_refused_without_inflating_the_rest() {
        // 256 members of 1 MiB each: 256 MiB once inflated, against a 1 MiB limit.
        let member = gzip(&vec![b' '; 1024 * 1024]);
        let bomb: Vec<u8> = std::iter::repeat_n(&member[..], 256)
            .flatten()
            .copied()
            .collect();
        let mut counting = Counting {
            inner: &bomb,
            read: 0,
        };
        let refused = gunzip(&mut counting, bomb.len(), 1024 * 1024).unwrap_err();
        assert_eq!(refused.code, "payload_too_large");
        // Decoding stopped in the second member (reads are buffered, so a little more is read).
        assert!(
            counting.read < 4 * member.len() + 64 * 1024,
            "read {} of {} compressed bytes",
            counting.read,
            bomb.len()
        );
    }

    #[test]
    fn broken_gzip_is_invalid_gzip() {
        let mut truncated = gzip(b"{\"message\":\"m\"}");
        truncated.truncate(truncated.len() / 2);
        let refused = gunzip(&truncated[..], truncated.len(), 1024).unwrap_err();
        assert_eq!(refused.status, StatusCode::BAD_REQUEST);
        assert_eq!(refused.code, "invalid_gzip");
    }
}

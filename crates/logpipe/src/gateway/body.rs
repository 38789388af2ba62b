//! Reading an ingest request body: content type, size limit (before and after gzip), and gzip.
//! Bodies are read with a hard limit on the wire and a hard limit on the decompressed size, so
//! neither a huge upload nor a gzip bomb can take more than `max_body_bytes` of memory.

use std::io::Read;

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

/// Decides the framing from `Content-Type`; anything else is 415.
pub fn framing(headers: &HeaderMap, allow_ndjson: bool) -> Result<Framing, ApiError> {
    let raw = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = raw
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
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
    let big = raw.len() > 64 * 1024;
    let decode = move || gunzip(&raw, limit);
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

fn gunzip(raw: &[u8], limit: usize) -> Result<Bytes, ApiError> {
    let mut out = Vec::with_capacity((raw.len() * 4).min(limit));
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

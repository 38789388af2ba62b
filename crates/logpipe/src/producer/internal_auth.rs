//! The shared secret of the producer's internal endpoint (`producer.internal_token`).
//!
//! The gateway sends it as `Authorization: Bearer TOKEN`; the producer compares SHA-256 digests
//! in constant time (so timing says nothing about how much matched, nor the token's length) and
//! answers 401 before the body is read. Only a caller holding the token can set the record
//! headers the endpoint takes from the request (request id, ingest time). Without a token the
//! endpoint must stay on loopback: [`check_listen`] refuses anything wider at start.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::{bearer_token, ApiError, RequestId};

/// The expected token as a digest; `None` means the check is off (loopback only).
#[derive(Clone, Default)]
pub struct InternalToken(Option<Arc<[u8; 32]>>);

impl InternalToken {
    /// From `producer.internal_token`; empty turns the check off.
    pub fn new(token: &str) -> Self {
        Self((!token.is_empty()).then(|| Arc::new(Sha256::digest(token.as_bytes()).into())))
    }

    pub fn enabled(&self) -> bool {
        self.0.is_some()
    }

    /// True when the check is off, or `presented` is the token.
    pub fn accepts(&self, presented: Option<&str>) -> bool {
        let Some(expected) = &self.0 else {
            return true;
        };
        let digest: [u8; 32] = Sha256::digest(presented.unwrap_or("").as_bytes()).into();
        // A missing header still costs one comparison, like a wrong one.
        let matched: bool = expected.ct_eq(&digest).into();
        matched && presented.is_some()
    }
}

/// Refuses to serve the internal endpoint beyond loopback without a token: anyone who reached it
/// could write to Kafka and forge record headers.
pub fn check_listen(listen: SocketAddr, token: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        listen.ip().is_loopback() || !token.is_empty(),
        "the producer service would listen on {listen} (`producer.listen`) without authentication; \
         set `producer.internal_token` (env LOGPIPE_PRODUCER_INTERNAL_TOKEN, at least 16 characters) \
         to the same secret for the producer and the gateway, or listen on loopback (127.0.0.1:8081)"
    );
    Ok(())
}

/// Middleware: 401 in the shared error shape unless the request carries the token. It runs
/// before the body is read, so an unauthenticated caller never gets its body buffered.
pub async fn require_token(
    State(token): State<InternalToken>,
    id: RequestId,
    request: Request,
    next: Next,
) -> Response {
    if token.accepts(bearer_token(request.headers())) {
        return next.run(request).await;
    }
    tracing::debug!("internal publish refused: missing or wrong internal token");
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "missing or wrong internal token: send `Authorization: Bearer TOKEN` with the value of \
         `producer.internal_token`; the gateway does so when it has the same setting",
    )
    .with_request_id(&id)
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_only_when_set() {
        let off = InternalToken::new("");
        assert!(!off.enabled());
        assert!(off.accepts(None));
        let on = InternalToken::new("0123456789abcdef");
        assert!(on.enabled());
        assert!(on.accepts(Some("0123456789abcdef")));
        assert!(!on.accepts(Some("0123456789abcdeX")));
        assert!(!on.accepts(Some("")));
        assert!(!on.accepts(None));
    }

    #[test]
    fn a_non_loopback_listen_needs_a_token() {
        let wide: SocketAddr = "0.0.0.0:8081".parse().unwrap();
        let error = check_listen(wide, "").unwrap_err().to_string();
        assert!(error.contains("producer.internal_token"), "{error}");
        assert!(error.contains("LOGPIPE_PRODUCER_INTERNAL_TOKEN"), "{error}");
        assert!(error.contains("127.0.0.1"), "{error}");
        assert!(check_listen(wide, "0123456789abcdef").is_ok());
        assert!(check_listen("127.0.0.1:8081".parse().unwrap(), "").is_ok());
        assert!(check_listen("[::1]:8081".parse().unwrap(), "").is_ok());
        assert!(check_listen("[::]:8081".parse().unwrap(), "").is_err());
        assert!(check_listen("10.0.0.5:8081".parse().unwrap(), "").is_err());
    }
}

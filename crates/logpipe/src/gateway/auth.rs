//! Optional API keys. A client sends `Authorization: Bearer KEY` or `X-API-Key: KEY`. Keys are
//! compared as SHA-256 digests in constant time, against every configured key without stopping
//! early, so timing says nothing about how much of a key matched or which key it was.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::http::{ApiError, RequestId};

/// Digests of the accepted keys; empty means authentication is off.
#[derive(Clone, Default)]
pub struct ApiKeys(Arc<Vec<[u8; 32]>>);

impl ApiKeys {
    pub fn new(keys: &[String]) -> Self {
        Self(Arc::new(
            keys.iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        ))
    }

    pub fn enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// True when `presented` is one of the keys.
    pub fn accepts(&self, presented: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = subtle::Choice::from(0);
        for key in self.0.iter() {
            found |= key.ct_eq(&digest);
        }
        found.into()
    }
}

fn presented_key(request: &Request) -> Option<&str> {
    let headers = request.headers();
    if let Some(value) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(value.trim());
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = auth.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Middleware: 401 unless the request carries an accepted key (when keys are configured).
pub async fn require_api_key(
    State(keys): State<ApiKeys>,
    id: RequestId,
    request: Request,
    next: Next,
) -> Response {
    if !keys.enabled() {
        return next.run(request).await;
    }
    match presented_key(&request) {
        Some(key) if keys.accepts(key) => next.run(request).await,
        presented => {
            let message = if presented.is_some() {
                "the API key is not valid"
            } else {
                "an API key is required: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            };
            let mut response = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
                .with_request_id(&id)
                .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                "Bearer".parse().expect("static header"),
            );
            response
        }
    }
}

//! API keys and their scopes. A client sends the key the way its protocol's clients do:
//! `Authorization: Bearer KEY` or `X-API-Key: KEY` (logpipe's API, OTLP exporters),
//! `Authorization: Basic base64(USER:KEY)` (the password is the key: Loki clients, Promtail,
//! Fluent Bit, Filebeat), or `Authorization: ApiKey base64(ID:KEY)` or `ApiKey KEY`
//! (Elasticsearch clients).
//! Keys are compared as SHA-256 digests in constant time, against every configured key without
//! stopping early, so timing says nothing about how much of a key matched or which key it was.
//!
//! Which scope a request needs: `ingest` for `POST` and `PUT` (the ingest routes), either scope
//! for the Elasticsearch root `GET /`, `read` for everything else behind the check (the query API
//! and the dashboard's data); `admin` opens both. Without
//! any key configured, ingest is open and stored logs are served only to clients on this machine
//! (loopback), unless `gateway.public_reads_without_keys` says otherwise.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::{GatewayConfig, Scope};
use crate::http::{bearer_token, ApiError, RequestId};

const INGEST: u8 = 1;
const READ: u8 = 2;

fn bits(scopes: &[Scope]) -> u8 {
    scopes.iter().fold(0, |acc, scope| {
        acc | match scope {
            Scope::Ingest => INGEST,
            Scope::Read => READ,
            Scope::Admin => INGEST | READ,
        }
    })
}

/// The accepted keys (digest and scopes), and what keyless clients may do.
#[derive(Clone, Default)]
pub struct ApiKeys {
    keys: Arc<Vec<([u8; 32], u8)>>,
    public_reads: bool,
}

impl ApiKeys {
    /// Plain keys with the `ingest` and `read` scopes (tests, embedding programs).
    pub fn new(keys: &[String]) -> Self {
        Self::from_config(&GatewayConfig {
            api_keys: keys.iter().map(|k| k.as_str().into()).collect(),
            ..GatewayConfig::default()
        })
    }

    /// `gateway.api_keys` (ingest and read) and `gateway.keys` (digests, scoped).
    pub fn from_config(gateway: &GatewayConfig) -> Self {
        let plain = gateway
            .api_keys
            .iter()
            .map(|k| (Sha256::digest(k.expose().as_bytes()).into(), INGEST | READ));
        let scoped = gateway
            .keys
            .iter()
            .filter_map(|k| Some((k.digest()?, bits(&k.scopes))));
        Self {
            keys: Arc::new(plain.chain(scoped).collect()),
            public_reads: gateway.public_reads_without_keys,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The scope bits of `presented` (0: not a key).
    fn scopes_of(&self, presented: &str) -> u8 {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut scopes = 0u8;
        for (key, key_scopes) in self.keys.iter() {
            scopes |= u8::conditional_select(&0, key_scopes, key.ct_eq(&digest));
        }
        scopes
    }
}

/// The key a request presents, in any of the forms above.
fn presented_key(request: &Request) -> Option<Cow<'_, str>> {
    let headers = request.headers();
    if let Some(value) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(Cow::Borrowed(value.trim()));
    }
    if let Some(token) = bearer_token(headers) {
        return Some(Cow::Borrowed(token));
    }
    let auth = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, credentials) = auth.trim().split_once(' ')?;
    let credentials = credentials.trim();
    let decoded = || {
        STANDARD
            .decode(credentials)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
    };
    if scheme.eq_ignore_ascii_case("basic") {
        let pair = decoded()?;
        let (_user, password) = pair.split_once(':')?;
        return Some(Cow::Owned(password.to_owned()));
    }
    if scheme.eq_ignore_ascii_case("apikey") {
        // Elasticsearch clients send base64("id:key"); a bare key is taken as it is.
        return Some(
            match decoded().and_then(|pair| pair.split_once(':').map(|(_id, key)| key.to_owned())) {
                Some(key) => Cow::Owned(key),
                None => Cow::Borrowed(credentials),
            },
        );
    }
    None
}

/// The scope a request needs: `PUT` too is ingest (Elasticsearch clients send `PUT /_bulk`), and
/// the Elasticsearch root (`GET /`, the product check shippers make before their first bulk)
/// opens with either scope, so an ingest-only key can pass it.
fn required(request: &Request) -> (u8, Scope) {
    if request.method() == Method::POST || request.method() == Method::PUT {
        (INGEST, Scope::Ingest)
    } else if request.uri().path() == "/" {
        (INGEST | READ, Scope::Ingest)
    } else {
        (READ, Scope::Read)
    }
}

/// Whether the client is on this machine. Without the peer address (a router called directly)
/// it is not.
fn from_loopback(request: &Request) -> bool {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback())
}

/// Middleware: the request carries a key with the scope it needs (401 without a valid key, 403
/// with a key that lacks the scope); without configured keys, reads need a loopback client.
pub async fn require_api_key(
    State(keys): State<ApiKeys>,
    id: RequestId,
    request: Request,
    next: Next,
) -> Response {
    let (need, scope) = required(&request);
    if !keys.enabled() {
        if need & INGEST != 0 || keys.public_reads || from_loopback(&request) {
            return next.run(request).await;
        }
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "stored logs are served only to clients on the gateway's machine while no API key is configured: configure `gateway.keys` with the `read` scope (or set `gateway.public_reads_without_keys = true` to serve them to anyone)",
        )
        .with_request_id(&id)
        .into_response();
    }
    let presented = presented_key(&request);
    let scopes = presented.as_deref().map_or(0, |key| keys.scopes_of(key));
    if scopes & need != 0 {
        return next.run(request).await;
    }
    if scopes != 0 {
        let message = format!("this API key lacks the `{}` scope", scope.as_str());
        return ApiError::new(StatusCode::FORBIDDEN, "forbidden", &message)
            .with_request_id(&id)
            .into_response();
    }
    let message = if presented.is_some() {
        "the API key is not valid"
    } else {
        "an API key is required: send `Authorization: Bearer KEY`, `X-API-Key: KEY`, basic auth with the key as password, or `Authorization: ApiKey KEY`"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiKeyConfig;

    fn hex(key: &str) -> String {
        Sha256::digest(key.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn presented(value: &str) -> Option<String> {
        let request = Request::builder()
            .header(header::AUTHORIZATION, value)
            .body(axum::body::Body::empty())
            .unwrap();
        presented_key(&request).map(Cow::into_owned)
    }

    #[test]
    fn the_key_is_read_from_each_protocols_authorization_header() {
        let key = "the-key-0123456789";
        assert_eq!(presented(&format!("Bearer {key}")).as_deref(), Some(key));
        let basic = STANDARD.encode(format!("promtail:{key}"));
        assert_eq!(presented(&format!("Basic {basic}")).as_deref(), Some(key));
        let es = STANDARD.encode(format!("VuaCfGcBCdbkQm-e5aOx:{key}"));
        assert_eq!(presented(&format!("ApiKey {es}")).as_deref(), Some(key));
        assert_eq!(presented(&format!("apikey {key}")).as_deref(), Some(key));
        assert_eq!(presented("Basic not-base64!"), None);
        assert_eq!(presented("Digest realm=x"), None);
        let request = Request::builder()
            .header("x-api-key", format!(" {key} "))
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(presented_key(&request).as_deref(), Some(key));
    }

    #[test]
    fn each_key_opens_only_its_scopes() {
        let gateway = GatewayConfig {
            api_keys: vec!["plain-key-0123456789".into()],
            keys: vec![
                ApiKeyConfig {
                    name: "shipper".into(),
                    sha256: hex("shipper-key-0123456789"),
                    scopes: vec![Scope::Ingest],
                },
                ApiKeyConfig {
                    name: "grafana".into(),
                    sha256: hex("reader-key-0123456789"),
                    scopes: vec![Scope::Read],
                },
                ApiKeyConfig {
                    name: "ops".into(),
                    sha256: hex("admin-key-0123456789"),
                    scopes: vec![Scope::Admin],
                },
            ],
            ..GatewayConfig::default()
        };
        let keys = ApiKeys::from_config(&gateway);
        assert_eq!(keys.scopes_of("plain-key-0123456789"), INGEST | READ);
        assert_eq!(keys.scopes_of("shipper-key-0123456789"), INGEST);
        assert_eq!(keys.scopes_of("reader-key-0123456789"), READ);
        assert_eq!(keys.scopes_of("admin-key-0123456789"), INGEST | READ);
        assert_eq!(keys.scopes_of("nobody-0123456789"), 0);
        assert_eq!(keys.scopes_of(""), 0);
    }
}

#[cfg(test)]
mod scope_tests {
    use super::*;

    fn need(method: Method, path: &str) -> u8 {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(axum::body::Body::empty())
            .unwrap();
        required(&request).0
    }

    #[test]
    fn bulk_puts_ingest_and_the_elasticsearch_root_takes_either_scope() {
        assert_eq!(need(Method::PUT, "/_bulk"), INGEST);
        assert_eq!(need(Method::POST, "/loki/api/v1/push"), INGEST);
        assert_eq!(need(Method::GET, "/"), INGEST | READ);
        assert_eq!(need(Method::HEAD, "/"), INGEST | READ);
        assert_eq!(need(Method::GET, "/api/v1/logs"), READ);
    }
}

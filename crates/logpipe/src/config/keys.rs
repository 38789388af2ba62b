//! `[[gateway.keys]]`: scoped API keys, stored as digests. A key opens only what its scopes say:
//! `ingest` the ingest routes, `read` the query API and the dashboard's data, `admin` both.

use serde::{Deserialize, Serialize};

/// What a key may do.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// `POST /api/v1/logs`, `POST /api/v1/logs/batch`.
    Ingest,
    /// `GET /api/v1/logs`, `GET /api/v1/stats`, `GET /api/v1/dashboard`.
    Read,
    /// Everything a key can open.
    Admin,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Ingest => "ingest",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

/// One API key: its name (for logs), the SHA-256 of the key as 64 hex digits (the key itself is
/// never in the configuration: `printf %s "$KEY" | sha256sum`), and its scopes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    pub name: String,
    pub sha256: String,
    pub scopes: Vec<Scope>,
}

impl ApiKeyConfig {
    /// The digest as bytes, when `sha256` is 64 hex digits.
    pub fn digest(&self) -> Option<[u8; 32]> {
        let hex = self.sha256.trim();
        if hex.len() != 64 || !hex.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_is_64_hex_digits() {
        let key = |sha256: &str| ApiKeyConfig {
            name: "k".into(),
            sha256: sha256.into(),
            scopes: vec![Scope::Read],
        };
        let hex = "00ff".repeat(16);
        assert_eq!(key(&hex).digest().unwrap()[..2], [0x00, 0xff]);
        assert_eq!(key(&hex.to_uppercase()).digest().unwrap()[1], 0xff);
        assert!(key(&hex[..62]).digest().is_none(), "too short");
        assert!(
            key(&format!("{}zz", &hex[..62])).digest().is_none(),
            "not hex"
        );
    }
}

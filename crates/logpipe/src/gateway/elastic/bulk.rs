//! Splitting a `_bulk` body (NDJSON: an action line, then a source line for `index`, `create`
//! and `update`) into [`Item`]s. A line that is not an action refuses the whole request, as in
//! Elasticsearch; an action logpipe does not take (`update`, `delete`) is an item of its own that
//! gets a per-item error, so the rest of the request still goes through.

use serde_json::{Map, Value};

/// The actions of the bulk API.
const ACTIONS: [&str; 4] = ["index", "create", "update", "delete"];

/// One action with its document.
#[derive(Debug)]
pub struct Item<'a> {
    /// As sent: the key of this item's answer.
    pub action: &'static str,
    pub index: Option<String>,
    pub id: Option<String>,
    /// The source line (absent for `delete`).
    pub source: Option<&'a [u8]>,
}

impl Item<'_> {
    /// Whether logpipe stores this action (`index` and `create`; both only ever create).
    pub fn stores(&self) -> bool {
        matches!(self.action, "index" | "create")
    }
}

/// The items of a bulk body, or why the body is not one. More than `max_items` is refused as
/// soon as item `max_items + 1` is seen.
pub fn split<'a>(
    body: &'a [u8],
    path_index: Option<&str>,
    max_items: usize,
) -> Result<Vec<Item<'a>>, BulkError> {
    let mut lines = body
        .split(|&b| b == b'\n')
        .enumerate()
        .map(|(n, line)| (n + 1, line.strip_suffix(b"\r").unwrap_or(line)))
        .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace));
    let mut items = Vec::new();
    while let Some((number, line)) = lines.next() {
        let (action, meta) = action(line).map_err(|reason| {
            BulkError::Malformed(format!(
                "Malformed action/metadata line [{number}]: {reason}"
            ))
        })?;
        let source = if action == "delete" {
            None
        } else {
            let (_, source) = lines.next().ok_or_else(|| {
                BulkError::Malformed(format!(
                    "the `{action}` action on line [{number}] has no source line after it"
                ))
            })?;
            Some(source)
        };
        if items.len() == max_items {
            return Err(BulkError::TooMany(max_items));
        }
        let text = |key: &str| meta.get(key).and_then(Value::as_str).map(str::to_owned);
        items.push(Item {
            action,
            index: text("_index").or_else(|| path_index.map(str::to_owned)),
            id: text("_id"),
            source,
        });
    }
    if items.is_empty() {
        return Err(BulkError::Malformed(
            "request body is required: the bulk request holds no actions".into(),
        ));
    }
    Ok(items)
}

/// Why a bulk body was refused as a whole.
#[derive(Debug, PartialEq)]
pub enum BulkError {
    Malformed(String),
    TooMany(usize),
}

fn action(line: &[u8]) -> Result<(&'static str, Map<String, Value>), String> {
    let object: Map<String, Value> =
        serde_json::from_slice(line).map_err(|e| format!("expected a JSON object ({e})"))?;
    let mut entries = object.into_iter();
    let (Some((name, meta)), None) = (entries.next(), entries.next()) else {
        return Err("expected exactly one action".into());
    };
    let Some(action) = ACTIONS.iter().find(|a| **a == name) else {
        return Err(format!(
            "expected one of [create, delete, index, update] but found [{name}]"
        ));
    };
    match meta {
        Value::Object(meta) => Ok((action, meta)),
        _ => Err(format!("the `{name}` action's metadata must be an object")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_actions_and_sources() {
        let body = b"{\"index\":{\"_index\":\"a\",\"_id\":\"1\"}}\n{\"message\":\"x\"}\n\
            {\"delete\":{\"_id\":\"2\"}}\n\r\n{\"create\":{}}\r\n{\"message\":\"y\"}\n\
            {\"update\":{\"_id\":\"3\"}}\n{\"doc\":{}}\n";
        let items = split(body, Some("path"), 10).unwrap();
        let seen: Vec<_> = items
            .iter()
            .map(|i| {
                (
                    i.action,
                    i.index.as_deref(),
                    i.id.as_deref(),
                    i.source.map(|s| s.len()),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("index", Some("a"), Some("1"), Some(15)),
                ("delete", Some("path"), Some("2"), None),
                ("create", Some("path"), None, Some(15)),
                ("update", Some("path"), Some("3"), Some(10)),
            ]
        );
        assert!(items[0].stores() && !items[1].stores() && !items[3].stores());
    }

    #[test]
    fn refuses_malformed_bodies() {
        let err = |body: &[u8]| match split(body, None, 10).unwrap_err() {
            BulkError::Malformed(m) => m,
            other => panic!("{other:?}"),
        };
        assert!(err(b"{\"upsert\":{}}\n{}\n").contains("found [upsert]"));
        assert!(err(b"not json\n").contains("line [1]"));
        assert!(err(b"{\"index\":{}}\n").contains("no source line"));
        assert!(err(b"{\"index\":{},\"create\":{}}\n{}\n").contains("exactly one"));
        assert!(err(b"\n").contains("no actions"));
        let two = b"{\"create\":{}}\n{}\n{\"create\":{}}\n{}\n";
        assert_eq!(split(two, None, 1).unwrap_err(), BulkError::TooMany(1));
    }
}

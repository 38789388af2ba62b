//! Query semantics shared by both backends: checking a [`LogQuery`] into a [`QueryPlan`] each
//! backend turns into SQL, and cutting the rows read into a [`LogPage`].
//!
//! Pages are read with one row more than asked for: if it arrives there is a next page, and its
//! cursor is the last row kept. That costs one row, not a second `count` query.

use chrono::{DateTime, Utc};
use logpipe_model::Level;

use crate::cursor::Cursor;
use crate::error::StoreError;
use crate::sanitize;
use crate::types::{LogPage, LogQuery, StoredLog, MAX_QUERY_LIMIT};

/// A checked query, ready for a backend to turn into SQL.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct QueryPlan {
    pub service: Option<String>,
    pub level: Option<Level>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// `%text%` with `\`, `%` and `_` escaped by `\`, for `LIKE`/`ILIKE ... ESCAPE '\'`.
    pub like_pattern: Option<String>,
    /// Rows strictly after this position in the page order.
    pub after: Option<Cursor>,
    /// The page size asked for.
    pub limit: u32,
}

impl QueryPlan {
    pub fn new(query: &LogQuery) -> Result<QueryPlan, StoreError> {
        if !(1..=MAX_QUERY_LIMIT).contains(&query.limit) {
            return Err(StoreError::InvalidQuery(format!(
                "limit must be between 1 and {MAX_QUERY_LIMIT}, got {}",
                query.limit
            )));
        }
        let after = query.cursor.as_deref().map(Cursor::decode).transpose()?;
        // Filters are sanitised like stored text, so searching for a NUL finds the U+FFFD it
        // was stored as (and PostgreSQL is never sent a NUL).
        Ok(QueryPlan {
            service: query
                .service
                .as_deref()
                .map(|service| sanitize::text(service).into_owned()),
            level: query.level,
            since: query.since,
            until: query.until,
            like_pattern: query
                .text
                .as_deref()
                .map(|text| like_contains(&sanitize::text(text))),
            after,
            limit: query.limit,
        })
    }

    /// Rows to read: one more than the page, to learn whether another page follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// Cuts the rows read (at most [`fetch`](QueryPlan::fetch), in page order) into a page.
    pub fn page(&self, mut logs: Vec<StoredLog>) -> LogPage {
        let limit = self.limit as usize;
        let next_cursor = if logs.len() > limit {
            logs.truncate(limit);
            logs.last().map(|last| Cursor::after(last).encode())
        } else {
            None
        };
        LogPage { logs, next_cursor }
    }
}

/// A `LIKE` pattern matching `text` anywhere, with `\` as the escape character.
fn like_contains(text: &str) -> String {
    let mut pattern = String::with_capacity(text.len() + 2);
    pattern.push('%');
    for c in text.chars() {
        if matches!(c, '\\' | '%' | '_') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(like_contains("timeout"), "%timeout%");
        assert_eq!(like_contains(r"50%_off\now"), r"%50\%\_off\\now%");
    }

    #[test]
    fn limits_are_checked() {
        for limit in [0, MAX_QUERY_LIMIT + 1] {
            let query = LogQuery {
                limit,
                ..LogQuery::default()
            };
            assert!(matches!(
                QueryPlan::new(&query),
                Err(StoreError::InvalidQuery(_))
            ));
        }
        let query = LogQuery {
            limit: MAX_QUERY_LIMIT,
            text: Some("a\0b".into()),
            ..LogQuery::default()
        };
        let plan = QueryPlan::new(&query).unwrap();
        assert_eq!(plan.fetch(), 1001);
        assert_eq!(plan.like_pattern.as_deref(), Some("%a\u{FFFD}b%"));
    }
}

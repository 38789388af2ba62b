//! [`count_cells`] on PostgreSQL: the stored rows of an event-time range counted per minute,
//! service, level and error fingerprint, below each partition's cut, in one grouped statement.
//!
//! The statement is bounded by `ts`, so only the daily partitions of the range are read and the
//! ts-first indexes apply; there is no index on offsets, so the cut is a per-row filter. The
//! cuts travel as three arrays and are hash-joined. Rows of partitions without a cut are grouped
//! by partition alone in the same scan (the `CASE`s), so the range is read once.
//!
//! It runs as an unnamed statement (`query_typed`), planned for this call's values: a cached
//! generic plan cannot prune partitions at plan time and estimates the range blindly. And it
//! runs with sorting discouraged ([`HASH_AGGREGATE`]): left to itself the planner groups by
//! sorting every row of the range, spilling to disk.

use tokio_postgres::types::{ToSql, Type};

use super::PgStore;
use crate::cells::{distinct_cuts, CellCount, CellQuery, Counted, Tally};
use crate::error::{from_postgres, StoreError};

pub(super) async fn count_cells(
    store: &PgStore,
    query: &CellQuery,
) -> Result<CellCount, StoreError> {
    let cuts = distinct_cuts(&query.cuts)?;
    let topics: Vec<&str> = cuts.iter().map(|cut| cut.topic.as_str()).collect();
    let partitions: Vec<i32> = cuts.iter().map(|cut| cut.partition).collect();
    let throughs: Vec<i64> = cuts.iter().map(|cut| cut.through).collect();
    let mut params: Vec<(&(dyn ToSql + Sync), Type)> = vec![
        (&query.from, Type::TIMESTAMPTZ),
        (&query.until, Type::TIMESTAMPTZ),
        (&topics, Type::TEXT_ARRAY),
        (&partitions, Type::INT4_ARRAY),
        (&throughs, Type::INT8_ARRAY),
    ];
    if let Some(service) = &query.service {
        params.push((service, Type::TEXT));
    }
    let statement = statement(&store.sql().logs, query.service.is_some());
    let context = "counting stored events per minute";
    let fail = |err: tokio_postgres::Error| from_postgres(context, &err);
    let mut client = store.client().await?;
    // A transaction only to scope the setting below to this statement (rolled back on drop
    // if anything fails, so the pooled connection goes back as it came).
    let tx = client.transaction().await.map_err(fail)?;
    tx.batch_execute(HASH_AGGREGATE).await.map_err(fail)?;
    let rows = tx.query_typed(&statement, &params).await.map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    let unexpected = |err: tokio_postgres::Error| {
        StoreError::Schema(format!(
            "counting stored events: unexpected column value: {err}"
        ))
    };
    let mut tally = Tally::default();
    for row in rows {
        let events: i64 = row.try_get(6).map_err(unexpected)?;
        if let Some(topic) = row.try_get::<_, Option<String>>(0).map_err(unexpected)? {
            tally.uncut(topic, row.try_get(1).map_err(unexpected)?, events);
            continue;
        }
        tally.counted(Counted {
            minute: row.try_get(2).map_err(unexpected)?,
            service: row.try_get(3).map_err(unexpected)?,
            level: row.try_get(4).map_err(unexpected)?,
            fingerprint: row.try_get(5).map_err(unexpected)?,
            template: row.try_get(7).map_err(unexpected)?,
            events,
        })?;
    }
    Ok(tally.finish())
}

/// Makes the planner aggregate by hashing. It estimates the number of groups from the columns
/// the grouping expressions read, and the minute reads `ts`, distinct in nearly every row: so it
/// expects about one group per row and sorts every row of the range (on disk past `work_mem`).
/// The real number is small and bounded (minutes × services × levels × error fingerprints, plus
/// uncut partitions), which a hash table holds in a few MB. Measured over one hour of 500k rows
/// (4,800 groups): 0.50 s hashed, 0.64 s to 1.0 s sorted (two parallel workers, each spilling
/// 11 MB to disk with the default 4 MB `work_mem`).
const HASH_AGGREGATE: &str = "SET LOCAL enable_sort = off";

/// The counting statement. Columns: uncut topic and partition (set only for rows of a partition
/// without a cut, all else NULL then), minute, service, level, fingerprint (ERROR and FATAL
/// only), events, template (ERROR and FATAL only).
///
/// The minute is `floor(epoch / 60) * 60` in numeric (exact, floors before 1970 too), never
/// `date_trunc`, which works in the session's TimeZone. The level list is a literal so the
/// planner can use the partial level index. `COLLATE "C"`: the column's collation.
fn statement(logs_table: &str, by_service: bool) -> String {
    let service = if by_service {
        " AND l.service = $6"
    } else {
        ""
    };
    format!(
        "WITH cuts AS (SELECT * FROM unnest($3::text[], $4::int[], $5::bigint[]) \
                       AS c(topic, part, through)) \
         SELECT CASE WHEN c.topic IS NULL THEN l.kafka_topic END, \
                CASE WHEN c.topic IS NULL THEN l.kafka_partition END, \
                CASE WHEN c.topic IS NOT NULL \
                     THEN floor(extract(epoch FROM l.ts) / 60)::bigint * 60 END, \
                CASE WHEN c.topic IS NOT NULL THEN l.service END, \
                CASE WHEN c.topic IS NOT NULL THEN l.level END, \
                CASE WHEN c.topic IS NOT NULL AND l.level IN ('ERROR', 'FATAL') \
                     THEN l.fingerprint END, \
                count(*), \
                min(l.template) FILTER (WHERE c.topic IS NOT NULL \
                                        AND l.level IN ('ERROR', 'FATAL')) \
         FROM {logs_table} l \
         LEFT JOIN cuts c ON l.kafka_topic = c.topic COLLATE \"C\" \
                         AND l.kafka_partition = c.part \
         WHERE l.ts >= $1 AND l.ts < $2 \
           AND (c.topic IS NULL OR l.kafka_offset <= c.through){service} \
         GROUP BY 1, 2, 3, 4, 5, 6"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_service_filter_appears_only_when_asked() {
        let all = statement("\"s\".\"logs\"", false);
        assert!(all.contains("FROM \"s\".\"logs\" l"), "{all}");
        assert!(!all.contains("$6"));
        let one = statement("logs", true);
        assert!(one.contains("AND l.service = $6 GROUP BY"), "{one}");
    }
}

//! The rebuild's Redis-only behaviour: the lease and request keys as documented, the TTLs a
//! correction leaves on minute keys, watermark keys parsed into cuts, and `INFO stats`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use ::redis::cmd;
use logpipe_model::{CellDiff, Cut, Fingerprint, Level};

use super::support::*;
use crate::BatchDelta;

async fn ttl(conn: &mut ::redis::aio::MultiplexedConnection, key: &str) -> i64 {
    cmd("TTL").arg(key).query_async(conn).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lease_and_request_keys() {
    run_redis(|f| async move {
        let mut conn = raw_connection(&f.url).await;
        let p = &f.options.key_prefix;
        let lease = f
            .store
            .lease("host-1 pid 42 rebuild", Duration::from_secs(20))
            .await
            .unwrap();
        let value: String = cmd("GET")
            .arg(format!("{p}:rb"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let parts: Vec<&str> = value.splitn(3, ' ').collect();
        assert_eq!(parts.len(), 3, "{value}");
        assert_eq!(parts[0].len(), 16, "{value}");
        assert_eq!(
            parts[1].parse::<i64>().unwrap(),
            lease.started_at().timestamp_millis()
        );
        assert_eq!(parts[2], "host-1 pid 42 rebuild");
        let pttl: i64 = cmd("PTTL")
            .arg(format!("{p}:rb"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > 0 && pttl <= 20_000, "{pttl}");

        let mut delta = BatchDelta::new();
        delta.request_rebuild(format!("{TOPIC}:3"), "watermark 99 lost".to_owned());
        f.store.apply(&delta).await.unwrap();
        let requests: HashMap<String, String> = cmd("HGETALL")
            .arg(format!("{p}:rb:requests"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            requests,
            [(format!("{TOPIC}:3"), "watermark 99 lost".to_owned())].into()
        );
        assert_eq!(ttl(&mut conn, &format!("{p}:rb:requests")).await, -1);

        // Deleting the key, as FLUSHDB would, loses the lease.
        let _: i64 = cmd("DEL")
            .arg(format!("{p}:rb"))
            .query_async(&mut conn)
            .await
            .unwrap();
        let lost = f.store.renew(&lease).await.unwrap_err();
        assert!(matches!(lost, crate::AggError::LeaseLost(_)), "{lost}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_gives_new_minute_keys_the_minute_ttl_and_keeps_existing_ones() {
    run_redis(|f| async move {
        let mut conn = raw_connection(&f.url).await;
        let p = &f.options.key_prefix;
        let logs = [record("a", Level::Error, 0, 5, TOPIC, 0, 0)];
        f.store.apply(&delta_for(0, -1, 0, &logs)).await.unwrap();
        let m0 = base_time().timestamp();
        let m5 = m0 + 300;
        let (sl0, err0) = (format!("{p}:m:{m0}:sl"), format!("{p}:m:{m0}:err"));
        let (sl5, err5) = (format!("{p}:m:{m5}:sl"), format!("{p}:m:{m5}:err"));
        let _: i64 = cmd("EXPIRE")
            .arg(&sl0)
            .arg(1000)
            .query_async(&mut conn)
            .await
            .unwrap();
        // A key without a TTL (written by hand) gets one.
        let _: i64 = cmd("PERSIST")
            .arg(&err0)
            .query_async(&mut conn)
            .await
            .unwrap();

        let lease = f.store.lease("ttl", Duration::from_secs(30)).await.unwrap();
        let correction = CellDiff {
            counts: vec![
                (m0, "a".to_owned(), Level::Info, 4),
                (m5, "b".to_owned(), Level::Error, 1),
            ],
            errors: vec![
                (m0, "a".to_owned(), Fingerprint(5), 1),
                (m5, "b".to_owned(), Fingerprint(6), 1),
            ],
        };
        let templates: BTreeMap<Fingerprint, String> = [(Fingerprint(6), "six".to_owned())].into();
        f.store
            .correct(&lease, &correction, &templates, true)
            .await
            .unwrap();

        let sl0_ttl = ttl(&mut conn, &sl0).await;
        assert!(sl0_ttl > 0 && sl0_ttl <= 1000, "kept: {sl0_ttl}");
        let day = 24 * 3600;
        for key in [&err0, &sl5, &err5, &format!("{p}:fp:0000000000000006")] {
            let left = ttl(&mut conn, key).await;
            assert!(left > day && left <= 2 * day, "{key}: {left}");
        }
        let counts: HashMap<String, i64> = cmd("HGETALL")
            .arg(&sl0)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            counts,
            [("a|ERROR".to_owned(), 1), ("a|INFO".to_owned(), 4)].into()
        );
        let totals: HashMap<String, i64> = cmd("HGETALL")
            .arg(format!("{p}:totals"))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            totals,
            [
                ("all".to_owned(), 6),
                ("level:ERROR".to_owned(), 2),
                ("level:INFO".to_owned(), 4)
            ]
            .into()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermark_keys_become_cuts() {
    run_redis(|f| async move {
        let mut conn = raw_connection(&f.url).await;
        let p = &f.options.key_prefix;
        for (key, value) in [
            (format!("{p}:wm:my.topic-x:12"), "99"),
            (format!("{p}:wm:{TOPIC}:0"), "7"),
            (format!("{p}:wm:no-partition"), "5"),
        ] {
            let () = cmd("SET")
                .arg(key)
                .arg(value)
                .query_async(&mut conn)
                .await
                .unwrap();
        }
        let m0 = base_time().timestamp();
        let snapshot = f.store.snapshot(m0, m0 + 60).await.unwrap();
        let cut = |topic: &str, partition, through| Cut {
            topic: topic.to_owned(),
            partition,
            through,
        };
        assert_eq!(
            snapshot.cuts,
            vec![cut(TOPIC, 0, 7), cut("my.topic-x", 12, 99)],
            "the malformed key is left out"
        );
        assert!(f.store.evicted_keys().await.is_ok());
    })
    .await;
}

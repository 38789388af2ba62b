//! Redis-only behaviour: the documented key layout and TTLs, outages (refused connections,
//! killed connections) and recovery, and the script being reloaded after the server lost it.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use ::redis::cmd;
use logpipe_model::Level;

use super::support::*;
use crate::{AggError, AggOptions, Aggregates, ApplyOutcome};

#[test]
#[should_panic(
    expected = "run scripts/test.sh, which starts Redis and sets LOGPIPE_TEST_REDIS_URL"
)]
fn a_missing_redis_url_fails_instead_of_skipping() {
    require_redis_url(None);
}

#[tokio::test]
async fn an_unreachable_redis_is_an_outage_reported_quickly() {
    for url in ["redis://127.0.0.1:1", "rediss://127.0.0.1:1"] {
        let started = Instant::now();
        let err = Aggregates::open(url, &AggOptions::default())
            .await
            .unwrap_err();
        assert!(err.is_outage(), "{url}: {err}");
        assert!(matches!(err, AggError::Unavailable(_)));
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{url}: took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_server_that_never_answers_is_an_outage_after_the_timeout() {
    // Accepts connections and holds them open without ever replying: a hung Redis.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let options = AggOptions {
        timeout: Duration::from_secs(1),
        ..AggOptions::default()
    };
    let started = Instant::now();
    let err = Aggregates::open(&format!("redis://127.0.0.1:{port}"), &options)
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    silent.abort();
    assert!(err.is_outage(), "{err}");
    assert!(elapsed < Duration::from_millis(1500), "took {elapsed:?}");
}

#[tokio::test]
async fn bad_urls_and_options_are_errors_not_outages() {
    for url in [
        "http://127.0.0.1:6379",
        "127.0.0.1:6379",
        "redis://127.0.0.1:notaport",
    ] {
        let err = Aggregates::open(url, &AggOptions::default())
            .await
            .unwrap_err();
        assert!(!err.is_outage(), "{url}: {err}");
    }
    let bad_prefix = AggOptions {
        key_prefix: "has space".to_owned(),
        ..AggOptions::default()
    };
    let err = Aggregates::open("", &bad_prefix).await.unwrap_err();
    assert!(err.to_string().contains("key_prefix"), "{err}");
    let bad_ttl = AggOptions {
        minute_ttl: Duration::ZERO,
        ..AggOptions::default()
    };
    let err = Aggregates::open("", &bad_ttl).await.unwrap_err();
    assert!(err.to_string().contains("minute_ttl"), "{err}");
    let secret = Aggregates::open("mysql://user:hunter2@db", &AggOptions::default())
        .await
        .unwrap_err();
    assert!(!secret.to_string().contains("hunter2"), "{secret}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layout_and_ttls() {
    run_redis(|f| async move {
        let logs = [
            record("checkout", Level::Error, 0, 0xabc, TOPIC, 3, 0),
            record("checkout", Level::Info, 0, 1, TOPIC, 3, 1),
        ];
        let outcome = f.store.apply(&delta_for(3, -1, 1, &logs)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::Applied { records: 2 });

        let mut conn = raw_connection(&f.url).await;
        let p = &f.options.key_prefix;
        let minute = base_time().timestamp();
        let (sl, err) = (format!("{p}:m:{minute}:sl"), format!("{p}:m:{minute}:err"));
        let fp = format!("{p}:fp:0000000000000abc");
        let (totals, wm) = (format!("{p}:totals"), format!("{p}:wm:{TOPIC}:3"));

        let counts: HashMap<String, u64> = cmd("HGETALL")
            .arg(&sl)
            .query_async(&mut conn)
            .await
            .unwrap();
        let want: HashMap<String, u64> =
            [("checkout|ERROR".into(), 1), ("checkout|INFO".into(), 1)].into();
        assert_eq!(counts, want);
        let score: f64 = cmd("ZSCORE")
            .arg(&err)
            .arg("checkout|0000000000000abc")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(score, 1.0);
        let template: String = cmd("GET").arg(&fp).query_async(&mut conn).await.unwrap();
        assert_eq!(template, template_of(0xabc));
        let all_time: HashMap<String, u64> = cmd("HGETALL")
            .arg(&totals)
            .query_async(&mut conn)
            .await
            .unwrap();
        let want: HashMap<String, u64> = [
            ("all".into(), 2),
            ("level:ERROR".into(), 1),
            ("level:INFO".into(), 1),
        ]
        .into();
        assert_eq!(all_time, want);
        let watermark: String = cmd("GET").arg(&wm).query_async(&mut conn).await.unwrap();
        assert_eq!(watermark, "1");

        let ttl_limit = 48 * 3600;
        for key in [&sl, &err, &fp] {
            let ttl: i64 = cmd("TTL").arg(key).query_async(&mut conn).await.unwrap();
            assert!(ttl > 0 && ttl <= ttl_limit, "{key}: TTL {ttl}");
        }
        for key in [&totals, &wm] {
            let ttl: i64 = cmd("TTL").arg(key).query_async(&mut conn).await.unwrap();
            assert_eq!(ttl, -1, "{key} must not expire");
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_its_connection_is_killed() {
    run_redis(|f| async move {
        let Aggregates::Redis(redis) = &f.store else {
            panic!("a Redis store")
        };
        let client_id = || async {
            let id: i64 = cmd("CLIENT")
                .arg("ID")
                .query_async(&mut redis.connection())
                .await
                .unwrap();
            id
        };
        let before = client_id().await;
        // Kill exactly this store's connection: `CLIENT KILL TYPE normal` would also cut the
        // connections of tests running in parallel against the same Redis.
        let mut admin = raw_connection(&f.url).await;
        let killed: i64 = cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(before)
            .query_async(&mut admin)
            .await
            .unwrap();
        assert_eq!(killed, 1);

        let logs = [record("svc", Level::Info, 0, 1, TOPIC, 0, 0)];
        let delta = delta_for(0, -1, 0, &logs);
        let mut failures = 0;
        let outcome = loop {
            match f.store.apply(&delta).await {
                Ok(outcome) => break outcome,
                Err(err) => {
                    assert!(err.is_outage(), "{err}");
                    failures += 1;
                    assert!(failures < 5, "no recovery after {failures} attempts: {err}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        };
        // Either this attempt applied it, or a failed-looking earlier one did: counted once.
        assert!(
            outcome == ApplyOutcome::Applied { records: 1 }
                || outcome
                    == ApplyOutcome::Conflict {
                        partitions: vec![(TOPIC.to_owned(), 0, 0)]
                    },
            "{outcome:?}"
        );
        assert_eq!(f.store.stats(&query(1, None, 1)).await.unwrap().total, 1);
        assert_ne!(client_id().await, before, "a new connection");
        assert!(f.store.ping().await);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_script_is_reloaded_when_redis_lost_it() {
    run_redis(|f| async move {
        // As after a Redis restart. Every logpipe client reloads on NOSCRIPT, so flushing the
        // shared server's script cache does not disturb tests running in parallel.
        let mut admin = raw_connection(&f.url).await;
        let () = cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut admin)
            .await
            .unwrap();
        let logs = [record("svc", Level::Info, 0, 1, TOPIC, 0, 0)];
        let outcome = f.store.apply(&delta_for(0, -1, 0, &logs)).await.unwrap();
        assert_eq!(outcome, ApplyOutcome::Applied { records: 1 });
    })
    .await;
}

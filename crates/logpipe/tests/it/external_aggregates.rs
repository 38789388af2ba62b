//! The aggregates as derived data, against Apache Kafka, PostgreSQL and Redis (started by
//! `scripts/test.sh`): a loss of aggregates data in the middle of steady traffic (every key of the
//! deployment deleted, as FLUSHDB does; a Redis restart without persistence) is found and rebuilt
//! from the log store by the consumer itself; `logpipe aggregates rebuild` run while events flow
//! leaves exact counts; one killed half-way changes nothing and runs again. Every case ends with
//! `logpipe aggregates verify` exiting 0 and the stats API counting every stored event once, on
//! PostgreSQL, and on the embedded SQLite store (with the embedded broker).

use std::process::Stdio;
use std::time::Duration;

use chrono::Utc;
use logpipe::aggregates::rebuild::{rebuild, RebuildPlan, TotalsChoice};
use logpipe::aggregates::sources::LogLines;
use logpipe::aggregates::verify::{verify, VerifyReport};
use logpipe::aggregates::window::{Limits, Window};
use logpipe::app::{App, Roles};
use logpipe::config::Config;
use serde_json::Value;

use crate::consumer_flow::{generate, post_all, stats, wait_for_rows};
use crate::support::{
    eventually, external_config, logpipe, metric, redis_cli, start, unique, PrivateRedis,
};

const REBUILT: &str = "log_consumer_aggregate_rebuilds_total{outcome=\"completed\"}";
const LOSSES: &str = "log_consumer_aggregate_losses_total";

/// Deletes every key of the deployment's prefix: what FLUSHDB does to it, without touching the
/// other tests sharing this Redis.
fn lose_everything(config: &Config) {
    let script = "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) n = n + 1 end return n";
    let deleted = redis_cli(
        &config.redis.url,
        &[
            "EVAL",
            script,
            "0",
            &format!("{}:*", config.redis.key_prefix),
        ],
    );
    assert!(
        deleted.trim().parse::<u64>().unwrap() > 0,
        "keys deleted: {deleted}"
    );
}

/// `logpipe aggregates <args>` against the config's stores; (exit code, stdout, stderr).
fn aggregates_cli(config: &Config, args: &[&str]) -> (i32, String, String) {
    let out = logpipe()
        .args([
            "--postgres-url",
            &config.postgres.url,
            "--redis-url",
            &config.redis.url,
        ])
        .env("LOGPIPE_POSTGRES_SCHEMA", &config.postgres.schema)
        .env("LOGPIPE_REDIS_KEY_PREFIX", &config.redis.key_prefix)
        .arg("aggregates")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `verify` must exit 0 and say so.
fn assert_verified(config: &Config) {
    let (code, out, err) = aggregates_cli(config, &["verify", "--since", "2h"]);
    assert_eq!(
        code, 0,
        "aggregates verify found differences or failed:\n{out}\n{err}"
    );
    assert!(out.contains("OK: the aggregates agree"), "{out}");
}

/// The stats API counts every event once: in the last hour's minutes and in the totals.
async fn assert_counted(base: &str, events: u64) {
    let s: Value = stats(base).await;
    assert_eq!(s["total"].as_u64(), Some(events), "minute counts: {s}");
    assert_eq!(s["all_time"]["total"].as_u64(), Some(events), "totals: {s}");
}

/// Posts `events` in batches of 50, one batch every `pause`.
async fn post_steadily(base: &str, events: &[Value], pause: Duration) {
    for batch in events.chunks(50) {
        assert_eq!(post_all(base, batch, 50).await, batch.len() as u64);
        tokio::time::sleep(pause).await;
    }
}

/// Posts half the events, waits until some are counted, calls `midway` (the loss), then posts
/// the rest: the loss lands in the middle of steady traffic, with counts to lose.
async fn post_around(base: &str, events: &[Value], pause: Duration, midway: impl FnOnce()) {
    let (first, second) = events.split_at(events.len() / 2);
    post_steadily(base, first, pause).await;
    eventually(Duration::from_secs(60), "some events counted", || async {
        stats(base).await["total"].as_u64().unwrap_or(0) > 0
    })
    .await;
    midway();
    post_steadily(base, second, pause).await;
}

/// Waits until the stats API counts `events` in the last hour.
async fn wait_counted(base: &str, events: usize) {
    eventually(
        Duration::from_secs(30),
        "every stored event counted",
        || async { stats(base).await["total"].as_u64() == Some(events as u64) },
    )
    .await;
}

/// An app on the external services with reconciliation off (the test runs the rebuilds), and
/// `n` events of its own posted, stored and counted: (app, config, gateway URL, events).
async fn counted_app(name: &str, n: usize) -> (App, Config, String, Vec<Value>) {
    let mut config = external_config().await;
    config.redis.reconcile = false;
    let run = unique(name);
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events = generate(n, 3, &run);
    post_all(&base, &events, 100).await;
    wait_for_rows(&run, &base, events.len()).await;
    wait_counted(&base, events.len()).await;
    (app, config, base, events)
}

async fn wait_rebuilt(base: &str) {
    eventually(
        Duration::from_secs(120),
        "the reconciler completed a rebuild",
        || async { metric(base, REBUILT).await >= 1.0 },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_keys_lost_under_load_are_rebuilt_by_the_consumer() {
    let config = external_config().await;
    let run = unique("flush");
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events = generate(2000, 6, &run);
    post_around(&base, &events, Duration::from_millis(200), || {
        lose_everything(&config)
    })
    .await;
    wait_for_rows(&run, &base, events.len()).await;
    wait_rebuilt(&base).await;
    assert!(metric(&base, LOSSES).await >= 1.0, "the loss was counted");
    assert_counted(&base, events.len() as u64).await;
    assert_verified(&config);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_a_redis_restart_without_persistence_is_rebuilt() {
    let mut config = external_config().await;
    let mut redis = PrivateRedis::start_without_persistence();
    config.redis.url = format!("redis://127.0.0.1:{}", redis.port);
    let run = unique("restart");
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events = generate(1500, 4, &run);
    post_around(&base, &events, Duration::from_millis(200), || {
        redis.kill();
        redis.resume();
    })
    .await;
    wait_for_rows(&run, &base, events.len()).await;
    wait_rebuilt(&base).await;
    assert_counted(&base, events.len() as u64).await;
    assert_verified(&config);
    app.shutdown().await.unwrap();
}

/// Damages the aggregates the way a loss does, minutes and totals together: one minute key
/// deleted with what it added to the totals, and one count inflated with the totals.
fn damage(config: &Config) {
    let script = r#"
local keys = redis.call('KEYS', ARGV[1] .. ':m:*:sl')
if #keys == 0 then return 0 end
table.sort(keys)
local lost = keys[1]
local fields = redis.call('HGETALL', lost)
for i = 1, #fields, 2 do
  local level = string.match(fields[i], '|(%u+)$')
  redis.call('HINCRBY', ARGV[1] .. ':totals', 'level:' .. level, -tonumber(fields[i + 1]))
  redis.call('HINCRBY', ARGV[1] .. ':totals', 'all', -tonumber(fields[i + 1]))
end
redis.call('DEL', lost, string.gsub(lost, ':sl$', ':err'))
local other = keys[#keys]
local field = redis.call('HKEYS', other)[1]
if field then
  redis.call('HINCRBY', other, field, 3)
  redis.call('HINCRBY', ARGV[1] .. ':totals', 'level:' .. string.match(field, '|(%u+)$'), 3)
  redis.call('HINCRBY', ARGV[1] .. ':totals', 'all', 3)
end
return #keys
"#;
    redis_cli(
        &config.redis.url,
        &["EVAL", script, "0", &config.redis.key_prefix],
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_rebuilds_while_events_flow_leave_exact_counts() {
    let mut config = external_config().await;
    config.redis.reconcile = false;
    let run = unique("live");
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events = generate(3000, 5, &run);
    let poster = {
        let base = base.clone();
        let events = events.clone();
        tokio::spawn(async move {
            post_steadily(&base, &events, Duration::from_millis(150)).await;
        })
    };
    // Rebuilds at moments spread over the traffic, each after damaging the aggregates.
    let mut rebuilt = 0;
    for wait in [1500, 2500, 2000] {
        tokio::time::sleep(Duration::from_millis(wait)).await;
        damage(&config);
        let (code, out, err) = aggregates_cli(&config, &["rebuild", "--since", "2h"]);
        assert_eq!(code, 0, "rebuild failed:\n{out}\n{err}");
        assert!(out.contains("read from the store"), "{out}");
        rebuilt += 1;
    }
    assert!(
        !poster.is_finished(),
        "the rebuilds ran while events were still being posted"
    );
    poster.await.unwrap();
    assert_eq!(rebuilt, 3);
    wait_for_rows(&run, &base, events.len()).await;
    wait_counted(&base, events.len()).await;
    assert_counted(&base, events.len() as u64).await;
    assert_verified(&config);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_a_rebuild_killed_half_way_changes_nothing_and_runs_again() {
    let (app, config, base, events) = counted_app("killed", 600).await;
    damage(&config);
    let dump = || {
        let keys = redis_cli(
            &config.redis.url,
            &[
                "--scan",
                "--pattern",
                &format!("{}:*", config.redis.key_prefix),
            ],
        );
        let mut keys: Vec<&str> = keys.lines().collect();
        keys.sort();
        keys.iter()
            .map(|k| {
                format!(
                    "{k} {}",
                    redis_cli(&config.redis.url, &["DUMP", k]).trim_end()
                )
            })
            .collect::<Vec<_>>()
    };
    let before: Vec<String> = dump().into_iter().filter(|k| !k.contains(":rb")).collect();

    // One-minute chunks over two days: thousands of statements, killed well before the end.
    let mut child = logpipe()
        .args([
            "--postgres-url",
            &config.postgres.url,
            "--redis-url",
            &config.redis.url,
        ])
        .env("LOGPIPE_POSTGRES_SCHEMA", &config.postgres.schema)
        .env("LOGPIPE_REDIS_KEY_PREFIX", &config.redis.key_prefix)
        .args(["aggregates", "rebuild", "--since", "47h", "--chunk", "1m"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        child.try_wait().unwrap().is_none(),
        "the rebuild was still running when killed"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let after: Vec<String> = dump().into_iter().filter(|k| !k.contains(":rb")).collect();
    assert_eq!(
        before, after,
        "a killed rebuild left the live keys as they were"
    );

    // Its lease holds the next run off until it lapses, then the rerun corrects everything.
    // The kill came 1.5 s after the start, well inside the 30 s lease.
    let (code, _, err) = aggregates_cli(&config, &["rebuild", "--since", "2h"]);
    assert_eq!(code, 1, "refused while the killed run's lease lasts: {err}");
    assert!(err.contains("another rebuild is running"), "{err}");
    eventually(Duration::from_secs(60), "the rerun completes", || async {
        aggregates_cli(&config, &["rebuild", "--since", "2h"]).0 == 0
    })
    .await;
    assert_counted(&base, events.len() as u64).await;
    assert_verified(&config);
    let left = redis_cli(
        &config.redis.url,
        &[
            "--scan",
            "--pattern",
            &format!("{}:rb*", config.redis.key_prefix),
        ],
    );
    assert!(
        left.trim().is_empty(),
        "nothing of the rebuild is left: {left}"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_verify_reports_differences_with_exit_code_3() {
    let (app, config, _, _) = counted_app("verify", 300).await;
    assert_verified(&config);
    damage(&config);
    let (code, out, err) = aggregates_cli(&config, &["verify", "--since", "2h"]);
    assert_eq!(code, 3, "differences found:\n{out}\n{err}");
    assert!(out.contains("DIFFERENCES"), "{out}");
    assert!(out.contains("AGGREGATES") && out.contains("STORE"), "{out}");
    let (code, json, _) = aggregates_cli(&config, &["verify", "--since", "2h", "--json"]);
    assert_eq!(code, 3);
    let report: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(report["agrees"], false);
    assert!(!report["counts"].as_array().unwrap().is_empty());
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_sqlite_store_rebuilds_and_verifies_through_redis() {
    // Embedded broker and embedded SQLite store (the `logpipe run` defaults), Redis aggregates.
    let mut config = crate::support::test_config("");
    config.redis.url = crate::support::required_env("LOGPIPE_TEST_REDIS_URL");
    let run = unique("sqlite");
    let app = start(config.clone(), Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events = generate(1000, 4, &run);
    post_around(&base, &events, Duration::from_millis(100), || {
        lose_everything(&config)
    })
    .await;
    wait_for_rows(&run, &base, events.len()).await;
    wait_rebuilt(&base).await;
    assert_counted(&base, events.len() as u64).await;

    // The embedded store lives inside the process: verify and rebuild run in it, as the
    // reconciler does, with the library calls behind the commands.
    let stores = app.stores.clone().unwrap();
    let in_process = |since: i64| {
        let limits = Limits {
            minute_ttl: config.redis.minute_ttl,
            retention_cutoff: stores.store.retention_cutoff(Utc::now()),
        };
        Window::new(
            Utc::now(),
            Some(Utc::now() - chrono::Duration::hours(since)),
            None,
            limits,
        )
        .unwrap()
    };
    let quiet = LogLines::default();
    let check =
        |report: &VerifyReport| report.agrees() && report.store_events == events.len() as u64;
    let report = verify(
        &stores.store,
        &stores.aggregates,
        in_process(2),
        None,
        Duration::from_secs(3600),
        &quiet,
    )
    .await
    .unwrap();
    assert!(check(&report), "{report:?}");
    damage(&config);
    let report = verify(
        &stores.store,
        &stores.aggregates,
        in_process(2),
        None,
        Duration::from_secs(3600),
        &quiet,
    )
    .await
    .unwrap();
    assert!(!report.agrees(), "the damage is seen");
    let plan = RebuildPlan {
        window: in_process(2),
        service: None,
        chunk: Duration::from_secs(600),
        totals: TotalsChoice::Adjust,
        holder: "test".into(),
    };
    let rebuilt = rebuild(&stores.store, &stores.aggregates, &plan, &quiet)
        .await
        .unwrap();
    assert!(
        rebuilt.cells_changed > 0 && rebuilt.rows == events.len() as u64,
        "{rebuilt:?}"
    );
    let report = verify(
        &stores.store,
        &stores.aggregates,
        in_process(2),
        None,
        Duration::from_secs(3600),
        &quiet,
    )
    .await
    .unwrap();
    assert!(check(&report), "{report:?}");
    assert_counted(&base, events.len() as u64).await;
    app.shutdown().await.unwrap();
}

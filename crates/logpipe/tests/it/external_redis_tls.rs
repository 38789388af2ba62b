//! The aggregates in a Redis that takes TLS only and demands a password (the "optional" server
//! `scripts/lib/redis_tls.sh` starts): a whole app on the embedded broker, configured with a
//! `rediss://` URL of the ACL user and `redis.tls_ca_file`, counts every posted event in
//! `/api/v1/stats`; with the wrong CA it refuses to start, saying which key to fix.

use std::time::Duration;

use logpipe::app::{App, Roles};
use logpipe::config::Config;

use crate::consumer_flow::{generate, post_all, stats};
use crate::support::{eventually, required_env, start, test_config};

/// The embedded test config with its aggregates in the TLS Redis, trusting `ca` (a file of the
/// certificate directory) and logging in as the ACL user.
fn tls_config(ca: &str) -> Config {
    let mut config = test_config("");
    config.redis.url = required_env("LOGPIPE_TEST_REDIS_TLS_URL");
    let certs = std::path::PathBuf::from(required_env("LOGPIPE_TEST_REDIS_TLS_CERTS"));
    config.redis.tls_ca_file = certs.join(ca).display().to_string();
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_counted_in_a_tls_redis_with_a_password() {
    let config = tls_config("ca.crt");
    assert!(
        config.redis.url.starts_with("rediss://"),
        "{}",
        config.redis.url
    );
    let app = start(config, Roles::All).await;
    let base = format!("http://{}", app.gateway_addr.unwrap());
    let events = generate(60, 3, &crate::support::unique("tls"));
    assert_eq!(post_all(&base, &events, 20).await, 60);
    // The key prefix is this test's own, so the totals are this test's events only.
    eventually(
        Duration::from_secs(30),
        "all 60 events counted in /api/v1/stats",
        || async { stats(&base).await["total"].as_u64() == Some(60) },
    )
    .await;
    let body = stats(&base).await;
    assert_eq!(body["all_time"]["total"].as_u64(), Some(60), "{body}");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_ca_stops_the_start_naming_the_key() {
    let config = tls_config("other-ca.crt");
    let password = required_env("LOGPIPE_TEST_REDIS_TLS_PASSWORD");
    let started = std::time::Instant::now();
    let Err(err) = App::start(config, Roles::All).await else {
        panic!("the app started although Redis's certificate is not signed by other-ca.crt");
    };
    let text = format!("{err:#}");
    assert!(text.contains("certificate verification failed"), "{text}");
    assert!(text.contains("redis.tls_ca_file"), "{text}");
    assert!(
        !text.contains(&password),
        "the error shows the password: {text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}: retried as if it were an outage",
        started.elapsed()
    );
}

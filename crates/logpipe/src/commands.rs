//! Operator tools: `logpipe topics ensure|describe|produce`, `logpipe migrate` and
//! `logpipe config check`. They print tables people can read (or JSON with `--json`) and exit
//! non-zero with a message saying what to do.

use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, CellAlignment, Table};

use crate::config::{redact, variables, Config};
use crate::kafka::admin::{
    describe_topics, ensure_topics, EnsureOutcome, PartitionInfo, TopicInfo, TopicSpec, TopicStatus,
};
use crate::kafka::client_config;

fn require_brokers(config: &Config) -> anyhow::Result<String> {
    config.kafka.cluster_brokers(
        "topics commands need a cluster",
        " (the embedded broker lives inside `logpipe run` and creates its topics itself)",
    )
}

/// `logpipe topics ensure`: creates what is missing, then one row per topic with what it has;
/// where an existing topic differs from the configuration, a second table says what to do.
pub async fn topics_ensure(config: &Config, json: bool) -> anyhow::Result<()> {
    let brokers = require_brokers(config)?;
    let client = client_config(&config.kafka, &brokers, "admin", &Default::default());
    let specs = TopicSpec::from_config(&config.kafka);
    let outcomes = ensure_topics(&client, &specs, config.kafka.request_timeout).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&outcomes)?);
        return Ok(());
    }
    print!("{}", ensure_report(&outcomes));
    Ok(())
}

/// The tables `topics ensure` prints.
fn ensure_report(outcomes: &[EnsureOutcome]) -> String {
    let mut table = new_table(&[
        "TOPIC",
        "STATUS",
        "PARTITIONS",
        "REPLICATION FACTOR",
        "MIN.INSYNC.REPLICAS",
    ]);
    let mut differences = new_table(&["TOPIC", "SETTING", "ACTUAL", "CONFIGURED", "WHAT TO DO"]);
    // Fits the terminal when there is one (advice wraps); piped output keeps one line each.
    differences.set_content_arrangement(comfy_table::ContentArrangement::Dynamic);
    for o in outcomes {
        // A value with its configured one beside it when they differ.
        let shown = |setting: &str, actual: String| match o
            .differences
            .iter()
            .find(|d| d.setting == setting)
        {
            Some(d) => right(format!("{actual} (configured {})", d.configured)),
            None => right(actual),
        };
        let status = match (o.status, o.differences.is_empty()) {
            (TopicStatus::Created, _) => "created",
            (TopicStatus::Exists, true) => "exists",
            (TopicStatus::Exists, false) => "exists, DIFFERS",
        };
        table.add_row(vec![
            Cell::new(&o.topic),
            Cell::new(status),
            shown("partitions", o.partitions.to_string()),
            shown("replication.factor", o.replication_factor.to_string()),
            shown(
                "min.insync.replicas",
                o.min_insync_replicas
                    .map_or_else(|| "unknown".to_string(), |n| n.to_string()),
            ),
        ]);
        for d in &o.differences {
            differences.add_row(vec![
                Cell::new(&o.topic),
                Cell::new(d.setting),
                right(d.actual),
                right(d.configured),
                Cell::new(&d.advice),
            ]);
        }
    }
    let mut report = format!("{table}\n");
    if !differences.is_empty() {
        report.push_str(&format!(
            "\nExisting topics differ from the configuration. logpipe never alters an existing topic; \
             change the topic with your cluster's tools, or the configuration to match it:\n{differences}\n"
        ));
    }
    report
}

/// `logpipe topics describe`.
pub async fn topics_describe(
    config: &Config,
    topics: Vec<String>,
    json: bool,
) -> anyhow::Result<()> {
    let brokers = require_brokers(config)?;
    let client = client_config(&config.kafka, &brokers, "admin", &Default::default());
    let names = if topics.is_empty() {
        vec![config.kafka.topic.clone(), config.kafka.dlq_topic.clone()]
    } else {
        topics
    };
    let infos = describe_topics(&client, &names, config.kafka.request_timeout).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&infos)?);
        return Ok(());
    }
    for info in &infos {
        print_topic(info);
    }
    Ok(())
}

fn print_topic(info: &TopicInfo) {
    let messages: i64 = info
        .partitions
        .iter()
        .map(|p| p.high_watermark - p.low_watermark)
        .sum();
    let min_insync = info
        .min_insync_replicas
        .map_or_else(|| "unknown".to_string(), |n| n.to_string());
    println!(
        "Topic: {}   partitions: {}   replication factor: {}   min.insync.replicas: {}   messages: {}",
        info.name,
        info.partitions.len(),
        info.replication_factor,
        min_insync,
        messages
    );
    let mut table = new_table(&[
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "STATE",
        "LOW-OFFSET",
        "HIGH-OFFSET",
        "MESSAGES",
    ]);
    let list = |ids: &[i32]| ids.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
    for p in &info.partitions {
        table.add_row(vec![
            right(p.partition),
            right(if p.leader < 0 {
                "none".to_string()
            } else {
                p.leader.to_string()
            }),
            Cell::new(list(&p.replicas)),
            Cell::new(list(&p.isr)),
            Cell::new(partition_state(p, info.min_insync_replicas)),
            right(p.low_watermark),
            right(p.high_watermark),
            right(p.high_watermark - p.low_watermark),
        ]);
    }
    println!("{table}");
    match &info.configs {
        Ok(configs) if configs.is_empty() => println!("Configs: all broker defaults\n"),
        Ok(configs) => {
            let mut table = new_table(&["CONFIG", "VALUE", "SOURCE"]);
            for c in configs {
                let shown = match c.name.as_str() {
                    "retention.ms" => format!("{} ({})", c.value, human_ms(&c.value)),
                    _ => c.value.clone(),
                };
                table.add_row(vec![c.name.clone(), shown, c.source.clone()]);
            }
            println!("{table}\n");
        }
        Err(why) => println!("Configs: {why}\n"),
    }
}

/// What a partition's replicas mean for writes: `ok`, `under-replicated` (ISR short of the
/// replicas; writes still succeed), `UNDER MIN ISR` (acks=all writes fail) or `OFFLINE`.
fn partition_state(p: &PartitionInfo, min_insync: Option<i32>) -> &'static str {
    if p.leader < 0 {
        "OFFLINE"
    } else if min_insync.is_some_and(|min| (p.isr.len() as i32) < min) {
        "UNDER MIN ISR"
    } else if p.isr.len() < p.replicas.len() {
        "under-replicated"
    } else {
        "ok"
    }
}

/// `logpipe config check`.
pub fn config_check(config: &Config, show_env: bool, json: bool) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&redact::redacted(config))?
        );
        return Ok(());
    }
    let shown = toml::to_string_pretty(&redact::redacted(config))?;
    println!("# Effective configuration (defaults < file < LOGPIPE_* environment < flags); secrets redacted\n");
    println!("{shown}");
    let part = |embedded: bool, real: &str, fallback: &str| {
        if embedded {
            fallback.to_string()
        } else {
            real.to_string()
        }
    };
    println!("# Summary");
    println!(
        "#   Kafka:      {}",
        part(
            config.kafka.is_embedded(),
            &config.kafka.brokers,
            "EMBEDDED in-process broker (keeps nothing across restarts)"
        )
    );
    println!(
        "#   PostgreSQL: {}",
        part(
            config.postgres.url.is_empty(),
            &redact::redact_url(&config.postgres.url),
            "embedded SQLite"
        )
    );
    println!(
        "#   Redis:      {}",
        part(
            config.redis.url.is_empty(),
            &redact::redact_url(&config.redis.url),
            "in-process aggregates"
        )
    );
    if show_env {
        let mut table = new_table(&["CONFIG KEY", "ENVIRONMENT VARIABLE"]);
        for (key, var) in variables() {
            table.add_row(vec![key, var]);
        }
        for section in ["kafka", "producer", "consumer"] {
            table.add_row(vec![
                format!("{section}.properties.\"a.b.c\""),
                format!("LOGPIPE_{}_PROPERTY_A_B_C", section.to_ascii_uppercase()),
            ]);
            table.add_row(vec![
                format!("{section}.property_files.\"a.b.c\""),
                format!(
                    "LOGPIPE_{}_PROPERTY_FILE_A_B_C",
                    section.to_ascii_uppercase()
                ),
            ]);
        }
        println!("\n{table}");
    }
    println!("\nconfig OK");
    Ok(())
}

/// `604800000` → `7days`; `-1` → `forever`.
fn human_ms(ms: &str) -> String {
    match ms.parse::<i64>() {
        Ok(ms) if ms >= 0 => {
            humantime::format_duration(std::time::Duration::from_millis(ms as u64)).to_string()
        }
        Ok(_) => "forever".into(),
        Err(_) => ms.into(),
    }
}

/// A table in the house style (condensed UTF-8 borders, a header row).
pub(crate) fn new_table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_header(header.to_vec());
    table
}

/// A right-aligned cell (numbers).
pub(crate) fn right(value: impl ToString) -> Cell {
    Cell::new(value.to_string()).set_alignment(CellAlignment::Right)
}

/// `logpipe migrate`.
pub async fn migrate(config: &Config) -> anyhow::Result<()> {
    // One connection is plenty for a one-off command.
    let options = logpipe_store::StoreOptions {
        pool_size: 1,
        ..config.postgres.store_options()
    };
    if config.postgres.url.is_empty() {
        anyhow::bail!("no PostgreSQL configured: set --postgres-url, LOGPIPE_POSTGRES_URL or postgres.url (the embedded SQLite store is created by the consumer itself)");
    }
    let store = logpipe_store::LogStore::open(config.postgres.connect_url().expose(), &options)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL: {e}"))?;
    store
        .migrate()
        .await
        .map_err(|e| anyhow::anyhow!("applying the schema: {e}"))?;
    let done = store
        .maintain(chrono::Utc::now())
        .await
        .map_err(|e| anyhow::anyhow!("maintaining partitions: {e}"))?;
    let mut table = new_table(&["STEP", "RESULT"]);
    table.add_row(vec![
        "schema".to_string(),
        format!("applied to `{}`", config.postgres.schema),
    ]);
    table.add_row(vec![
        "partitions created".to_string(),
        list_or_none(&done.created),
    ]);
    table.add_row(vec![
        "partitions dropped".to_string(),
        list_or_none(&done.dropped),
    ]);
    table.add_row(vec![
        "rows".to_string(),
        store
            .count()
            .await
            .map(|n| n.to_string())
            .unwrap_or_else(|e| e.to_string()),
    ]);
    println!("{table}");
    Ok(())
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}

/// `logpipe topics produce`: raw records straight to a topic (acks=all), printing where each
/// landed. Values are taken as given, so records the gateway would refuse can be injected.
pub async fn topics_produce(
    config: &Config,
    topic: Option<String>,
    key: Option<String>,
    value: Option<String>,
) -> anyhow::Result<()> {
    use anyhow::Context;
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use std::io::BufRead;
    let brokers = require_brokers(config)?;
    let topic = topic.unwrap_or_else(|| config.kafka.topic.clone());
    let mut client = client_config(
        &config.kafka,
        &brokers,
        "produce",
        &config.producer.properties,
    );
    client.set("acks", "all");
    let producer: FutureProducer = client.create().context("creating the Kafka producer")?;
    let values: Vec<String> = match value {
        Some(v) => vec![v],
        None => std::io::stdin()
            .lock()
            .lines()
            .collect::<Result<_, _>>()
            .context("reading records from stdin")?,
    };
    for v in &values {
        let mut record: FutureRecord<'_, str, str> = FutureRecord::to(&topic).payload(v);
        if let Some(k) = &key {
            record = record.key(k);
        }
        let delivered = producer
            .send(record, config.producer.delivery_timeout)
            .await
            .map_err(|(e, _)| anyhow::anyhow!("producing to `{topic}` failed: {e}; check that the topic exists (`logpipe topics ensure`) and the brokers are reachable"))?;
        println!(
            "{topic}\tpartition {}\toffset {}",
            delivered.partition, delivered.offset
        );
    }
    Ok(())
}

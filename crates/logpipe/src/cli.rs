//! Command-line interface: the roles (`gateway`, `producer`, `run`) and the operator tools
//! (`topics`, `config`, `dlq`, `lag`). Global flags override the config file and environment;
//! each maps to a dotted config key (see [`GlobalArgs::overrides`]).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "logpipe",
    version,
    about = "Kafka log pipeline: HTTP ingest gateway, producer, consumer group with durable stores",
    long_about = "logpipe takes application logs over HTTP, writes them to Kafka, and processes them in a consumer group.\n\n\
                  With no Kafka configured it runs on an embedded in-process broker, so `logpipe run` works on a bare machine.",
    after_help = "Roles: gateway, producer, consumer, run.   Tools: demo, migrate, loadgen, topics, config, dlq, lag.\n\
                  Configuration: --config FILE, then LOGPIPE_* environment variables, then flags (see `logpipe config check --env`)."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML config file (see config/logpipe.example.toml).
    #[arg(long, global = true, env = "LOGPIPE_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Kafka bootstrap servers (host:port,...). Empty or unset: embedded broker. [config: kafka.brokers]
    #[arg(long, global = true, value_name = "HOSTS")]
    pub kafka_brokers: Option<String>,
    /// PostgreSQL URL. Unset: embedded SQLite. [config: postgres.url]
    #[arg(long, global = true, value_name = "URL")]
    pub postgres_url: Option<String>,
    /// Redis URL. Unset: in-process aggregates. [config: redis.url]
    #[arg(long, global = true, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Log format. [config: log.format]
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    /// Log filter, e.g. `info` or `logpipe=debug`. [config: log.level]
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// Set any config key: `--set producer.linger=20ms` (repeatable). librdkafka property names
    /// contain dots: quote them, as in TOML: `--set 'consumer.properties."fetch.wait.max.ms"=10'`.
    #[arg(long = "set", global = true, value_name = "KEY=VALUE", value_parser = parse_key_value)]
    pub set: Vec<(String, String)>,
}

fn parse_key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{raw}`"))
}

impl GlobalArgs {
    /// Flag values as dotted config keys, in precedence order (later wins).
    pub fn overrides(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |key: &str, value: Option<String>| {
            if let Some(value) = value {
                out.push((key.to_string(), value));
            }
        };
        push("kafka.brokers", self.kafka_brokers.clone());
        push("postgres.url", self.postgres_url.clone());
        push("redis.url", self.redis_url.clone());
        push(
            "log.format",
            self.log_format.map(|f| match f {
                LogFormat::Text => "text".into(),
                LogFormat::Json => "json".into(),
            }),
        );
        push("log.level", self.log_level.clone());
        out.extend(self.set.iter().cloned());
        out
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// [role] HTTP ingest gateway (:8080): validates events and forwards them to the producer service.
    #[command(long_about = "Runs the HTTP ingest gateway (default :8080).\n\n\
        POST /api/v1/logs takes one JSON event; POST /api/v1/logs/batch takes a JSON array or NDJSON (gzip accepted).\n\
        A 2xx means Kafka acknowledged the events. In this split mode the gateway forwards to the producer service at\n\
        gateway.producer_url; `logpipe run` calls the producer in-process instead.")]
    Gateway {
        /// Listen address. [config: gateway.listen]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Producer service URL. [config: gateway.producer_url]
        #[arg(long, value_name = "URL")]
        producer_url: Option<String>,
    },
    /// [role] Producer service (:8081): the gateway's upstream; writes to Kafka with acks=all.
    #[command(
        long_about = "Runs the producer service (default :8081): an internal HTTP endpoint the gateway calls in split mode.\n\n\
        Writes events to Kafka with an idempotent producer (acks=all, compression, batching), creates the topics when\n\
        absent, and answers only after Kafka acknowledged every record. With no brokers configured it starts the embedded broker."
    )]
    Producer {
        /// Listen address. [config: producer.listen]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// [role] Consumer group member(s) (:8082): Kafka → decode → enrich → PostgreSQL + Redis, commits after the writes.
    #[command(
        long_about = "Runs consumer.concurrency members of the consumer group (default group log-processor-group) on the\n\
        configured topics. Each batch (consumer.batch_size records or consumer.batch_linger) is decoded and enriched on\n\
        consumer.workers lanes (one key, one lane, in order), written to the log store in one COPY, counted once in the\n\
        aggregates, and only then are its offsets committed. Health and metrics on consumer.listen (:8082).\n\
        Needs a real Kafka cluster (--kafka-brokers); PostgreSQL and Redis via --postgres-url and --redis-url."
    )]
    Consumer {
        /// Health and metrics listen address. [config: consumer.listen]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// [role] All roles in one process (gateway, producer, consumer), on embedded Kafka and stores if none are configured.
    #[command(
        long_about = "Runs every role in one process: the gateway on gateway.listen (with the query API), calling the\n\
        producer in-process, and the consumer group writing to the log store and the aggregates.\n\n\
        With nothing configured it starts an embedded in-process Kafka broker (librdkafka's mock cluster), an in-memory \
        SQLite store and in-process aggregates; none of them keeps anything across restarts. Try:\n\n  logpipe run\n  curl -s localhost:8080/api/v1/logs -H 'content-type: application/json' \\\n       -d '{\"service\":\"checkout\",\"level\":\"error\",\"message\":\"payment failed\"}'"
    )]
    Run {
        /// Gateway listen address. [config: gateway.listen]
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
    },
    /// [tool] The whole pipeline on embedded defaults with generated traffic, a live progress line and a summary.
    #[command(
        long_about = "Starts every role in one process (embedded Kafka, SQLite and in-process aggregates unless configured),\n\
        sends realistic generated traffic through the gateway with a live progress line, prints a summary (accepted,\n\
        stored, aggregated, throughput, end-to-end latency p50/p95/p99), and keeps serving the API until Ctrl-C or --duration."
    )]
    Demo(crate::demo::DemoArgs),
    /// [tool] Apply the log store schema (idempotent), create partitions ahead and drop expired ones.
    Migrate,
    /// [tool] Send realistic log traffic to a gateway at a fixed rate and report throughput and latency.
    #[command(
        long_about = "Sends generated log events to a gateway's batch route at a fixed rate (open loop) for a\n\
        fixed time, with a progress bar, then prints accepted and rejected counts, throughput, and request latency\n\
        percentiles measured from each request's scheduled start. Example:\n\n  \
        logpipe loadgen --target http://127.0.0.1:8080 --rate 20000 --duration 30s --batch 500"
    )]
    Loadgen(crate::loadgen::LoadgenArgs),
    /// [tool] Create or describe logpipe's topics.
    #[command(subcommand)]
    Topics(TopicsCommand),
    /// [tool] Check the configuration and print it with secrets redacted.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// [tool] Inspect and replay the dead-letter topic: `dlq stats`, `dlq show`, `dlq replay`.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// [tool] Consumer group lag per partition (offsets, lag in records and seconds, status), read live from the brokers.
    #[command(
        long_about = "Prints the consumer group's lag per partition like `kafka-consumer-groups --describe`: GROUP, TOPIC,\n\
        PARTITION, CURRENT-OFFSET, LOG-END-OFFSET, LAG, CONSUMER-ID, HOST, CLIENT-ID, plus LAG-TIME (age of the oldest\n\
        unconsumed record) and a Burrow-style STATUS evaluated over --samples samples taken --interval apart.\n\
        Everything is read live from the brokers (OffsetFetch, ListOffsets, DescribeGroups), so nothing is stale after a\n\
        rebalance; the reader never joins the group and never commits.\n\n\
        Statuses (first rule that holds): REWIND the committed offset went backwards; OK the lag was 0 in some sample;\n\
        STOP the offset did not move, lag > 0 and no member owns the partition; STALL the offset did not move, lag > 0\n\
        and a member owns it (or members are unknown); WARN the offset moves but the lag grew at every sample; else OK.\n\
        Exit status: 0; 3 with --fail-on STATUS when a partition is at or worse than STATUS; 1 on errors.\n\n  \
        logpipe --kafka-brokers kafka:9092 lag\n  \
        logpipe lag --group log-processor-group --topic application-logs --json\n  \
        logpipe lag --watch --interval 5s\n  \
        logpipe lag --samples 3 --interval 1s --fail-on STALL"
    )]
    Lag(crate::lag::LagArgs),
    /// [tool] Compare the aggregates with the log store (`verify`), or recount them from it (`rebuild`).
    #[command(subcommand)]
    Aggregates(crate::aggregates::AggregatesCommand),
}

impl Command {
    /// The tools that talk to a Kafka cluster: they check the login first, so refused
    /// credentials fail at once and say so.
    pub fn uses_kafka_cluster(&self) -> bool {
        matches!(self, Command::Topics(_) | Command::Dlq(_) | Command::Lag(_))
    }
}

#[derive(Debug, Subcommand)]
pub enum TopicsCommand {
    /// Create `kafka.topic`, `kafka.dlq_topic` and `kafka.parked_topic` when absent; say where an
    /// existing one differs from the configuration (partitions, replication factor, min.insync.replicas).
    Ensure {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Write raw records straight to a topic, bypassing the gateway's validation (one record per
    /// stdin line, or --value): for injecting a test record, such as a poison pill, like `kcat -P`.
    Produce {
        /// Topic to write to (default: kafka.topic).
        #[arg(long)]
        topic: Option<String>,
        /// Record key (default: none).
        #[arg(long)]
        key: Option<String>,
        /// One record with this value, instead of reading lines from stdin.
        #[arg(long)]
        value: Option<String>,
    },
    /// Print partitions (leader, replicas, ISR, offsets) and configs of logpipe's topics as tables.
    Describe {
        /// Topics to describe (default: kafka.topic and kafka.dlq_topic).
        topics: Vec<String>,
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration (file, environment, flags) and print the effective result, secrets redacted.
    Check {
        /// Also list every config key with its environment variable.
        #[arg(long)]
        env: bool,
        /// Print the effective configuration as JSON (secrets redacted), for scripts.
        #[arg(long, conflicts_with = "env")]
        json: bool,
    },
}

/// `logpipe dlq ...`: the dead-letter topic (`kafka.dlq_topic`). All three read every partition
/// up to its end as of the start of the command, and need a Kafka cluster (`--kafka-brokers`).
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the dead-letter records by class, error type and original topic.
    #[command(
        long_about = "Reads the whole dead-letter topic (kafka.dlq_topic, every partition, up to its end as of now) and\n\
        prints counts: by class (poison, exhausted) and by error type, each with the oldest and newest last-failure\n\
        time; by original topic; and the total. Records whose logpipe-dlq-* headers do not parse are counted as\n\
        unreadable, grouped by reason with the partition/offset of the first one. Reads only: commits nothing.\n\n  \
        logpipe --kafka-brokers kafka:9092 dlq stats\n  logpipe --kafka-brokers kafka:9092 dlq stats --json"
    )]
    Stats {
        /// Print JSON instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// List dead-letter records (filtered) with their origin, failure and a value preview.
    #[command(
        long_about = "Reads the whole dead-letter topic and lists the records matching the filters: DLQ partition/offset,\n\
        original topic/partition/offset, class, error type, attempts, replay count, last failure, the error message\n\
        and the value (both truncated). Filters combine: --class, --type (a trailing * matches a prefix), --since\n\
        and --until (on the last failure; RFC 3339 or a duration ago such as 1h). --limit keeps the most recent\n\
        matching records (default 50). --json prints every field, key and value as text when UTF-8, else as\n\
        key_base64/value_base64. Reads only: commits nothing.\n\n  \
        logpipe dlq show --class exhausted --type 'step:*' --since 2h --limit 20"
    )]
    Show(crate::dlq::tools::ShowArgs),
    /// Republish dead-letter records to their original topics (or park those replayed too often).
    #[command(
        long_about = "Reviews the dead-letter topic under consumer group dlq.replay_group (default logpipe-dlq-replay):\n\
        from the group's committed offsets (or the beginning, or everywhere with --from-beginning) up to the end as\n\
        of the start. Each record matching the filters is republished to its original topic with its key and value\n\
        bytes unchanged, its original headers (logpipe-ingest-ms, logpipe-request-id) and logpipe-replay-count\n\
        incremented; the logpipe-dlq-* headers are not carried. A record already replayed dlq.max_replays times (3)\n\
        goes to kafka.parked_topic instead, with all its DLQ headers. The producer is idempotent with acks=all, and\n\
        the group's offsets move only after Kafka acknowledged the records before them.\n\n\
        Records that do not match the filters are reviewed too: the group moves past them, so a later run without\n\
        the filters does not see them; --from-beginning reviews the whole topic again. --dry-run shows what would be\n\
        replayed or parked and changes nothing. --rate N paces publishing to N records/s.\n\n  \
        logpipe dlq replay --class exhausted --type store_rejected --dry-run\n  \
        logpipe dlq replay --class exhausted --type store_rejected --rate 200"
    )]
    Replay(crate::dlq::tools::ReplayArgs),
}

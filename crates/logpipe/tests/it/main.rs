//! Component and integration tests: one test binary (one link of librdkafka) with a module per
//! area. Component tests run against the in-process embedded broker; `external_*` tests need the
//! services `scripts/test.sh` starts (Apache Kafka, PostgreSQL, Redis) and fail, saying what is missing,
//! when their environment variables are absent.

mod support;

mod abuse_body;
mod abuse_http;
mod abuse_producer;
mod abuse_query;
mod cli;
mod clients;
mod consumer_embedded;
mod consumer_flow;
mod dashboard;
mod deploy_files;
mod deploy_secrets;
mod dlq_tools;
mod external_aggregates;
mod external_kafka;
mod external_pipeline;
mod external_redis_tls;
mod failures;
mod faults;
mod foreign_json;
mod foreign_otlp;
mod foreign_records;
mod gateway_router;
mod ingest_elastic;
mod ingest_loki;
mod ingest_otlp;
mod ingest_otlp_router;
mod kafka_provisioning;
mod kafka_sasl;
mod kafka_tools;
mod lag;
mod managed_examples;
mod observability;
mod otel_collector;
mod pipeline_embedded;
mod postgres_tls;
mod query_burst;
mod scripts;
mod secrets;
mod shutdown_outage;
mod topics_cluster;

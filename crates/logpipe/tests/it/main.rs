//! Component and integration tests: one test binary (one link of librdkafka) with a module per
//! area. Component tests run against the in-process embedded broker; `external_*` tests need the
//! services `scripts/test.sh` starts (Tansu, PostgreSQL, Redis) and fail, saying what is missing,
//! when their environment variables are absent.

mod support;

mod cli;
mod consumer_embedded;
mod consumer_flow;
mod external_kafka;
mod external_pipeline;
mod gateway_router;
mod pipeline_embedded;
mod shutdown_outage;

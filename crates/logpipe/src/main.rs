//! The `logpipe` binary: parses the command line, loads the configuration, and runs a role or a tool.

use std::process::ExitCode;

use clap::Parser;
use logpipe::app::{App, Roles};
use logpipe::cli::{Cli, Command, ConfigCommand, DlqCommand, TopicsCommand};
use logpipe::config::{Config, Sources};
use logpipe::{commands, telemetry};

// The allocator is glibc's. mimalloc cut the consumer's instructions per event by 12 % but held
// 2-4x the memory at a steady 30,000 events/s (consumer peak RSS 176-203 MiB against 48-77 MiB),
// for no drain rate measurable on 2 cores: docs/performance.md, "Allocator and memory".

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut overrides = cli.global.overrides();
    // Each role's `--listen` (and the gateway's `--producer-url`) are flags over config keys.
    let listen = match &cli.command {
        Command::Gateway { listen, .. } | Command::Run { listen } => {
            listen.map(|l| ("gateway.listen", l))
        }
        Command::Demo(args) => args.listen.map(|l| ("gateway.listen", l)),
        Command::Producer { listen } => listen.map(|l| ("producer.listen", l)),
        Command::Consumer { listen } => listen.map(|l| ("consumer.listen", l)),
        _ => None,
    };
    if let Some((key, addr)) = listen {
        overrides.push((key.into(), addr.to_string()));
    }
    if let Command::Gateway {
        producer_url: Some(url),
        ..
    } = &cli.command
    {
        overrides.push(("gateway.producer_url".into(), url.clone()));
    }
    let config = match Config::load(&Sources::from_process_env(
        cli.global.config.clone(),
        overrides,
    )) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    telemetry::logging::init(config.log.format, &config.log.level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        // `logpipe lag --fail-on`: a status at or past the threshold, not a failure to read.
        // `logpipe aggregates verify`: differences found (the table says which), not a failure.
        Err(e)
            if e.is::<logpipe::lag::ThresholdReached>()
                || e.is::<logpipe::aggregates::DifferencesFound>() =>
        {
            eprintln!("{e}");
            ExitCode::from(3)
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: Command, config: Config) -> anyhow::Result<()> {
    if command.uses_kafka_cluster() {
        logpipe::kafka::login::require_login(&config.kafka).await?;
    }
    match command {
        Command::Gateway { .. } => serve(config, Roles::Gateway).await,
        Command::Producer { .. } => serve(config, Roles::Producer).await,
        Command::Run { .. } => serve(config, Roles::All).await,
        Command::Consumer { .. } => serve(config, Roles::Consumer).await,
        Command::Demo(args) => {
            let stop = tokio_util::sync::CancellationToken::new();
            let trigger = stop.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                trigger.cancel();
            });
            logpipe::demo::run(config, args, stop).await
        }
        Command::Migrate => commands::migrate(&config).await,
        Command::Topics(TopicsCommand::Ensure { json }) => {
            commands::topics_ensure(&config, json).await
        }
        Command::Topics(TopicsCommand::Produce { topic, key, value }) => {
            commands::topics_produce(&config, topic, key, value).await
        }
        Command::Topics(TopicsCommand::Describe { topics, json }) => {
            commands::topics_describe(&config, topics, json).await
        }
        Command::Config(ConfigCommand::Check { env, json }) => {
            commands::config_check(&config, env, json)
        }
        Command::Loadgen(args) => logpipe::loadgen::run(args).await.map(drop),
        Command::Dlq(DlqCommand::Stats { json }) => {
            logpipe::dlq::tools::run_stats(&config, json).await
        }
        Command::Dlq(DlqCommand::Show(args)) => logpipe::dlq::tools::run_show(&config, &args).await,
        Command::Dlq(DlqCommand::Replay(args)) => {
            // Ctrl-C or SIGTERM stops the replay after the records in flight: what is acknowledged
            // is committed, so the next run continues from there.
            let stop = tokio_util::sync::CancellationToken::new();
            let trigger = stop.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                trigger.cancel();
            });
            logpipe::dlq::tools::run_replay(&config, &args, stop).await
        }
        Command::Lag(args) => {
            // Ctrl-C ends `--watch` (and a sampling run) cleanly.
            let stop = tokio_util::sync::CancellationToken::new();
            let trigger = stop.clone();
            tokio::spawn(async move {
                shutdown_signal().await;
                trigger.cancel();
            });
            logpipe::lag::run(&config, &args, stop).await
        }
        Command::Aggregates(command) => logpipe::aggregates::run(&config, &command).await,
    }
}

/// Runs roles until SIGTERM or Ctrl-C, then shuts down gracefully.
async fn serve(config: Config, roles: Roles) -> anyhow::Result<()> {
    let app = App::start(config, roles).await?;
    let stop = app.stop_token();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        stop.cancel();
    });
    app.wait().await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

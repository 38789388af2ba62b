//! The `*_file` settings: secrets read from files at config load, as container platforms mount
//! them (Kubernetes Secret volumes, Docker secrets under /run/secrets). Each file fills the value
//! it stands for (`postgres.password_file` → `postgres.password`); the path stays in the config,
//! so `config check` shows where a secret came from while the secret itself prints as the mask.
//!
//! Setting a value and its file both is an error naming both: no precedence to guess. Errors
//! name the key, the path and the OS error, never the file's content.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, ensure};

use super::{Config, Secret};

/// Reads every `*_file` setting of `config` into the value it stands for.
pub(super) fn resolve(config: &mut Config) -> anyhow::Result<()> {
    single(
        &mut config.postgres.password,
        &config.postgres.password_file,
        "postgres.password",
    )?;
    single(
        &mut config.redis.password,
        &config.redis.password_file,
        "redis.password",
    )?;
    single(
        &mut config.producer.internal_token,
        &config.producer.internal_token_file,
        "producer.internal_token",
    )?;
    api_keys(config)?;
    properties(
        "kafka",
        &mut config.kafka.properties,
        &config.kafka.property_files,
    )?;
    properties(
        "producer",
        &mut config.producer.properties,
        &config.producer.property_files,
    )?;
    properties(
        "consumer",
        &mut config.consumer.properties,
        &config.consumer.property_files,
    )?;
    Ok(())
}

/// `key_file` into `key`.
fn single(value: &mut Secret, file: &Path, key: &str) -> anyhow::Result<()> {
    if file.as_os_str().is_empty() {
        return Ok(());
    }
    let file_key = format!("{key}_file");
    ensure!(value.is_empty(), both(key, &file_key));
    *value = Secret::from(read_value(file, &file_key)?);
    Ok(())
}

/// `gateway.api_keys_file`: one key per line; blank lines and `#` comments are skipped.
fn api_keys(config: &mut Config) -> anyhow::Result<()> {
    let gateway = &mut config.gateway;
    if gateway.api_keys_file.as_os_str().is_empty() {
        return Ok(());
    }
    ensure!(
        gateway.api_keys.is_empty(),
        both("gateway.api_keys", "gateway.api_keys_file")
    );
    let text = read(&gateway.api_keys_file, "gateway.api_keys_file")?;
    gateway.api_keys = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(Secret::from)
        .collect();
    // An empty file would silently open ingest to anyone: refuse it.
    ensure!(
        !gateway.api_keys.is_empty(),
        "config key `gateway.api_keys_file`: {} holds no key; put one API key per line, or unset \
         gateway.api_keys_file",
        gateway.api_keys_file.display()
    );
    Ok(())
}

/// `SECTION.property_files` into `SECTION.properties`.
fn properties(
    section: &str,
    properties: &mut BTreeMap<String, String>,
    files: &BTreeMap<String, PathBuf>,
) -> anyhow::Result<()> {
    for (name, path) in files {
        let file_key = format!("{section}.property_files.\"{name}\"");
        ensure!(
            !properties.contains_key(name),
            both(&format!("{section}.properties.\"{name}\""), &file_key)
        );
        properties.insert(name.clone(), read_value(path, &file_key)?);
    }
    Ok(())
}

/// A file holding one value: its content without the trailing line break editors and `echo`
/// add. Empty is an error: an unset secret would otherwise pass for a set one.
fn read_value(path: &Path, key: &str) -> anyhow::Result<String> {
    let text = read(path, key)?;
    let value = text.trim_end_matches(['\n', '\r']);
    if value.is_empty() {
        bail!(
            "config key `{key}`: {} is empty; write the secret into it, or unset {key}",
            path.display()
        );
    }
    Ok(value.to_string())
}

fn read(path: &Path, key: &str) -> anyhow::Result<String> {
    // The OS error only: io errors never carry the content.
    std::fs::read_to_string(path).map_err(|e| {
        anyhow!(
            "config key `{key}`: cannot read {}: {e}; check the path and that this user may read \
             the file (a mounted secret)",
            path.display()
        )
    })
}

fn both(value: &str, file: &str) -> String {
    format!(
        "config keys `{value}` and `{file}` are both set; set one: the value, or the file that \
         holds it"
    )
}

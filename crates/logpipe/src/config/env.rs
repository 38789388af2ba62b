//! Environment variables and flags over the config tree.
//!
//! Every leaf `section.key` of the defaults has the variable `LOGPIPE_SECTION_KEY`
//! (`kafka.brokers` → `LOGPIPE_KAFKA_BROKERS`), derived from the tree itself so the mapping can
//! never fall behind the structs. A value is read with the type of the default it replaces
//! (lists are comma-separated). librdkafka properties have their own family:
//! `LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD` → `kafka.properties."sasl.password"`.
//! An unknown `LOGPIPE_*` variable is an error (a typo would otherwise be silently ignored),
//! except `LOGPIPE_TEST_*` (test harness) and `LOGPIPE_CONFIG` (the file, read by the CLI).

use anyhow::{anyhow, bail, Context};
use toml::Value;

use super::ENV_PREFIX;

/// Variables under the prefix that are not config keys.
const NOT_KEYS: &[&str] = &["LOGPIPE_CONFIG"];
const PROPERTY_PREFIX: &str = "LOGPIPE_KAFKA_PROPERTY_";
/// Keys that take `"auto"` or a number ([`super::Replicas`]), so no single type fits them.
const REPLICA_KEYS: &[&str] = &["kafka.replication_factor", "kafka.min_insync_replicas"];

pub(super) fn apply(tree: &mut Value, env: &[(String, String)]) -> anyhow::Result<()> {
    let mut leaves = Vec::new();
    collect_leaves(tree, "", &mut leaves);
    let mut vars: Vec<&(String, String)> = env
        .iter()
        .filter(|(name, _)| name.starts_with(ENV_PREFIX))
        .collect();
    vars.sort(); // deterministic order, so errors are reproducible
    for (name, raw) in vars {
        if name.starts_with("LOGPIPE_TEST_") || NOT_KEYS.contains(&name.as_str()) {
            continue;
        }
        if let Some(prop) = name.strip_prefix(PROPERTY_PREFIX) {
            let prop = prop.to_ascii_lowercase().replace('_', ".");
            let props = table_at(tree, "kafka.properties")?;
            props.insert(prop, Value::String(raw.clone()));
            continue;
        }
        let Some(path) = leaves.iter().find(|path| env_name(path) == *name) else {
            bail!(
                "unknown environment variable `{name}`: no config key matches it (keys map as `kafka.brokers` → LOGPIPE_KAFKA_BROKERS; see config/logpipe.example.toml)"
            );
        };
        set_path(tree, path, raw).with_context(|| format!("environment variable `{name}`"))?;
    }
    Ok(())
}

/// The environment variable of a dotted key.
pub(crate) fn env_name(path: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        path.replace('.', "_").to_ascii_uppercase()
    )
}

/// Sets the leaf at `path` from a raw string, typed like the value it replaces.
pub(super) fn set_path(tree: &mut Value, path: &str, raw: &str) -> anyhow::Result<()> {
    let (parent, leaf) = match path.rsplit_once('.') {
        Some((parent, leaf)) => (table_at(tree, parent)?, leaf),
        None => (
            tree.as_table_mut()
                .ok_or_else(|| anyhow!("config root is not a table"))?,
            path,
        ),
    };
    let current = parent
        .get(leaf)
        .ok_or_else(|| anyhow!("unknown config key `{path}`"))?;
    let value = if REPLICA_KEYS.contains(&path) {
        // `"auto"` or a number, whichever the file or the default held before.
        let value = match raw.trim().parse::<i64>() {
            Ok(n) => Value::Integer(n),
            Err(_) => Value::String(raw.trim().to_string()),
        };
        <super::Replicas as serde::Deserialize>::deserialize(value.clone())
            .map_err(|e| anyhow!("config key `{path}`: {}", e.message()))?;
        value
    } else {
        typed_like(current, raw)
            .map_err(|expected| anyhow!("config key `{path}`: expected {expected}, got `{raw}`"))?
    };
    parent.insert(leaf.to_string(), value);
    Ok(())
}

fn table_at<'a>(tree: &'a mut Value, path: &str) -> anyhow::Result<&'a mut toml::Table> {
    let mut node = tree;
    for part in path.split('.') {
        node = node
            .as_table_mut()
            .and_then(|t| t.get_mut(part))
            .ok_or_else(|| anyhow!("unknown config key `{path}`"))?;
    }
    node.as_table_mut()
        .ok_or_else(|| anyhow!("config key `{path}` is not a table"))
}

fn typed_like(current: &Value, raw: &str) -> Result<Value, &'static str> {
    Ok(match current {
        Value::String(_) => Value::String(raw.to_string()),
        Value::Integer(_) => Value::Integer(raw.trim().parse().map_err(|_| "an integer")?),
        Value::Float(_) => Value::Float(raw.trim().parse().map_err(|_| "a number")?),
        Value::Boolean(_) => Value::Boolean(match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            _ => return Err("true or false"),
        }),
        Value::Array(_) => Value::Array(
            raw.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| Value::String(s.to_string()))
                .collect(),
        ),
        Value::Table(_) => return Err("a section (set its keys one by one)"),
        Value::Datetime(_) => Value::String(raw.to_string()),
    })
}

/// Dotted paths of every leaf, skipping free-form maps (they have their own variables).
fn collect_leaves(node: &Value, path: &str, out: &mut Vec<String>) {
    if let Value::Table(table) = node {
        if super::FREE_FORM_TABLES.contains(&path) {
            return;
        }
        for (key, child) in table {
            let child_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            if child.is_table() {
                collect_leaves(child, &child_path, out);
            } else {
                out.push(child_path);
            }
        }
    }
}

/// Every config key and its environment variable, for docs and `config check --env`.
pub fn variables() -> Vec<(String, String)> {
    let tree =
        Value::try_from(super::Config::default()).unwrap_or(Value::Table(Default::default()));
    let mut leaves = Vec::new();
    collect_leaves(&tree, "", &mut leaves);
    leaves
        .into_iter()
        .map(|path| {
            let name = env_name(&path);
            (path, name)
        })
        .collect()
}

//! Environment variables and flags over the config tree.
//!
//! Every leaf `section.key` of the defaults has the variable `LOGPIPE_SECTION_KEY`
//! (`kafka.brokers` → `LOGPIPE_KAFKA_BROKERS`), derived from the tree itself so the mapping can
//! never fall behind the structs. A value is read with the type of the default it replaces
//! (lists are comma-separated). librdkafka properties have their own families, one per table:
//! `LOGPIPE_KAFKA_PROPERTY_SASL_PASSWORD` → `kafka.properties."sasl.password"`, likewise
//! `LOGPIPE_PRODUCER_PROPERTY_*` and `LOGPIPE_CONSUMER_PROPERTY_*`; a property read from a file
//! likewise: `LOGPIPE_KAFKA_PROPERTY_FILE_SASL_PASSWORD` → `kafka.property_files."sasl.password"`.
//!
//! Flags (`--set`) name a key by its dotted path, read like a TOML dotted key: a segment in double
//! quotes is one key whatever it holds, so `consumer.properties."fetch.wait.max.ms"` reaches a
//! librdkafka property, whose names contain dots. Under a properties table the key may be new.
//! An unknown `LOGPIPE_*` variable is an error (a typo would otherwise be silently ignored),
//! except `LOGPIPE_TEST_*` (test harness) and `LOGPIPE_CONFIG` (the file, read by the CLI).

use anyhow::{anyhow, bail, Context};
use toml::Value;

use super::ENV_PREFIX;

/// Variables under the prefix that are not config keys.
const NOT_KEYS: &[&str] = &["LOGPIPE_CONFIG"];
/// The open maps of librdkafka properties, and the prefix of each one's variables. The
/// `property_files` prefixes come first: they extend the `properties` ones, and the first
/// match wins (no librdkafka property name starts with `file.`).
const PROPERTY_TABLES: &[(&str, &str)] = &[
    ("kafka.property_files", "LOGPIPE_KAFKA_PROPERTY_FILE_"),
    ("producer.property_files", "LOGPIPE_PRODUCER_PROPERTY_FILE_"),
    ("consumer.property_files", "LOGPIPE_CONSUMER_PROPERTY_FILE_"),
    ("kafka.properties", "LOGPIPE_KAFKA_PROPERTY_"),
    ("producer.properties", "LOGPIPE_PRODUCER_PROPERTY_"),
    ("consumer.properties", "LOGPIPE_CONSUMER_PROPERTY_"),
];
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
        if let Some((table, prop)) = PROPERTY_TABLES
            .iter()
            .find_map(|(table, prefix)| Some((*table, name.strip_prefix(prefix)?)))
        {
            let prop = prop.to_ascii_lowercase().replace('_', ".");
            let parents: Vec<String> = table.split('.').map(str::to_string).collect();
            let props = table_at(tree, &parents, table)?;
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

/// Sets the leaf at `path` from a raw string, typed like the value it replaces. Under a
/// properties table the value is a string and the key may be new (librdkafka checks both at
/// start, and `validate` refuses the properties logpipe owns); anywhere else the key must exist.
pub(super) fn set_path(tree: &mut Value, path: &str, raw: &str) -> anyhow::Result<()> {
    let segments = split_key(path)?;
    let (leaf, parents) = segments
        .split_last()
        .ok_or_else(|| anyhow!("empty config key"))?;
    // Canonical spelling for lookups (`kafka."brokers"` is `kafka.brokers`); table and field
    // names never contain dots, so joining is unambiguous above the leaf.
    let parent_key = parents.join(".");
    if PROPERTY_TABLES
        .iter()
        .any(|(table, _)| *table == parent_key)
    {
        table_at(tree, parents, path)?.insert(leaf.clone(), Value::String(raw.to_string()));
        return Ok(());
    }
    // `consumer.properties.fetch.wait.max.ms`: a property name split on its dots. Quotes are
    // required rather than guessed (the rest of the path as one name): one rule, the TOML one.
    if segments.len() > 3 {
        let table = segments[..2].join(".");
        if PROPERTY_TABLES.iter().any(|(t, _)| *t == table) {
            bail!(
                "unknown config key `{path}`: property names contain dots: quote them, e.g. {table}.\"{}\"=VALUE",
                segments[2..].join(".")
            );
        }
    }
    let key = segments.join(".");
    let parent = table_at(tree, parents, path)?;
    let current = parent
        .get(leaf)
        .ok_or_else(|| anyhow!("unknown config key `{path}`"))?;
    let value = if REPLICA_KEYS.contains(&key.as_str()) {
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
    parent.insert(leaf.clone(), value);
    Ok(())
}

/// Splits a dotted key into its segments as TOML reads a dotted key: `a.b."c.d"` is `a`, `b`,
/// `c.d`. A quoted segment runs to the next `"` (no escapes: no config key or librdkafka
/// property name holds a quote); a bare one may not be empty or contain a quote.
fn split_key(path: &str) -> anyhow::Result<Vec<String>> {
    let mut segments = Vec::new();
    let mut rest = path;
    loop {
        let (segment, after) = if let Some(quoted) = rest.strip_prefix('"') {
            let end = quoted
                .find('"')
                .ok_or_else(|| anyhow!("config key `{path}`: unterminated quote"))?;
            (&quoted[..end], &quoted[end + 1..])
        } else {
            let end = rest.find('.').unwrap_or(rest.len());
            let segment = &rest[..end];
            if segment.is_empty() || segment.contains('"') {
                bail!(
                    "config key `{path}`: expected names separated by dots, each bare or in double quotes"
                );
            }
            (segment, &rest[end..])
        };
        segments.push(segment.to_string());
        match after.strip_prefix('.') {
            Some(next) => rest = next,
            None if after.is_empty() => return Ok(segments),
            None => bail!("config key `{path}`: expected `.` after a quoted name"),
        }
    }
}

/// The table at `parents` (segments of `path`, which errors name).
fn table_at<'a>(
    tree: &'a mut Value,
    parents: &[String],
    path: &str,
) -> anyhow::Result<&'a mut toml::Table> {
    let mut node = tree;
    for part in parents {
        node = node
            .as_table_mut()
            .and_then(|t| t.get_mut(part))
            .ok_or_else(|| anyhow!("unknown config key `{path}`"))?;
    }
    node.as_table_mut()
        .ok_or_else(|| anyhow!("config key `{}` is not a table", parents.join(".")))
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

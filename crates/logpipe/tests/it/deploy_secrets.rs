//! The Kubernetes manifests' secrets as files: every `*_FILE` setting a container has (its own
//! or the ConfigMap's) names a file of the Secret `logpipe-secrets` where that container mounts
//! it, read-only, and the Secret (secret.example.yaml) has the key. For `logpipe config check`,
//! each such setting is pointed at a copy of the example Secret's value in a temporary directory,
//! so the check reads real files, as the pod would.

use std::collections::BTreeMap;
use std::path::Path;

use serde_yaml_ng::Value;

/// Whether a `LOGPIPE_*` variable names a file holding a secret.
pub fn is_secret_file_var(name: &str) -> bool {
    name.ends_with("_FILE") || name.contains("_PROPERTY_FILE_")
}

/// Checks the `*_FILE` variables of `env` against the mounts of `container` (in pod `spec`)
/// and `secret`, and replaces each path by a copy of the Secret's value under `dir`. Returns the
/// Secret keys the container reads.
pub fn materialise(
    what: &str,
    spec: &Value,
    container: &Value,
    secret: &Value,
    dir: &Path,
    env: &mut BTreeMap<String, String>,
) -> Vec<String> {
    let secret_name = secret["metadata"]["name"].as_str().unwrap();
    let data = secret["stringData"].as_mapping().expect("stringData");
    // Mount paths of the Secret's volumes in this container.
    let secret_volumes: Vec<&str> = spec["volumes"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|v| v["secret"]["secretName"].as_str() == Some(secret_name))
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    let mounts: Vec<String> = container["volumeMounts"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter(|m| secret_volumes.contains(&m["name"].as_str().unwrap_or("")))
        .map(|m| {
            assert_eq!(
                m["readOnly"],
                Value::Bool(true),
                "{what}: the Secret is mounted writable"
            );
            m["mountPath"]
                .as_str()
                .unwrap()
                .trim_end_matches('/')
                .to_string()
        })
        .collect();
    let mut keys = Vec::new();
    for (name, path) in env.iter_mut().filter(|(n, _)| is_secret_file_var(n)) {
        let (mount, key) = path
            .rsplit_once('/')
            .unwrap_or_else(|| panic!("{what}: {name}={path} is not an absolute path"));
        assert!(
            mounts.iter().any(|m| m == mount),
            "{what}: {name}={path}, but the container mounts the Secret {secret_name} at {mounts:?}"
        );
        let value = data.get(key).and_then(Value::as_str).unwrap_or_else(|| {
            panic!("{what}: {name} reads key {key}, which secret.example.yaml lacks")
        });
        let copy = dir.join(key);
        std::fs::write(&copy, value).unwrap();
        keys.push(key.to_string());
        *path = copy.display().to_string();
    }
    keys
}

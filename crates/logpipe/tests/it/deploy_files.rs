//! Deployment files (`Dockerfile`, `deploy/docker-compose.yml`, `deploy/k8s/`) checked against the
//! binary, as far as a machine without Docker or a cluster allows: every YAML file parses; every
//! `LOGPIPE_*` variable they set is accepted by `logpipe config check` (names and values); every
//! logpipe command is a real subcommand; ports, probes, Services and Prometheus targets agree with
//! the roles' listen ports; grace periods exceed the drain bound plus the producer flush; KEDA's
//! maxReplicaCount equals the topic's partitions; the producer, listening beyond loopback, has the
//! internal token its gateways send, and a NetworkPolicy admits only gateways to it; Kubernetes
//! secrets are files of a mounted Secret, named by the `*_FILE` settings (`deploy_secrets.rs`). Images are not built and manifests are not
//! validated against the Kubernetes schemas here (no Docker daemon, no kubeconform).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::{logpipe, read_repo_file as read, repo_root};
use serde_yaml_ng::Value;

/// How long shutdown flushes the producer (app.rs FLUSH_TIMEOUT), on top of the drain bound.
const PRODUCER_FLUSH: Duration = Duration::from_secs(10);

/// Every document of a YAML file, with `<<` merge keys applied (compose uses them).
fn yaml_docs(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| {
            let mut value = serde::Deserialize::deserialize(doc)
                .unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"));
            Value::apply_merge(&mut value).unwrap_or_else(|e| panic!("{rel}: merge keys: {e}"));
            value
        })
        .filter(|v| !v.is_null())
        .collect()
}

fn yaml(rel: &str) -> Value {
    let mut docs = yaml_docs(rel);
    assert_eq!(docs.len(), 1, "{rel} should hold one YAML document");
    docs.remove(0)
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

fn seq(v: &Value) -> Vec<Value> {
    v.as_sequence().cloned().unwrap_or_default()
}

fn strings(v: &Value) -> Vec<String> {
    seq(v).iter().map(s).collect()
}

/// `logpipe config check --json` with these variables: the effective config, or a panic naming
/// `what` and the binary's error (an unknown variable or a bad value).
fn effective_config(what: &str, env: &BTreeMap<String, String>) -> serde_json::Value {
    let out = logpipe()
        .args(["config", "check", "--json"])
        .envs(env)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{what}: `logpipe config check` rejects its LOGPIPE_* variables {:?}:\n{}",
        env.keys().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn defaults() -> serde_json::Value {
    effective_config("defaults", &BTreeMap::new())
}

/// The port of a listen address such as `0.0.0.0:8082`.
fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().unwrap()
}

fn duration(config: &serde_json::Value, section: &str, key: &str) -> Duration {
    humantime::parse_duration(config[section][key].as_str().unwrap()).unwrap()
}

/// The listen port of a role, from the effective config.
fn role_port(config: &serde_json::Value, role: &str) -> u16 {
    port_of(config[role]["listen"].as_str().unwrap())
}

/// A command line is one the CLI parses (a real subcommand with valid arguments).
fn assert_real_command(what: &str, args: &[String]) {
    let argv = std::iter::once("logpipe".to_string()).chain(args.iter().cloned());
    if let Err(e) = <logpipe::cli::Cli as clap::Parser>::try_parse_from(argv) {
        panic!(
            "{what}: `logpipe {}` is not a valid command: {e}",
            args.join(" ")
        );
    }
}

/// The variable names `logpipe config check --env` lists, and whether `name` is one of them
/// (or a `LOGPIPE_KAFKA_PROPERTY_*` librdkafka property).
fn known_env_names() -> BTreeSet<String> {
    let out = logpipe()
        .args(["config", "check", "--env"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let names: BTreeSet<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("LOGPIPE_"))
        .map(str::to_string)
        .collect();
    assert!(names.contains("LOGPIPE_KAFKA_BROKERS"), "{text}");
    names
}

fn assert_known_env(what: &str, name: &str, known: &BTreeSet<String>) {
    assert!(
        known.contains(name) || name.starts_with("LOGPIPE_KAFKA_PROPERTY_"),
        "{what}: {name} is not listed by `logpipe config check --env`"
    );
}

/// Every YAML file in the repository's deploy/ tree parses.
#[test]
fn every_deploy_yaml_file_parses() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yml" | "yaml")
            ) {
                out.push(path);
            }
        }
    }
    let root = repo_root();
    let mut files = Vec::new();
    walk(&root.join("deploy"), &mut files);
    assert!(files.len() >= 10, "too few YAML files found: {files:?}");
    for file in files {
        let rel = file
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(!yaml_docs(&rel).is_empty(), "{rel} is empty");
    }
}

#[test]
fn dockerfile_is_multi_stage_non_root_and_builds_the_binary() {
    let text = read("Dockerfile");
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let froms: Vec<&&str> = lines.iter().filter(|l| l.starts_with("FROM ")).collect();
    assert!(froms.len() >= 2, "expected a multi-stage build: {froms:?}");
    assert!(
        froms.last().unwrap().contains("slim") || froms.last().unwrap().contains("distroless"),
        "the runtime stage should be a small base image: {}",
        froms.last().unwrap()
    );
    // The last USER (the runtime one) is set and is not root.
    let runtime_start = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let user = lines[runtime_start..]
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap().trim();
    assert!(
        uid != "0" && uid != "root",
        "the runtime user must not be root: {user}"
    );
    assert!(text.contains("cargo build --release --locked --bin logpipe"));
    assert!(text.contains(r#"ENTRYPOINT ["/usr/local/bin/logpipe"]"#));
    // EXPOSE lists the roles' default ports.
    let config = defaults();
    let expose: BTreeSet<u16> = lines
        .iter()
        .filter_map(|l| l.strip_prefix("EXPOSE "))
        .flat_map(|l| l.split_whitespace().map(|p| p.parse::<u16>().unwrap()))
        .collect();
    for role in ["gateway", "producer", "consumer"] {
        assert!(
            expose.contains(&role_port(&config, role)),
            "EXPOSE lacks {role}'s port"
        );
    }
    // Every COPY source from the build context exists.
    for line in lines
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        for src in &parts[1..parts.len() - 1] {
            assert!(
                repo_root().join(src).exists(),
                "COPY source {src} is missing"
            );
        }
    }
    let ignore = read(".dockerignore");
    assert!(
        ignore.lines().any(|l| l.trim() == "target"),
        ".dockerignore should keep target/ out of the build context"
    );
}

/// The environment of a compose service, with values as strings.
fn compose_env(service: &Value) -> BTreeMap<String, String> {
    let mut env = BTreeMap::new();
    if let Some(map) = service["environment"].as_mapping() {
        for (k, v) in map {
            env.insert(s(k), s(v));
        }
    } else if let Some(list) = service["environment"].as_sequence() {
        for item in list {
            let item = s(item);
            let (k, v) = item.split_once('=').unwrap_or((&item, ""));
            env.insert(k.to_string(), v.to_string());
        }
    }
    env
}

fn is_logpipe_service(service: &Value) -> bool {
    service["image"]
        .as_str()
        .is_some_and(|image| image.contains("logpipe"))
}

#[test]
fn compose_has_the_stack_and_matches_the_binary() {
    let compose = yaml("deploy/docker-compose.yml");
    let services = compose["services"].as_mapping().expect("services");
    let names: BTreeSet<String> = services.keys().map(s).collect();
    for needed in [
        "kafka",
        "postgres",
        "redis",
        "prometheus",
        "grafana",
        "gateway",
        "producer",
    ] {
        assert!(names.contains(needed), "compose lacks the {needed} service");
    }
    // Kafka in KRaft mode: combined broker and controller, no ZooKeeper.
    let kafka = &compose["services"]["kafka"];
    assert!(s(&kafka["image"]).starts_with("apache/kafka"));
    let kafka_env = compose_env(kafka);
    assert!(kafka_env["KAFKA_PROCESS_ROLES"].contains("controller"));
    assert!(!names.iter().any(|n| n.contains("zookeeper")));
    // Redis keeps the aggregates: AOF and no eviction.
    let redis_cmd = strings(&compose["services"]["redis"]["command"]).join(" ");
    assert!(redis_cmd.contains("--appendonly yes"), "{redis_cmd}");
    assert!(
        redis_cmd.contains("--maxmemory-policy noeviction"),
        "{redis_cmd}"
    );

    let known = known_env_names();
    let defaults = defaults();
    let mut consumers = Vec::new();
    let mut internal_tokens = BTreeMap::new();
    let mut role_of = BTreeMap::new();
    for (name, service) in services {
        let name = s(name);
        if !is_logpipe_service(service) {
            continue;
        }
        let command = strings(&service["command"]);
        assert_real_command(&format!("compose service {name}"), &command);
        let env = compose_env(service);
        for var in env.keys().filter(|k| k.starts_with("LOGPIPE_")) {
            assert_known_env(&format!("compose service {name}"), var, &known);
        }
        let config = effective_config(&format!("compose service {name}"), &env);
        assert!(
            !config["kafka"]["brokers"].as_str().unwrap().is_empty(),
            "compose service {name} must not use the embedded broker"
        );
        let role = command[0].clone();
        role_of.insert(name.clone(), role.clone());
        if !["gateway", "producer", "consumer"].contains(&role.as_str()) {
            continue;
        }
        // Listens on the role's default port, and its health check probes that port.
        let port = role_port(&config, &role);
        assert_eq!(
            port,
            role_port(&defaults, &role),
            "{name} moved off the default port"
        );
        let health = strings(&service["healthcheck"]["test"]).join(" ");
        assert!(
            health.contains(&format!("/{port}")) && health.contains("/health/ready"),
            "{name}'s healthcheck should probe /health/ready on {port}: {health}"
        );
        // SIGKILL only after the drain bound and the producer flush.
        let grace = humantime::parse_duration(&s(&service["stop_grace_period"])).unwrap();
        assert!(
            grace > duration(&config, "consumer", "drain_timeout") + PRODUCER_FLUSH,
            "{name}: stop_grace_period {grace:?} too short"
        );
        if role == "consumer" {
            let replicas = service["deploy"]["replicas"].as_u64().unwrap_or(1);
            consumers.push((name.clone(), replicas));
            assert!(
                service.get("ports").is_none(),
                "consumer {name} should publish no host port (several would clash)"
            );
            assert!(!config["postgres"]["url"].as_str().unwrap().is_empty());
            assert!(!config["redis"]["url"].as_str().unwrap().is_empty());
        }
        if let Some(ports) = service["ports"].as_sequence() {
            for mapping in ports {
                let target = s(mapping)
                    .rsplit(':')
                    .next()
                    .unwrap()
                    .parse::<u16>()
                    .unwrap();
                assert_eq!(
                    target, port,
                    "{name} publishes a port it does not listen on"
                );
            }
        }
        if role == "gateway" || role == "producer" {
            internal_tokens.insert(
                role.clone(),
                env.get("LOGPIPE_PRODUCER_INTERNAL_TOKEN").cloned(),
            );
        }
        if role == "producer" {
            assert_producer_listen_is_safe(&format!("compose service {name}"), &config);
        }
        if role == "gateway" {
            let upstream =
                url::Url::parse(config["gateway"]["producer_url"].as_str().unwrap()).unwrap();
            assert_eq!(
                role_of_host(&compose, upstream.host_str().unwrap()),
                "producer"
            );
            assert_eq!(upstream.port(), Some(role_port(&defaults, "producer")));
            for u in config["gateway"]["consumer_metrics_urls"]
                .as_array()
                .unwrap()
            {
                let u = url::Url::parse(u.as_str().unwrap()).unwrap();
                assert_eq!(role_of_host(&compose, u.host_str().unwrap()), "consumer");
                assert_eq!(u.port(), Some(role_port(&defaults, "consumer")));
                assert_eq!(u.path(), "/metrics");
            }
        }
    }
    assert_eq!(
        internal_tokens.get("gateway"),
        internal_tokens.get("producer"),
        "the compose gateway must send the producer's internal token"
    );
    let total: u64 = consumers.iter().map(|(_, r)| r).sum();
    assert_eq!(total, 3, "compose should run 3 consumers: {consumers:?}");
    assert!(role_of.values().any(|r| r == "gateway"));
    assert!(role_of.values().any(|r| r == "producer"));

    // Mounted files exist (paths relative to deploy/).
    for (name, service) in services {
        for volume in seq(&service["volumes"]) {
            let volume = s(&volume);
            if let Some(rel) = volume.strip_prefix("./") {
                let src = rel.split(':').next().unwrap();
                assert!(
                    repo_root().join("deploy").join(src).exists(),
                    "{}: mounted {src} is missing",
                    s(name)
                );
            }
        }
    }

    // Prometheus scrapes each logpipe service on its role's port, under the job names alerts.yml
    // matches (the same as deploy/prometheus/prometheus.yml).
    let prom = yaml("deploy/compose/prometheus.yml");
    let reference = yaml("deploy/prometheus/prometheus.yml");
    let jobs = |v: &Value| -> BTreeSet<String> {
        seq(&v["scrape_configs"])
            .iter()
            .map(|j| s(&j["job_name"]))
            .collect()
    };
    assert_eq!(jobs(&prom), jobs(&reference));
    let mut scraped = BTreeSet::new();
    for job in seq(&prom["scrape_configs"]) {
        let job_name = s(&job["job_name"]);
        let Some(role) = job_name.strip_prefix("logpipe-") else {
            continue;
        };
        for target in seq(&job["static_configs"])
            .iter()
            .flat_map(|c| strings(&c["targets"]))
        {
            let (host, port) = target.rsplit_once(':').unwrap();
            assert_eq!(
                role_of_host(&compose, host),
                role,
                "{job_name} target {target}"
            );
            assert_eq!(port.parse::<u16>().unwrap(), role_port(&defaults, role));
            scraped.insert(host.to_string());
        }
    }
    for (name, role) in &role_of {
        if ["gateway", "producer", "consumer"].contains(&role.as_str()) {
            assert!(scraped.contains(name), "Prometheus does not scrape {name}");
        }
    }
    // Grafana's datasource keeps the uid the dashboard refers to.
    let datasource = yaml("deploy/compose/grafana-datasource.yml");
    let reference = yaml("deploy/grafana/provisioning/datasources/prometheus.yml");
    assert_eq!(
        datasource["datasources"][0]["uid"],
        reference["datasources"][0]["uid"]
    );
}

/// The logpipe role (first command word) of a compose service, by its name.
fn role_of_host(compose: &Value, host: &str) -> String {
    let service = &compose["services"][host];
    assert!(
        is_logpipe_service(service),
        "{host} is not a logpipe compose service"
    );
    strings(&service["command"])[0].clone()
}

/// All Kubernetes objects of deploy/k8s, by file.
fn k8s_objects() -> Vec<(String, Value)> {
    let mut files: Vec<String> = std::fs::read_dir(repo_root().join("deploy/k8s"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    files.sort();
    let mut objects = Vec::new();
    for file in files {
        for doc in yaml_docs(&format!("deploy/k8s/{file}")) {
            assert!(
                doc["apiVersion"].is_string(),
                "{file}: a document without apiVersion"
            );
            assert!(doc["kind"].is_string(), "{file}: a document without kind");
            objects.push((file.clone(), doc));
        }
    }
    objects
}

fn find<'a>(objects: &'a [(String, Value)], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .map(|(_, o)| o)
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} in deploy/k8s"))
}

/// The producer's effective listen address either is loopback or comes with an internal token,
/// the same rule `logpipe producer` applies at start.
fn assert_producer_listen_is_safe(what: &str, config: &serde_json::Value) {
    let listen = config["producer"]["listen"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let token = config["producer"]["internal_token"].as_str().unwrap();
    logpipe::producer::internal_auth::check_listen(listen, token)
        .unwrap_or_else(|e| panic!("{what}: {e}"));
}

/// A placeholder for a variable filled from a Secret, valid for its key.
fn secret_placeholder(var: &str) -> String {
    match var {
        "LOGPIPE_POSTGRES_URL" => "postgres://logpipe:secret@postgres:5432/logpipe".into(),
        "LOGPIPE_REDIS_URL" => "redis://:secret@redis:6379/0".into(),
        "LOGPIPE_GATEWAY_API_KEYS" => "0123456789abcdef0123,fedcba9876543210fedc".into(),
        "LOGPIPE_PRODUCER_INTERNAL_TOKEN" => "0123456789abcdef-internal".into(),
        _ => "secret".into(),
    }
}

fn selector_matches(selector: &Value, labels: &Value) -> bool {
    selector
        .as_mapping()
        .expect("matchLabels")
        .iter()
        .all(|(k, v)| labels[s(k).as_str()] == *v)
}

#[test]
fn kubernetes_manifests_match_the_binary() {
    let objects = k8s_objects();
    let known = known_env_names();
    let defaults = defaults();

    // kustomization.yaml lists every manifest but the example Secret.
    let kustomization = yaml("deploy/k8s/kustomization.yaml");
    let resources: BTreeSet<String> = strings(&kustomization["resources"]).into_iter().collect();
    let files: BTreeSet<String> = objects
        .iter()
        .map(|(f, _)| f.clone())
        .filter(|f| f != "kustomization.yaml" && f != "secret.example.yaml")
        .collect();
    assert_eq!(
        resources, files,
        "kustomization.yaml resources vs files in deploy/k8s"
    );

    let configmap = find(&objects, "ConfigMap", "logpipe-config");
    let mut base_env = BTreeMap::new();
    for (k, v) in configmap["data"].as_mapping().unwrap() {
        assert_known_env("ConfigMap logpipe-config", &s(k), &known);
        base_env.insert(s(k), s(v));
    }
    let secret = find(&objects, "Secret", "logpipe-secrets");
    for var in ["LOGPIPE_POSTGRES_URL", "LOGPIPE_REDIS_URL"] {
        let url = url::Url::parse(&base_env[var]).unwrap();
        assert_eq!(
            url.password(),
            None,
            "ConfigMap {var}: the password belongs in the Secret (postgres.password_file)"
        );
    }
    let secret_files = tempfile::tempdir().unwrap();
    let secret_keys: BTreeSet<String> = secret["stringData"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(s)
        .collect();

    let mut roles_seen = BTreeSet::new();
    for (file, object) in &objects {
        let kind = s(&object["kind"]);
        let pod = match kind.as_str() {
            "Deployment" | "Job" => &object["spec"]["template"],
            _ => continue,
        };
        let name = s(&object["metadata"]["name"]);
        let spec = &pod["spec"];
        let what = format!("{file} {kind} {name}");
        assert_eq!(
            spec["securityContext"]["runAsNonRoot"],
            Value::Bool(true),
            "{what}"
        );
        assert_ne!(
            spec["securityContext"]["runAsUser"].as_u64(),
            Some(0),
            "{what}"
        );
        if kind == "Deployment" {
            assert!(
                selector_matches(
                    &object["spec"]["selector"]["matchLabels"],
                    &pod["metadata"]["labels"]
                ),
                "{what}: selector does not match the pod labels"
            );
        }
        let containers = seq(&spec["initContainers"])
            .into_iter()
            .chain(seq(&spec["containers"]));
        for container in containers {
            let cname = s(&container["name"]);
            let what = format!("{what} container {cname}");
            assert_eq!(
                s(&container["image"]),
                "logpipe",
                "{what}: image set by kustomize"
            );
            let args = strings(&container["args"]);
            assert_real_command(&what, &args);
            let mut env = BTreeMap::new();
            for from in seq(&container["envFrom"]) {
                assert_eq!(s(&from["configMapRef"]["name"]), "logpipe-config", "{what}");
                env.extend(base_env.clone());
            }
            for var in seq(&container["env"]) {
                let var_name = s(&var["name"]);
                assert_known_env(&what, &var_name, &known);
                if let Some(value) = var.get("value") {
                    env.insert(var_name, s(value));
                } else {
                    let key_ref = &var["valueFrom"]["secretKeyRef"];
                    assert_eq!(s(&key_ref["name"]), "logpipe-secrets", "{what}: {var_name}");
                    assert!(
                        secret_keys.contains(&s(&key_ref["key"])),
                        "{what}: {var_name} refers to a key secret.example.yaml lacks"
                    );
                    env.insert(var_name.clone(), secret_placeholder(&var_name));
                }
            }
            let read = crate::deploy_secrets::materialise(
                &what,
                spec,
                &container,
                secret,
                secret_files.path(),
                &mut env,
            );
            let config = effective_config(&what, &env);
            let role = args[0].clone();
            if !["gateway", "producer", "consumer"].contains(&role.as_str()) {
                continue;
            }
            roles_seen.insert(role.clone());
            let port = role_port(&config, &role);
            assert_eq!(
                port,
                role_port(&defaults, &role),
                "{what}: not the role's default port"
            );
            let ports = seq(&container["ports"]);
            assert_eq!(ports.len(), 1, "{what}: one container port");
            assert_eq!(
                ports[0]["containerPort"].as_u64(),
                Some(port as u64),
                "{what}"
            );
            let port_name = s(&ports[0]["name"]);
            for (probe, path) in [
                ("readinessProbe", "/health/ready"),
                ("livenessProbe", "/health/live"),
            ] {
                let get = &container[probe]["httpGet"];
                assert_eq!(s(&get["path"]), path, "{what}: {probe}");
                let probe_port = s(&get["port"]);
                assert!(
                    probe_port == port_name || probe_port == port.to_string(),
                    "{what}: {probe} on port {probe_port}"
                );
            }
            // SIGKILL only after the drain bound, the producer flush and any preStop sleep.
            let grace =
                Duration::from_secs(spec["terminationGracePeriodSeconds"].as_u64().unwrap());
            let pre_stop: u64 = strings(&container["lifecycle"]["preStop"]["exec"]["command"])
                .get(1)
                .map_or(0, |secs| secs.parse().unwrap());
            let needed = duration(&config, "consumer", "drain_timeout")
                + PRODUCER_FLUSH
                + Duration::from_secs(pre_stop);
            assert!(grace > needed, "{what}: grace {grace:?} <= {needed:?}");
            assert!(
                duration(&config, "consumer", "drain_timeout")
                    < duration(&config, "consumer", "session_timeout")
            );
            if role == "consumer" || role == "gateway" {
                for store in ["postgres", "redis"] {
                    assert!(!config[store]["url"].as_str().unwrap().is_empty(), "{what}");
                    assert_eq!(
                        config[store]["password"], "<redacted>",
                        "{what}: {store}.password_file is read"
                    );
                }
                assert!(read.contains(&"postgres-password".to_string()), "{what}");
                assert!(read.contains(&"redis-password".to_string()), "{what}");
            }
            if role == "gateway" || role == "producer" {
                // Both sides read the internal token from the same Secret key, as a file.
                assert!(
                    read.contains(&"producer-internal-token".to_string()),
                    "{what}: LOGPIPE_PRODUCER_INTERNAL_TOKEN_FILE does not read producer-internal-token"
                );
            }
            if role == "gateway" {
                assert!(
                    !config["gateway"]["api_keys"].as_array().unwrap().is_empty(),
                    "{what}: gateway.api_keys_file is read"
                );
            }
            if role == "producer" {
                assert_producer_listen_is_safe(&what, &config);
            }
            if role == "gateway" {
                let upstream =
                    url::Url::parse(config["gateway"]["producer_url"].as_str().unwrap()).unwrap();
                let producer_service = find(&objects, "Service", upstream.host_str().unwrap());
                assert_eq!(
                    producer_service["spec"]["ports"][0]["port"].as_u64(),
                    upstream.port().map(u64::from)
                );
            }
            // The role's Service selects these pods and exposes the same port.
            let service = find(&objects, "Service", &name);
            assert!(
                selector_matches(&service["spec"]["selector"], &pod["metadata"]["labels"]),
                "Service {name} does not select {what}"
            );
            let sp = &service["spec"]["ports"][0];
            assert_eq!(
                sp["port"].as_u64(),
                Some(port as u64),
                "Service {name} port"
            );
            assert!(
                s(&sp["targetPort"]) == port_name || s(&sp["targetPort"]) == port.to_string(),
                "Service {name} targetPort"
            );
        }
    }
    assert_eq!(
        roles_seen,
        ["consumer", "gateway", "producer"].map(String::from).into(),
        "a Deployment per role"
    );

    // Only the gateway pods reach the producer's port.
    let policy = find(&objects, "NetworkPolicy", "logpipe-producer");
    let producer = find(&objects, "Deployment", "logpipe-producer");
    let gateway = find(&objects, "Deployment", "logpipe-gateway");
    let producer_pod = &producer["spec"]["template"];
    assert!(
        selector_matches(
            &policy["spec"]["podSelector"]["matchLabels"],
            &producer_pod["metadata"]["labels"]
        ),
        "the NetworkPolicy does not select the producer pods"
    );
    assert!(
        !selector_matches(
            &policy["spec"]["podSelector"]["matchLabels"],
            &gateway["spec"]["template"]["metadata"]["labels"]
        ),
        "the NetworkPolicy selects the gateway pods too"
    );
    assert_eq!(strings(&policy["spec"]["policyTypes"]), ["Ingress"]);
    let rules = seq(&policy["spec"]["ingress"]);
    assert_eq!(rules.len(), 1, "one ingress rule: from the gateways");
    let from = seq(&rules[0]["from"]);
    assert_eq!(from.len(), 1, "only the gateways: {from:?}");
    assert!(from[0].get("namespaceSelector").is_none() && from[0].get("ipBlock").is_none());
    assert!(
        selector_matches(
            &from[0]["podSelector"]["matchLabels"],
            &gateway["spec"]["template"]["metadata"]["labels"]
        ),
        "the NetworkPolicy does not admit the gateway pods"
    );
    assert!(
        !selector_matches(
            &from[0]["podSelector"]["matchLabels"],
            &producer_pod["metadata"]["labels"]
        ),
        "the NetworkPolicy admits more than the gateways"
    );
    let container_port = &producer_pod["spec"]["containers"][0]["ports"][0];
    let allowed = seq(&rules[0]["ports"]);
    assert_eq!(allowed.len(), 1);
    assert!(
        s(&allowed[0]["port"]) == s(&container_port["name"])
            || allowed[0]["port"] == container_port["containerPort"],
        "the NetworkPolicy opens a port the producer does not listen on"
    );

    // Each PodDisruptionBudget covers a Deployment.
    let pdbs: Vec<&Value> = objects
        .iter()
        .map(|(_, o)| o)
        .filter(|o| o["kind"] == "PodDisruptionBudget")
        .collect();
    assert!(!pdbs.is_empty());
    for pdb in pdbs {
        let covers = objects.iter().any(|(_, o)| {
            o["kind"] == "Deployment"
                && selector_matches(
                    &pdb["spec"]["selector"]["matchLabels"],
                    &o["spec"]["template"]["metadata"]["labels"],
                )
        });
        assert!(
            covers,
            "PDB {} selects no Deployment",
            s(&pdb["metadata"]["name"])
        );
    }
    assert_eq!(
        find(&objects, "PodDisruptionBudget", "logpipe-consumer")["spec"]["maxUnavailable"]
            .as_u64(),
        Some(1)
    );

    // KEDA: scale the consumer Deployment on its group's lag, at most one member per partition.
    let scaled = find(&objects, "ScaledObject", "logpipe-consumer");
    let target = &scaled["spec"]["scaleTargetRef"];
    find(&objects, "Deployment", &s(&target["name"]));
    assert_eq!(s(&target["name"]), "logpipe-consumer");
    let partitions = defaults["kafka"]["partitions"].as_u64().unwrap();
    assert_eq!(scaled["spec"]["maxReplicaCount"].as_u64(), Some(partitions));
    assert_eq!(base_env["LOGPIPE_KAFKA_PARTITIONS"], partitions.to_string());
    assert_eq!(scaled["spec"]["minReplicaCount"].as_u64(), Some(1));
    let triggers = seq(&scaled["spec"]["triggers"]);
    assert_eq!(triggers.len(), 1);
    let trigger = &triggers[0];
    assert_eq!(s(&trigger["type"]), "kafka");
    let meta = &trigger["metadata"];
    let cluster_config = effective_config("ConfigMap", &base_env);
    assert_eq!(
        s(&meta["bootstrapServers"]),
        base_env["LOGPIPE_KAFKA_BROKERS"]
    );
    assert_eq!(
        s(&meta["consumerGroup"]),
        cluster_config["consumer"]["group_id"].as_str().unwrap()
    );
    assert_eq!(
        s(&meta["topic"]),
        cluster_config["kafka"]["topic"].as_str().unwrap()
    );
    assert!(s(&meta["lagThreshold"]).parse::<u64>().unwrap() > 0);
}

/// The compose stack's Prometheus config, laid out as the container mounts it (config and
/// deploy/prometheus/alerts.yml side by side), passes `promtool check config` (rules included).
/// promtool comes from Debian's `prometheus`, which `scripts/test.sh` installs for the
/// observability tests.
#[test]
fn compose_prometheus_config_passes_promtool() {
    let promtool = std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join("promtool"))
                .find(|p| p.is_file())
        })
        .expect("`promtool` is not on PATH: run the suite with scripts/test.sh, which installs Debian's `prometheus`");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo_root().join("deploy/compose/prometheus.yml"),
        dir.path().join("prometheus.yml"),
    )
    .unwrap();
    std::fs::copy(
        repo_root().join("deploy/prometheus/alerts.yml"),
        dir.path().join("alerts.yml"),
    )
    .unwrap();
    let out = Command::new(promtool)
        .args(["check", "config", "prometheus.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

//! docker-compose.yml cannot run here (no Docker engine), so this keeps it consistent: it
//! parses, every TOUCHLINE_* variable is a configuration key the binary accepts (the
//! `ENV_KEYS` of crates/touchline/src/config.rs), published ports are bound to 127.0.0.1,
//! long-running services have healthchecks, and `depends_on` names services that exist with
//! a condition they can meet.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use serde_norway::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The top-level keys `Config::load` takes from the environment, read from the one place
/// they are declared.
fn env_keys() -> Vec<String> {
    let src = std::fs::read_to_string(root().join("crates/touchline/src/config.rs")).unwrap();
    let start = src.find("pub const ENV_KEYS").expect("ENV_KEYS in config.rs");
    let body = &src[start..];
    let open = body.find("= [").expect("ENV_KEYS array") + 3;
    let close = body[open..].find("];").expect("end of ENV_KEYS") + open;
    let keys: Vec<String> = body[open..close].split(',').map(|s| s.trim().trim_matches('"').to_owned()).filter(|s| !s.is_empty()).collect();
    assert!(keys.contains(&"kafka_brokers".to_owned()), "parsed ENV_KEYS: {keys:?}");
    keys
}

fn compose() -> Value {
    let text = std::fs::read_to_string(root().join("docker-compose.yml")).unwrap();
    let mut v: Value = serde_norway::from_str(&text).unwrap_or_else(|e| panic!("docker-compose.yml does not parse: {e}"));
    v.apply_merge().unwrap();
    v
}

fn str_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("expected a scalar, got {other:?}"),
    }
}

/// `environment` as a map or as a `KEY=value` list.
fn environment(svc: &Value) -> Vec<(String, String)> {
    match svc.get("environment") {
        None => Vec::new(),
        Some(Value::Mapping(m)) => m.iter().map(|(k, v)| (str_of(k), if v.is_null() { String::new() } else { str_of(v) })).collect(),
        Some(Value::Sequence(s)) => s
            .iter()
            .map(|e| {
                let e = str_of(e);
                let (k, v) = e.split_once('=').unwrap_or((&e, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        Some(other) => panic!("environment must be a map or a list, got {other:?}"),
    }
}

#[test]
fn compose_file_is_consistent_with_the_configuration() {
    let keys = env_keys();
    let doc = compose();
    let services = doc.get("services").and_then(Value::as_mapping).expect("services");
    let names: Vec<String> = services.keys().map(str_of).collect();
    for want in ["kafka", "clickhouse", "postgres", "migrate", "collector", "aggregator"] {
        assert!(names.iter().any(|n| n == want), "service {want} is missing; have {names:?}");
    }
    let mut touchline_vars = 0;
    for (name, svc) in services {
        let name = str_of(name);
        assert!(svc.get("image").is_some() || svc.get("build").is_some(), "{name}: no image or build");

        for (var, value) in environment(svc) {
            let Some(rest) = var.strip_prefix("TOUCHLINE_") else { continue };
            touchline_vars += 1;
            let key = rest.to_ascii_lowercase().replace("__", ".");
            let known = keys.iter().any(|k| key == *k || key.starts_with(&format!("{k}.")));
            assert!(known, "{name}: {var} is not a configuration key (known: {keys:?})");
            if key == "http_addr" {
                assert!(value.parse::<std::net::SocketAddr>().is_ok(), "{name}: {var}={value} is not an address");
            }
        }

        if let Some(ports) = svc.get("ports") {
            for p in ports.as_sequence().expect("ports is a list") {
                let p = str_of(p);
                assert!(p.starts_with("127.0.0.1:"), "{name}: port {p} must be bound to 127.0.0.1");
            }
        }

        // One-shot jobs (restart "no") need no healthcheck; everything else does.
        let one_shot = svc.get("restart").map(str_of).as_deref() == Some("no");
        if !one_shot {
            let hc = svc.get("healthcheck").unwrap_or_else(|| panic!("{name}: no healthcheck"));
            let test = hc.get("test").unwrap_or_else(|| panic!("{name}: healthcheck without test"));
            assert!(test.as_sequence().is_some_and(|s| !s.is_empty()) || test.as_str().is_some(), "{name}: empty healthcheck test");
        }

        if let Some(deps) = svc.get("depends_on") {
            let entries: Vec<(String, Option<String>)> = match deps {
                Value::Sequence(s) => s.iter().map(|d| (str_of(d), None)).collect(),
                Value::Mapping(m) => m.iter().map(|(k, v)| (str_of(k), v.get("condition").map(str_of))).collect(),
                other => panic!("{name}: depends_on must be a list or a map, got {other:?}"),
            };
            for (dep, cond) in entries {
                let target = services.get(dep.as_str()).unwrap_or_else(|| panic!("{name} depends on {dep}, which is not a service"));
                match cond.as_deref() {
                    None | Some("service_started") => {}
                    Some("service_healthy") => {
                        assert!(target.get("healthcheck").is_some(), "{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
                    }
                    Some("service_completed_successfully") => assert_eq!(
                        target.get("restart").map(str_of).as_deref(),
                        Some("no"),
                        "{name} waits for {dep} to complete, but {dep} restarts"
                    ),
                    Some(other) => panic!("{name}: unknown depends_on condition {other}"),
                }
            }
        }
    }
    assert!(touchline_vars > 0, "touchline services are configured with TOUCHLINE_* variables");

    // Kafka runs in KRaft mode (no ZooKeeper) and advertises an address clients can reach.
    let kafka = environment(&services["kafka"]);
    let get = |k: &str| kafka.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
    assert!(get("KAFKA_PROCESS_ROLES").contains("controller"), "KRaft single node");
    assert!(get("KAFKA_ADVERTISED_LISTENERS").contains("kafka:29092"));
    let brokers = environment(&services["collector"]).into_iter().find(|(k, _)| k == "TOUCHLINE_KAFKA_BROKERS").map(|(_, v)| v);
    assert_eq!(brokers.as_deref(), Some("kafka:29092"), "the collector reaches kafka on its internal listener");
}

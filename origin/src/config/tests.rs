//! `ServeConfig::merge`: precedence, defaults and the errors that name a setting.

use clap::Parser;

use super::*;

/// `pushwire serve`'s flags alone.
#[derive(Debug, Parser)]
struct Flags {
    #[command(flatten)]
    settings: ServeSettings,
}

fn flags(args: &[&str]) -> Result<ServeSettings, clap::Error> {
    Flags::try_parse_from(std::iter::once("serve").chain(args.iter().copied())).map(|f| f.settings)
}

fn file(json: &str) -> ServeSettings {
    serde_json::from_str(json).unwrap()
}

fn none() -> ServeSettings {
    ServeSettings::default()
}

#[test]
fn defaults_use_the_dev_app_and_embedded_broker() {
    let c = ServeConfig::merge(none(), none()).unwrap();
    assert!(c.uses_dev_app);
    assert_eq!(c.apps.single().unwrap().id, "1000001");
    assert_eq!(c.port, DEFAULT_PORT);
    assert!(c.redis_url.is_none());
    assert_eq!(c.history, HistoryPolicy::default());
    assert_eq!(c.max_request_bytes, shared::DEFAULT_MAX_REQUEST_BYTES);
}

#[test]
fn the_dev_app_stays_on_loopback_unless_allowed() {
    let loopback = IpAddr::from([127, 0, 0, 1]);
    assert_eq!(ServeConfig::merge(none(), none()).unwrap().host, loopback);
    let given = flags(&["--host", "::1"]).unwrap();
    assert!(
        ServeConfig::merge(given, none())
            .unwrap()
            .host
            .is_loopback()
    );
    for (given, f) in [
        (flags(&["--host", "0.0.0.0"]).unwrap(), none()),
        (none(), file(r#"{"host": "10.0.0.5"}"#)),
        (
            flags(&["--host", "0.0.0.0", "--allow-dev-app", "false"]).unwrap(),
            none(),
        ),
    ] {
        let err = ServeConfig::merge(given, f).unwrap_err();
        assert!(matches!(err, ConfigError::DevAppExposed { .. }), "{err:?}");
        let message = err.to_string();
        assert!(
            message.contains("PUSHWIRE_APPS") && message.contains("--allow-dev-app"),
            "{message}"
        );
    }
    let given = flags(&["--host", "0.0.0.0", "--allow-dev-app"]).unwrap();
    let c = ServeConfig::merge(given, none()).unwrap();
    assert!(c.uses_dev_app && c.host.is_unspecified());
    let f = file(r#"{"host": "0.0.0.0", "allow_dev_app": true}"#);
    assert!(ServeConfig::merge(none(), f).unwrap().host.is_unspecified());
    // With real apps, the default is every interface.
    let given = flags(&["--apps", "1:k:s"]).unwrap();
    assert!(
        ServeConfig::merge(given, none())
            .unwrap()
            .host
            .is_unspecified()
    );
}

#[test]
fn config_file_apps_are_validated() {
    for (apps, why) in [
        (
            r#"[{"id": "1", "key": "k", "secret": ""}]"#,
            "secret is empty",
        ),
        (
            r#"[{"id": "a:b", "key": "k", "secret": "s"}]"#,
            "must be letters",
        ),
    ] {
        let err = serde_json::from_str::<ServeSettings>(&format!(r#"{{"apps": {apps}}}"#))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{err}");
    }
}

#[test]
fn history_settings_merge_per_field() {
    let f = file(r#"{"history": {"max_age_secs": 60}}"#);
    let given = flags(&["--history-max-events", "9999"]).unwrap();
    let c = ServeConfig::merge(given, f).unwrap();
    assert_eq!(
        (c.history.max_events, c.history.max_age_secs),
        (shared::MAX_HISTORY_EVENTS, 60)
    );
    let f = file(r#"{"history": {"max_events": 7}}"#);
    let given = flags(&["--history-max-age-secs", "5"]).unwrap();
    let c = ServeConfig::merge(given, f).unwrap();
    assert_eq!((c.history.max_events, c.history.max_age_secs), (7, 5));
}

#[test]
fn out_of_range_values_get_the_error_the_edge_gives() {
    let given = flags(&["--history-max-events", "100000"]).unwrap();
    match ServeConfig::merge(given, none()) {
        Err(ConfigError::OutOfRange { setting, error }) => {
            assert_eq!(error, shared::history_max_events(100_000).unwrap_err());
            assert_eq!(
                setting,
                "--history-max-events / PUSHWIRE_HISTORY_MAX_EVENTS"
            );
        }
        other => panic!("{other:?}"),
    }
    let f = file(r#"{"history": {"max_events": 0}}"#);
    let err = ServeConfig::merge(none(), f).unwrap_err();
    assert_eq!(
        err.to_string(),
        "history.max_events in the config file: history max_events must be at least 1, not 0"
    );
    let given = flags(&["--max-request-bytes", "10"]).unwrap();
    match ServeConfig::merge(given, none()) {
        Err(ConfigError::OutOfRange { setting, error }) => {
            assert_eq!(error, shared::max_request_bytes(10).unwrap_err());
            assert_eq!(setting, "--max-request-bytes / PUSHWIRE_MAX_REQUEST_BYTES");
        }
        other => panic!("{other:?}"),
    }
    let f = file(r#"{"history": {"max_age_secs": 4294967296}}"#);
    assert!(matches!(
        ServeConfig::merge(none(), f),
        Err(ConfigError::OutOfRange { error, .. })
            if error == shared::history_max_age_secs(4_294_967_296).unwrap_err()
    ));
    let f = file(r#"{"workers": 0}"#);
    assert_eq!(
        ServeConfig::merge(none(), f).unwrap_err().to_string(),
        "workers in the config file: workers must be at least 1, not 0"
    );
}

#[test]
fn flags_win_over_the_file() {
    let f = file(
        r#"{"port": 7000, "redis_url": "redis://file", "apps": [{"id": "9", "key": "k", "secret": "s", "limits": {"max_data_bytes": 5}}]}"#,
    );
    let c = ServeConfig::merge(flags(&["--port", "8000"]).unwrap(), f).unwrap();
    assert_eq!(c.port, 8000);
    assert_eq!(c.redis_url.as_deref(), Some("redis://file"));
    let app = c.apps.single().unwrap();
    assert_eq!((app.id.as_str(), app.limits.max_data_bytes), ("9", 5));
    assert_eq!(app.limits.max_batch_events, 10);
    assert!(!c.uses_dev_app);
    let f =
        file(r#"{"redis_url": "redis://file", "apps": [{"id": "9", "key": "k", "secret": "s"}]}"#);
    let given = flags(&["--redis", "", "--apps", "1:k:s"]).unwrap();
    let c = ServeConfig::merge(given, f).unwrap();
    assert!(
        c.redis_url.is_none(),
        "an empty --redis picks the embedded broker"
    );
    assert_eq!(c.apps.single().unwrap().id, "1");
}

#[test]
fn the_example_deploy_config_is_valid() {
    let example: ServeSettings =
        serde_json::from_str(include_str!("../../../deploy/pushwire.json")).unwrap();
    let c = ServeConfig::merge(none(), example).unwrap();
    assert!(!c.demo && !c.uses_dev_app && c.redis_url.is_some());
}

#[test]
fn bad_settings_are_reported() {
    assert!(serde_json::from_str::<ServeSettings>(r#"{"prot": 1}"#).is_err());
    assert!(serde_json::from_str::<ServeSettings>(r#"{"config": "x.json"}"#).is_err());
    assert!(serde_json::from_str::<ServeSettings>(r#"{"history": {"max": 1}}"#).is_err());
    let err = flags(&["--apps", "1:k:top-secret,2"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid apps (--apps / PUSHWIRE_APPS)") && !err.contains("top-secret"),
        "{err}"
    );
    let err = flags(&["--allowed-origins", "app.example.com"])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--allowed-origins") && err.contains("invalid allowed origin"),
        "{err}"
    );
    assert!(flags(&["--workers", "many"]).is_err());
}

#[test]
fn allowed_origins_default_to_any_and_flags_win_over_the_file() {
    let c = ServeConfig::merge(none(), none()).unwrap();
    assert_eq!(c.allowed_origins, AllowedOrigins::Any);
    let f = file(r#"{"allowed_origins": ["https://a.example"]}"#);
    let c = ServeConfig::merge(none(), f).unwrap();
    assert!(c.allowed_origins.allows("https://a.example"));
    assert!(!c.allowed_origins.allows("https://b.example"));
    let f = file(r#"{"allowed_origins": ["https://a.example"]}"#);
    let c = ServeConfig::merge(flags(&["--allowed-origins", "*"]).unwrap(), f).unwrap();
    assert_eq!(c.allowed_origins, AllowedOrigins::Any);
    assert!(serde_json::from_str::<ServeSettings>(r#"{"allowed_origins": ["a/b"]}"#).is_err());
}

#[test]
fn connection_limits_default_merge_and_name_their_source() {
    let c = ServeConfig::merge(none(), none()).unwrap();
    assert_eq!(c.connections, ConnectionLimits::default());
    let f = file(r#"{"body_read_timeout_ms": 2000, "max_connections_per_ip": 50}"#);
    let given = flags(&["--max-connections-per-ip", "0"]).unwrap();
    let c = ServeConfig::merge(given, f).unwrap();
    assert_eq!(
        (
            c.connections.header_read_timeout_ms,
            c.connections.body_read_timeout_ms,
            c.connections.max_connections_per_ip
        ),
        (10_000, 2_000, 0)
    );
    let given = flags(&["--header-read-timeout-ms", "5"]).unwrap();
    assert_eq!(
        ServeConfig::merge(given, none()).unwrap_err().to_string(),
        "--header-read-timeout-ms / PUSHWIRE_HEADER_READ_TIMEOUT_MS: header_read_timeout_ms must be at least 100, not 5"
    );
}

#[test]
fn the_log_format_is_a_flag_or_a_file_key_and_text_by_default() {
    let format = |given, f| ServeConfig::merge(given, f).unwrap().log_format;
    assert_eq!(format(none(), none()), LogFormat::Text);
    assert_eq!(
        format(none(), file(r#"{"log_format": "json"}"#)),
        LogFormat::Json
    );
    assert_eq!(
        format(
            flags(&["--log-format", "text"]).unwrap(),
            file(r#"{"log_format": "json"}"#)
        ),
        LogFormat::Text
    );
    assert_eq!(
        format(flags(&["--log-format", "json"]).unwrap(), none()),
        LogFormat::Json
    );
    assert!(flags(&["--log-format", "yaml"]).is_err());
    assert!(serde_json::from_str::<ServeSettings>(r#"{"log_format": "yaml"}"#).is_err());
}

#[test]
fn workers_get_the_log_format_with_their_settings() {
    let config = ServeConfig::merge(flags(&["--log-format", "json"]).unwrap(), none()).unwrap();
    let sent: ServeConfig = serde_json::from_str(&serde_json::to_string(&config).unwrap()).unwrap();
    assert_eq!(sent.log_format, LogFormat::Json);
}

#[test]
fn a_redis_url_that_does_not_parse_is_refused_naming_where_it_was_given() {
    let typo = "redis://127.0.0.1:notaport";
    let given = flags(&["--redis", typo]).unwrap();
    let err = ServeConfig::merge(given, none()).unwrap_err();
    assert!(matches!(err, ConfigError::RedisUrl { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("--redis / PUSHWIRE_REDIS_URL: not a Redis URL"),
        "{err}"
    );
    let f = file(&format!(r#"{{"redis_url": "{typo}"}}"#));
    let err = ServeConfig::merge(none(), f).unwrap_err().to_string();
    assert!(
        err.starts_with("redis_url in the config file: not a Redis URL"),
        "{err}"
    );
    // A password in the URL stays out of the message.
    let given = flags(&["--redis", "redis://:hunter2@host:port"]).unwrap();
    let err = ServeConfig::merge(given, none()).unwrap_err().to_string();
    assert!(!err.contains("hunter2"), "{err}");
    // A flag's good URL wins over the file's bad one; unreachable is not invalid.
    let given = flags(&["--redis", "redis://127.0.0.1:1"]).unwrap();
    let f = file(&format!(r#"{{"redis_url": "{typo}"}}"#));
    let c = ServeConfig::merge(given, f).unwrap();
    assert_eq!(c.redis_url.as_deref(), Some("redis://127.0.0.1:1"));
}

#[test]
fn heartbeats_are_raised_to_the_minimum_and_refused_past_the_maximum() {
    let given = flags(&["--ping-interval-ms", "1", "--ping-timeout-ms", "3600000"]).unwrap();
    let c = ServeConfig::merge(given, none()).unwrap();
    assert_eq!(
        (c.ping_interval_ms, c.ping_timeout_ms),
        (MIN_PING_MS, MAX_PING_MS)
    );
    let given = flags(&["--ping-interval-ms", "18446744073709551615"]).unwrap();
    assert_eq!(
        ServeConfig::merge(given, none()).unwrap_err().to_string(),
        "--ping-interval-ms / PUSHWIRE_PING_INTERVAL_MS: ping_interval_ms must be at most 3600000, not 18446744073709551615"
    );
    let f = file(r#"{"ping_timeout_ms": 3600001}"#);
    assert_eq!(
        ServeConfig::merge(none(), f).unwrap_err().to_string(),
        "ping_timeout_ms in the config file: ping_timeout_ms must be at most 3600000, not 3600001"
    );
}

#[test]
fn webhook_batches_default_to_50_events_and_250_ms_and_are_bounded() {
    let config = ServeConfig::merge(none(), none()).unwrap();
    let dispatch = config.webhook_dispatch();
    assert_eq!(dispatch.max_batch_events, 50);
    assert_eq!(
        dispatch.max_batch_delay,
        std::time::Duration::from_millis(250)
    );
    let given = flags(&["--webhook-batch-events", "10"]).unwrap();
    let f = file(r#"{"webhook_batch_events": 20, "webhook_batch_delay_ms": 0}"#);
    let config = ServeConfig::merge(given, f).unwrap();
    assert_eq!(
        (config.webhook_batch_events, config.webhook_batch_delay_ms),
        (10, 0)
    );
    let f = file(r#"{"webhook_batch_events": 0}"#);
    assert_eq!(
        ServeConfig::merge(none(), f).unwrap_err().to_string(),
        "webhook_batch_events in the config file: webhook_batch_events must be at least 1, not 0"
    );
    let given = flags(&["--webhook-batch-delay-ms", "10001"]).unwrap();
    assert!(matches!(
        ServeConfig::merge(given, none()),
        Err(ConfigError::OutOfRange { setting, .. })
            if setting == "--webhook-batch-delay-ms / PUSHWIRE_WEBHOOK_BATCH_DELAY_MS"
    ));
}

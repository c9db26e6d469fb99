//! Python's stock clients, as a Python backend and app use them: python-socketio
//! subscribes (long-polling, then WebSocket), and the Pusher server SDK
//! (pusher-http-python) authorizes private and presence channels, triggers
//! (single, multi-channel, batch, with `socket_id` exclusion) and queries channels.
//! The scenario is `tests/python/sdk_and_client.py`; this checks what it saw.

use std::path::PathBuf;
use std::process::Command;

use pushwire_shared::event::CONNECTION_ESTABLISHED;
use pushwire_tests::clients::python;
use pushwire_tests::{Deployment, Reporter, each_fanout};
use serde_json::{Value, json};

#[test]
fn python_socketio_and_the_python_pusher_sdk_work_unchanged() {
    each_fanout("python", python_clients);
}

fn python_clients(deployment: &Deployment) {
    let origin = deployment.origin("origin");
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("python");
    let mut cmd = Command::new(python());
    cmd.arg(dir.join("sdk_and_client.py"))
        .args([&origin.url(), "1000001", "app-key", "app-secret"])
        .current_dir(&dir);
    let run = Reporter::spawn(&deployment.scratch, "python", cmd);
    let step = |name: &str| -> Value {
        let report = run.next(name);
        assert_eq!(report["step"], name, "{report}");
        report
    };

    let established = step("established");
    assert_eq!(established["name"], CONNECTION_ESTABLISHED);
    let socket_id = established["socket_id"].as_str().expect("socket_id");
    assert!(socket_id.contains('.'), "{socket_id}");

    assert_eq!(step("subscribe_public")["ack"], json!({"ok": true}));
    assert_eq!(step("subscribe_private")["ack"], json!({"ok": true}));
    let presence = step("subscribe_presence");
    assert_eq!(
        presence["ack"]["presence"],
        json!({"count": 1, "ids": ["py-user"], "hash": {"py-user": {"name": "Py"}}}),
        "{presence}"
    );
    assert_eq!(step("subscribe_forged")["ack"]["error"]["code"], 4009);

    assert_eq!(step("trigger")["result"], json!({}));
    let events = step("events");
    let events = events["events"].as_array().expect("events");
    let channels: Vec<_> = events.iter().map(|e| &e[1][1]["channel"]).collect();
    assert_eq!(channels, [&json!("private-py"), &json!("py-public")]);
    for event in events {
        assert_eq!(
            (&event[0], &event[1][0]),
            (&json!("py-event"), &json!({"n": 1}))
        );
    }
    assert_eq!(
        events[0][1][1]["id"], events[1][1][1]["id"],
        "one id per published event"
    );

    let after = step("after_exclusion");
    assert_eq!(
        after["event"][0], "after",
        "the excluded event arrived: {after}"
    );

    let batch = step("batch");
    assert_eq!(batch["events"][0][0], "batch-1");
    assert_eq!(batch["events"][0][1][0], "one");
    assert_eq!(batch["events"][1][0], "batch-2");
    assert_eq!(batch["events"][1][1][0], json!({"two": 2}));

    assert_eq!(
        step("channels_info")["result"],
        json!({"channels": {"py-public": {}}})
    );
    assert_eq!(
        step("presence_channels_info")["result"],
        json!({"channels": {"presence-py": {"user_count": 1}}})
    );
    assert_eq!(
        step("channel_info")["result"],
        json!({"occupied": true, "subscription_count": 1})
    );
    assert_eq!(
        step("users_info")["result"],
        json!({"users": [{"id": "py-user"}]})
    );
    assert_eq!(step("wrong_secret")["error"], "PusherBadAuth");
    assert_eq!(step("transport")["transport"], "websocket");
}

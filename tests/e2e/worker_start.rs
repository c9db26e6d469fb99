//! An origin whose workers cannot start: it keeps retrying with back-off, logs
//! the reason once, and answers every connection at once with `503` and the
//! reason, so that nothing waits on a worker that will not come.

use std::time::{Duration, Instant};

use pushwire_tests::origin::{OriginOptions, pushwire_bin, test_app, test_workers};
use pushwire_tests::process::{children_of, signal_pid};
use pushwire_tests::{Origin, Scratch, http, wait};

/// A kind of request, and how to send it.
type Request<'a> = (&'static str, Box<dyn Fn() -> http::Response + 'a>);

/// The longest the master may take to answer a connection it has no worker
/// for (it used to hold each one for 10 s, then drop it without a word).
const ANSWER_WITHIN: Duration = Duration::from_secs(2);

/// The cause is real and passes every check made before listening: the binary
/// an origin runs is replaced under it (as `cargo install`, a package upgrade or
/// a rebuild of `target/` does: the old file is unlinked, a new one written at
/// its path), then its workers die (an OOM kill, a crash). The master starts a
/// worker by re-executing its own binary, and that file is gone, so no worker
/// can start, every time, for the same reason.
#[test]
fn workers_that_cannot_start_get_every_connection_a_503_with_the_reason() {
    let scratch = Scratch::new("worker-start");
    let binary = scratch.file("pushwire");
    std::fs::copy(pushwire_bin(), &binary).expect("copy the binary");
    let mut options = OriginOptions::embedded();
    options.binary = Some(binary.clone());
    let mut origin = Origin::start(&scratch, "origin", options);
    let workers = children_of(origin.pid());
    assert_eq!(workers.len(), test_workers(), "{workers:?}");

    std::fs::remove_file(&binary).expect("remove the binary");
    for worker in &workers {
        signal_pid(*worker, "KILL");
    }
    // Logged once the master has dropped the dead worker's routes.
    wait::until(
        "the master to see its workers die",
        Duration::from_secs(10),
        || {
            let log = origin.log();
            (log.matches("worker exited; restarting it").count() == workers.len()).then_some(())
        },
    );

    // Whatever the request, the master answers it itself, at once, with why.
    let addr = origin.addr;
    let upgrade = [
        ("Upgrade".to_owned(), "websocket".to_owned()),
        (
            "Sec-WebSocket-Key".to_owned(),
            "dGhlIHNhbXBsZSBub25jZQ==".to_owned(),
        ),
        ("Sec-WebSocket-Version".to_owned(), "13".to_owned()),
    ];
    let requests: [Request; 5] = [
        (
            "GET /health",
            Box::new(|| http::request(addr, "GET", "/health", b"")),
        ),
        (
            "GET / (the demo page)",
            Box::new(|| http::request(addr, "GET", "/", b"")),
        ),
        (
            "a long-polling handshake",
            Box::new(|| http::request(addr, "GET", "/socket.io/?EIO=4&transport=polling", b"")),
        ),
        (
            "a WebSocket upgrade",
            Box::new(|| {
                http::request_with_headers(
                    addr,
                    "GET",
                    "/socket.io/?EIO=4&transport=websocket",
                    b"",
                    &upgrade,
                )
            }),
        ),
        (
            "a trigger",
            Box::new(|| {
                let body = br#"{"name":"e","channels":["c"],"data":"{}"}"#;
                http::signed(addr, "POST", "/apps/1000001/events", body, &test_app())
            }),
        ),
    ];
    for (what, send) in &requests {
        let sent = Instant::now();
        let response = send();
        let took = sent.elapsed();
        assert_eq!(response.status, 503, "{what}: {response:?}");
        assert!(took < ANSWER_WITHIN, "{what} was answered after {took:?}");
        let error = response.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(
            error.starts_with("no worker is ready: cannot start a worker process: ")
                && error.contains(&*binary.to_string_lossy())
                && error.contains("No such file or directory"),
            "{what}: {error}"
        );
    }

    // The supervisors keep retrying, and the reason is logged once, at error
    // level; the retries only at debug.
    wait::until("three more failed starts", Duration::from_secs(10), || {
        (origin.log().matches("a worker still cannot start").count() >= 3).then_some(())
    });
    let log = origin.log();
    let errors: Vec<&str> = log.lines().filter(|l| l.contains(" ERROR ")).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("a worker cannot start: cannot start a worker process: "));

    // And the master is still in charge: it stops at once, cleanly.
    let status = origin.stop().expect("the master was running");
    assert!(status.success(), "master exit status {status:?}");
}

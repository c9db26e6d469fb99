//! The pure functions on every trigger's and every delivery's path:
//! `cargo bench -p pushwire-shared`. For review, not for asserts.

use pushwire_shared::delivery::client_data;
use pushwire_shared::signing::{self, RequestParts};
use pushwire_shared::trigger_request::{self, TriggerRoute};
use pushwire_shared::{AppList, Envelope, Limits, trigger};

fn main() {
    divan::main();
}

fn apps() -> AppList {
    AppList::parse("1000001:app-key:app-secret").expect("valid apps")
}

const BODY: &[u8] = br#"{"name":"price","channels":["ticker-BTC","ticker-ETH"],"data":"{\"p\":42.5,\"t\":1732000000}"}"#;
const PATH: &str = "/apps/1000001/events";
const NOW: u64 = 1_732_000_000;

#[divan::bench]
fn verify_signature(bencher: divan::Bencher) {
    let apps = apps();
    let app = apps.single().expect("one app");
    let query = signing::sign("POST", PATH, &[], BODY, app, NOW);
    bencher.bench(|| {
        let parts = RequestParts {
            method: "POST",
            path: PATH,
            query: &query,
            body: BODY,
        };
        signing::verify(divan::black_box(&parts), app, NOW).expect("valid")
    });
}

#[divan::bench]
fn parse_trigger_body() -> trigger::TriggerEvent {
    trigger::parse_event(divan::black_box(BODY), &Limits::default()).expect("valid")
}

#[divan::bench]
fn accept_and_build_envelopes(bencher: divan::Bencher) {
    let apps = apps();
    let query = signing::sign(
        "POST",
        PATH,
        &[],
        BODY,
        apps.single().expect("one app"),
        NOW,
    );
    bencher.bench(|| {
        let parts = RequestParts {
            method: "POST",
            path: PATH,
            query: &query,
            body: BODY,
        };
        let route = TriggerRoute::parse(PATH).expect("route");
        let accepted =
            trigger_request::accept(route, &parts, &apps, 1 << 20, NOW).expect("accepted");
        accepted.messages(NOW * 1000, || "id".to_owned())
    });
}

#[divan::bench]
fn decode_envelope_and_data(bencher: divan::Bencher) {
    let raw = r#"{"v":1,"id":"1a2b-3c-4","app":"1000001","channel":"ticker-BTC","event":"price","data":"{\"p\":42.5}","ts":1732000000000}"#;
    bencher.bench(|| {
        let envelope = Envelope::decode(divan::black_box(raw.as_bytes())).expect("valid");
        client_data(&envelope.data)
    });
}

//! The Workers entry point (wasm only): reads the request (its body up to the
//! request cap), runs [`handler`],
//! makes the bridge calls (the publish, sent again with the script's text if
//! Redis did not have it, or a directory read's steps) with a bounded wait
//! each, writes the reply.

use std::time::Duration;

use futures_util::StreamExt;
use futures_util::future::{Either, select};
use pushwire_shared::api_error::ApiError;
use pushwire_shared::directory;
use pushwire_shared::event_id::{IdIssuer, event_id};
use pushwire_shared::signing::RequestParts;
use worker::{
    AbortController, Context, Delay, Env, Error, Fetch, Headers, Method, Request, RequestInit,
    Response, Result, event, js_sys,
};

use crate::bridge::BridgeError;
use crate::config::EdgeConfig;
use crate::handler::{self, AfterPublish, BridgeRequest, Outcome, Reply};
use crate::query::{self, Query};

fn reply(reply: Reply) -> Result<Response> {
    if let Some(log) = &reply.log {
        worker::console_debug!("refused with {}: {log}", reply.status);
    }
    let headers = Headers::new();
    headers.set("Content-Type", "application/json")?;
    Ok(Response::from_bytes(reply.body.into_bytes())?
        .with_status(reply.status)
        .with_headers(headers))
}

/// Event ids at the edge ([`IdIssuer::Edge`], a random node), unique without coordination.
fn id_generator(now_ms: u64) -> impl FnMut() -> String {
    let node = (js_sys::Math::random() * 2f64.powi(48)) as u64;
    let mut n = 0u64;
    move || {
        n += 1;
        event_id(IdIssuer::Edge, now_ms, node, n)
    }
}

/// POSTs the transaction; `Err` when the bridge cannot be reached or is too slow.
async fn call_bridge(
    request: &BridgeRequest,
    timeout_ms: u32,
) -> std::result::Result<(u16, Vec<u8>), BridgeError> {
    // Aborted when the deadline wins, so a hung bridge does not hold the request.
    let controller = AbortController::default();
    let signal = controller.signal();
    let send = async {
        let headers = Headers::new();
        headers.set("Authorization", &format!("Bearer {}", request.token))?;
        headers.set("Content-Type", "application/json")?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_headers(headers)
            .with_body(Some(request.body.clone().into()));
        let outgoing = Request::new_with_init(&request.url, &init)?;
        let mut response = Fetch::Request(outgoing).send_with_signal(&signal).await?;
        let status = response.status_code();
        let body = response.bytes().await?;
        Ok::<_, Error>((status, body))
    };
    let send = std::pin::pin!(send);
    let deadline = Delay::from(Duration::from_millis(u64::from(timeout_ms)));
    match select(send, deadline).await {
        Either::Left((Ok(answer), _)) => Ok(answer),
        Either::Left((Err(e), _)) => Err(BridgeError::Unreachable(e.to_string())),
        Either::Right(_) => {
            controller.abort();
            Err(BridgeError::TimedOut(timeout_ms))
        }
    }
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> Result<Response> {
    // Secrets and vars are both plain text bindings; read either way.
    let config = EdgeConfig::from_vars(|name| {
        env.secret(name)
            .map(|s| s.to_string())
            .or_else(|_| env.var(name).map(|v| v.to_string()))
            .ok()
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => return reply(Reply::error(&ApiError::Misconfigured(e.to_string()))),
    };
    let method = req.method().to_string();
    let url = req.url()?;
    let body = match read_body(&mut req, config.max_request_bytes).await {
        Ok(body) => body,
        Err(e) => return reply(Reply::error(&e)),
    };
    let now_ms = js_sys::Date::now() as u64;
    let incoming = RequestParts {
        method: &method,
        path: url.path(),
        query: url.query().unwrap_or(""),
        body: &body,
    };
    match handler::handle(&config, incoming, now_ms, id_generator(now_ms)) {
        Outcome::Reply(answer) => reply(answer),
        Outcome::Publish(mut publish) => {
            let published = loop {
                let answer = call_bridge(&publish.request, config.bridge_timeout_ms).await;
                match handler::after_publish(&publish, answer) {
                    AfterPublish::Reply(reply) => break reply,
                    AfterPublish::SendScript(with_text) => publish = with_text,
                }
            };
            match &publish.then {
                // Published already: a failed read answers without the attributes
                // (a 503 would make the caller publish twice).
                Some(query) if published.status == 200 => {
                    let read = read_directory(&config, query, now_ms).await;
                    reply(if read.status == 200 { read } else { published })
                }
                _ => reply(published),
            }
        }
        Outcome::Query(query) => reply(read_directory(&config, &query, now_ms).await),
    }
}

/// Reads the request body, refusing one over `cap` bytes without holding more
/// than `cap` of it: a declared `Content-Length` over the cap before reading
/// anything, and a body that turns out longer at the first chunk past the cap.
async fn read_body(req: &mut Request, cap: usize) -> std::result::Result<Vec<u8>, ApiError> {
    let declared = req.headers().get("Content-Length").ok().flatten();
    if handler::declared_length_over_cap(declared.as_deref(), cap) {
        return Err(ApiError::BodyTooLarge(cap));
    }
    // The body is unread here, so the only refusal is "no body" (a GET).
    let Ok(chunks) = req.stream() else {
        return Ok(Vec::new());
    };
    let mut chunks = std::pin::pin!(chunks);
    let mut body = Vec::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| ApiError::BodyUnreadable)?;
        if body.len() + chunk.len() > cap {
            return Err(ApiError::BodyTooLarge(cap));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Runs a directory read through the bridge, one `/pipeline` request per step.
async fn read_directory(config: &EdgeConfig, query: &Query, now_ms: u64) -> Reply {
    let found = directory::run(
        &query.app,
        query.read.clone(),
        now_ms,
        |commands| async move {
            let request = query::pipeline_request(config, &commands);
            let answer = call_bridge(&request, config.bridge_timeout_ms).await;
            query::pipeline_replies(answer, commands.len())
        },
    )
    .await;
    let found = found.and_then(|read| read.map_err(BridgeError::from));
    query::render(found, &query.render)
}

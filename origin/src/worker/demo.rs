//! The live demo page at `/`: a stock Socket.IO client (served from here, no CDN)
//! that subscribes to a channel and lists events with their latency.
//!
//! The page is given the first app's id and public key, never its secret.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use pushwire_shared::AppList;

const PAGE: &str = include_str!("../../assets/demo.html");
/// socket.io-client 4.8.1, MIT licensed (header kept in the file).
const SOCKET_IO_CLIENT: &str = include_str!("../../assets/socket.io.min.js");

/// The page with `apps`' first id and key filled in.
pub(crate) fn render(apps: &AppList, uses_dev_app: bool) -> String {
    let app = apps.iter().next().expect("an AppList is never empty");
    let config = serde_json::json!({ "appId": app.id, "appKey": app.key, "devApp": uses_dev_app });
    // `<` escaped so no value can close the script element.
    let config = config.to_string().replace('<', "\\u003c");
    PAGE.replace("__PUSHWIRE_DEMO_CONFIG__", &config)
}

/// `GET /` and `GET /demo/socket.io.min.js`.
pub(crate) fn routes(apps: &AppList, uses_dev_app: bool) -> Router {
    let page = render(apps, uses_dev_app);
    Router::new()
        .route(
            "/",
            get(
                move || async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page) },
            ),
        )
        .route(
            "/demo/socket.io.min.js",
            get(|| async {
                (
                    [
                        (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
                        (header::CACHE_CONTROL, "max-age=3600"),
                    ],
                    SOCKET_IO_CLIENT,
                )
                    .into_response()
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_carries_the_key_but_never_the_secret() {
        let apps = AppList::parse("1000001:app-key:s3cr3t-</script>").unwrap();
        let page = render(&apps, false);
        assert!(page.contains(r#""appKey":"app-key""#));
        assert!(!page.contains("s3cr3t"));
        assert!(!page.contains("__PUSHWIRE_DEMO_CONFIG__"));
        let hostile = AppList::parse("1:</script><script>alert(1)//:s").unwrap();
        assert!(!render(&hostile, false).contains("</script><script>alert"));
    }
}

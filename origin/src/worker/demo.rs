//! The live demo page at `/`: a stock Socket.IO client (served from here, no CDN)
//! that subscribes to a channel and lists events with their latency.
//!
//! The page is given the first app's id and public key, never its secret, and
//! the command that triggers an event on it from the shell.

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use pushwire_shared::AppList;

const PAGE: &str = include_str!("../../assets/demo.html");
/// socket.io-client 4.8.1, MIT licensed (header kept in the file).
const SOCKET_IO_CLIENT: &str = include_str!("../../assets/socket.io.min.js");

/// The page with `apps`' first id and key filled in, and `command` as the
/// `pushwire` command it shows.
pub(crate) fn render(apps: &AppList, uses_dev_app: bool, command: &str) -> String {
    let app = apps.iter().next().expect("an AppList is never empty");
    let config = serde_json::json!({
        "appId": app.id,
        "appKey": app.key,
        "devApp": uses_dev_app,
        "command": command,
    });
    // `<` escaped so no value can close the script element.
    let config = config.to_string().replace('<', "\\u003c");
    PAGE.replace("__PUSHWIRE_DEMO_CONFIG__", &config)
}

/// How the page names the `pushwire` command. With the development app, whoever
/// reads the page is on this machine (it listens on loopback) and has likely just
/// run `cargo run --release`, which puts nothing on the PATH: the page gives this
/// very binary by its path, which works from any directory. Otherwise the page
/// may be public, and the command is `pushwire`, as installed.
fn command(uses_dev_app: bool) -> String {
    let path = uses_dev_app
        .then(std::env::current_exe)
        .and_then(Result::ok)
        .and_then(|path| path.to_str().map(str::to_owned));
    match path {
        // Linux names a binary replaced while it runs "<path> (deleted)"; a
        // new one is at its path.
        Some(path) => shell_quoted(path.strip_suffix(" (deleted)").unwrap_or(&path)),
        None => "pushwire".to_owned(),
    }
}

/// `word` as one POSIX shell word.
fn shell_quoted(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:@%,=".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `GET /` and `GET /demo/socket.io.min.js`.
pub(crate) fn routes(apps: &AppList, uses_dev_app: bool) -> Router {
    let page = render(apps, uses_dev_app, &command(uses_dev_app));
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
        let page = render(&apps, false, "pushwire");
        assert!(page.contains(r#""appKey":"app-key""#));
        assert!(!page.contains("s3cr3t"));
        assert!(!page.contains("__PUSHWIRE_DEMO_CONFIG__"));
        let hostile = AppList::parse("1:</script><script>alert(1)//:s").unwrap();
        assert!(!render(&hostile, false, "pushwire").contains("</script><script>alert"));
        let hostile_path = "/x/</script><script>alert(1)//";
        assert!(!render(&apps, true, hostile_path).contains("</script><script>alert"));
    }

    #[test]
    fn the_command_is_this_binary_with_the_dev_app_only() {
        assert_eq!(command(false), "pushwire");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(command(true), shell_quoted(exe.to_str().unwrap()));
        assert_eq!(
            shell_quoted("/home/me/pushwire/target/release/pushwire"),
            "/home/me/pushwire/target/release/pushwire"
        );
        assert_eq!(shell_quoted("/my dir/it's"), r"'/my dir/it'\''s'");
    }
}

//! Webhook URLs: `http://` and `https://` only, checked when the config is
//! read, and kept out of logs past their path.

use std::fmt;

use crate::channel::truncate;
use crate::webhook::WebhookConfigError;

/// The longest webhook URL accepted, in bytes: far beyond any real receiver's,
/// short enough that a pasted blob is caught.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// An `http://` or `https://` URL a webhook may be sent to, valid by construction.
///
/// Only the config names these, so any host is allowed, loopback and private
/// addresses included; what is refused is what no HTTP client should be handed:
/// other schemes, credentials in the URL (sent in the clear over `http://`, and
/// never as a header by the sender: put a token in the path or query instead),
/// a fragment (never sent), whitespace, control or non-ASCII characters (the
/// receiver would see them escaped differently than written).
///
/// `Debug` and `Display` leave the query string out, so it never reaches a log.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WebhookUrl {
    url: String,
    https: bool,
}

impl WebhookUrl {
    /// Validates `url`.
    ///
    /// ```
    /// use pushwire_shared::webhook::WebhookUrl;
    /// let url = WebhookUrl::new("https://hooks.example.com/pusher?token=s3cret").unwrap();
    /// assert!(url.is_https());
    /// assert_eq!(url.to_string(), "https://hooks.example.com/pusher?…");
    /// assert!(WebhookUrl::new("ftp://example.com/").is_err());
    /// assert!(WebhookUrl::new("http://user:pw@example.com/").is_err());
    /// ```
    pub fn new(url: &str) -> Result<Self, WebhookConfigError> {
        let invalid = |why| WebhookConfigError::InvalidUrl {
            url: truncate(&without_query(url), 64),
            why,
        };
        if url.len() > MAX_WEBHOOK_URL_LEN {
            return Err(invalid("is longer than 2048 bytes"));
        }
        if url.bytes().any(|b| !b.is_ascii_graphic()) {
            return Err(invalid(
                "holds whitespace, control or non-ASCII characters (percent-encode them)",
            ));
        }
        if !url.chars().all(is_url_char) {
            return Err(invalid(
                "holds a character URLs may not (one of \"<>\\^`{|}): percent-encode it",
            ));
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| invalid("is not an http:// or https:// URL"))?;
        let https = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(invalid("is not an http:// or https:// URL"));
        };
        if rest.contains('#') {
            return Err(invalid("has a fragment (#…), which is never sent"));
        }
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.contains('@') {
            return Err(invalid(
                "holds credentials (user@); put a token in the path or query instead",
            ));
        }
        let (host, port) =
            split_host_port(authority).ok_or_else(|| invalid("has a bad host or port"))?;
        if !valid_host(host) {
            return Err(invalid("has no valid host"));
        }
        if let Some(port) = port
            && !matches!(port.parse::<u16>(), Ok(1..))
        {
            return Err(invalid("has a bad port"));
        }
        Ok(WebhookUrl {
            url: url.to_owned(),
            https,
        })
    }

    /// The whole URL, query included: what the sender requests.
    pub fn as_str(&self) -> &str {
        &self.url
    }

    /// Whether the scheme is `https`.
    pub fn is_https(&self) -> bool {
        self.https
    }
}

/// The characters RFC 3986 allows in a URL: unreserved, reserved and `%`.
fn is_url_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(c)
}

/// `url` up to its query string, with `?…` in place of the query.
fn without_query(url: &str) -> String {
    match url.split_once('?') {
        Some((before, _)) => format!("{before}?…"),
        None => url.to_owned(),
    }
}

/// Splits `host[:port]` (the host may be a bracketed IPv6 address); `None` if
/// something follows a bracketed host that is not `:port`.
fn split_host_port(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(inner) = authority.strip_prefix('[') {
        let (v6, after) = inner.split_once(']')?;
        return match after {
            "" => Some((v6, None)).filter(|_| valid_ipv6(v6)),
            _ => Some((v6, Some(after.strip_prefix(':')?))).filter(|_| valid_ipv6(v6)),
        };
    }
    Some(match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    })
}

fn valid_ipv6(v6: &str) -> bool {
    !v6.is_empty()
        && v6
            .chars()
            .all(|c| c.is_ascii_hexdigit() || ":.".contains(c))
}

/// A name or IPv4 address: dot-separated labels of letters, digits, `-` and
/// `_`, with an optional final dot (a fully qualified name).
fn valid_host(host: &str) -> bool {
    // A bracketed IPv6 address was checked by `split_host_port`.
    let host = host.strip_suffix('.').unwrap_or(host);
    host.contains(':')
        || (!host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            }))
}

impl fmt::Display for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&without_query(&self.url))
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("WebhookUrl")
            .field(&without_query(&self.url))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url_error(url: &str) -> &'static str {
        match WebhookUrl::new(url) {
            Err(WebhookConfigError::InvalidUrl { why, .. }) => why,
            other => panic!("{url:?} was not refused: {other:?}"),
        }
    }

    #[test]
    fn http_and_https_urls_of_every_host_form_are_accepted() {
        for url in [
            "http://127.0.0.1:9000/hooks",
            "HTTPS://hooks.example.com",
            "https://hooks.example.com/a/b?token=x&y=%20z",
            "http://[::1]:8080/",
            "http://[2001:db8::1]/p",
            "http://localhost?x",
            "http://my_host.internal:65535/",
            "http://hooks.example.com./",
        ] {
            assert!(WebhookUrl::new(url).is_ok(), "{url}");
        }
        assert!(!WebhookUrl::new("http://a/").unwrap().is_https());
        assert!(WebhookUrl::new("HTTPS://a/").unwrap().is_https());
    }

    #[test]
    fn unusable_urls_are_refused_with_the_reason() {
        for url in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "example.com/x",
            "//x",
        ] {
            assert_eq!(url_error(url), "is not an http:// or https:// URL", "{url}");
        }
        assert!(url_error("http://u:p@example.com/").contains("credentials"));
        assert!(url_error("http://example.com/#top").contains("fragment"));
        assert!(url_error(" http://example.com/").contains("whitespace"));
        assert!(url_error("http://exämple.com/").contains("non-ASCII"));
        assert!(url_error("http://example.com/a\tb").contains("control"));
        for bad in ['"', '<', '>', '\\', '^', '`', '{', '|', '}'] {
            let url = format!("http://example.com/a{bad}b");
            assert!(url_error(&url).contains("percent-encode"), "{url}");
        }
        for url in [
            "http://",
            "http:///path",
            "http://a..b/",
            "http://a!b/",
            "http://[]/",
        ] {
            assert!(WebhookUrl::new(url).is_err(), "{url}");
        }
        for url in [
            "http://a:0/",
            "http://a:65536/",
            "http://a:/",
            "http://a:x/",
            "http://[::1]x/",
        ] {
            assert!(WebhookUrl::new(url).is_err(), "{url}");
        }
        let long = format!("http://a/{}", "x".repeat(MAX_WEBHOOK_URL_LEN));
        assert!(url_error(&long).contains("2048"));
    }

    #[test]
    fn the_query_string_stays_out_of_errors_and_logs() {
        let error = WebhookUrl::new("gopher://h/p?token=s3cret").unwrap_err();
        assert!(!error.to_string().contains("s3cret"), "{error}");
        let url = WebhookUrl::new("http://h/p?token=s3cret").unwrap();
        assert!(!format!("{url} {url:?}").contains("s3cret"));
        assert_eq!(url.as_str(), "http://h/p?token=s3cret");
    }
}

//! [`AllowedOrigins`]: the web origins whose browser pages may connect (the
//! `allowed_origins` setting; the worker's CORS layer applies it).

/// The web origins whose pages may connect.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub enum AllowedOrigins {
    /// Any page (`*`, the default, as for Pusher): the request's origin is echoed,
    /// without `Access-Control-Allow-Credentials`.
    #[default]
    Any,
    /// Only these origins (`scheme://host[:port]`, compared without regard to
    /// case); they may also send credentials (`withCredentials: true`).
    Listed(Vec<String>),
}

/// Why an allowed-origins setting is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid allowed origin {origin:?}: {reason}")]
pub struct AllowedOriginsError {
    origin: String,
    reason: &'static str,
}

impl AllowedOrigins {
    /// Parses a comma-separated list; `*` anywhere in it allows any origin.
    pub fn parse(list: &str) -> Result<Self, AllowedOriginsError> {
        Self::from_entries(list.split(','))
    }

    fn from_entries<'a>(
        entries: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, AllowedOriginsError> {
        let mut origins = Vec::new();
        for entry in entries.into_iter().map(str::trim) {
            if entry == "*" {
                return Ok(AllowedOrigins::Any);
            }
            origins.push(validate(entry)?.to_ascii_lowercase());
        }
        if origins.is_empty() {
            return Err(AllowedOriginsError {
                origin: String::new(),
                reason: "the list is empty (use * to allow any origin)",
            });
        }
        Ok(AllowedOrigins::Listed(origins))
    }

    /// Whether a page of `origin` (an `Origin` header's value) may connect.
    pub fn allows(&self, origin: &str) -> bool {
        match self {
            AllowedOrigins::Any => true,
            AllowedOrigins::Listed(list) => list.iter().any(|o| o.eq_ignore_ascii_case(origin)),
        }
    }
}

/// An origin is `scheme://host[:port]` with nothing after it, or `null` (the
/// origin browsers send for sandboxed frames and local files).
fn validate(entry: &str) -> Result<&str, AllowedOriginsError> {
    let invalid = |reason| AllowedOriginsError {
        origin: entry.to_owned(),
        reason,
    };
    if entry.is_empty() {
        return Err(invalid("empty entry"));
    }
    if entry == "null" {
        return Ok(entry);
    }
    let (scheme, host) = entry
        .split_once("://")
        .ok_or_else(|| invalid("expected scheme://host[:port]"))?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    {
        return Err(invalid("bad scheme"));
    }
    if host.is_empty() || host.contains(['/', '?', '#', ' ', '*']) {
        return Err(invalid(
            "an origin has no path, query or wildcard (e.g. https://app.example.com)",
        ));
    }
    Ok(entry)
}

impl TryFrom<Vec<String>> for AllowedOrigins {
    type Error = AllowedOriginsError;

    fn try_from(entries: Vec<String>) -> Result<Self, Self::Error> {
        Self::from_entries(entries.iter().map(String::as_str))
    }
}

impl From<AllowedOrigins> for Vec<String> {
    fn from(origins: AllowedOrigins) -> Self {
        match origins {
            AllowedOrigins::Any => vec!["*".to_owned()],
            AllowedOrigins::Listed(list) => list,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_allows_its_origins_only() {
        let list = AllowedOrigins::parse("https://app.example.com, http://localhost:8080").unwrap();
        assert!(list.allows("https://app.example.com"));
        assert!(!list.allows("https://evil.example"));
        assert!(
            AllowedOrigins::parse("*")
                .unwrap()
                .allows("https://anything.example")
        );
        assert!(AllowedOrigins::parse("https://app.example.com/path").is_err());
    }

    #[test]
    fn lists_parse_and_compare_without_case() {
        let list = AllowedOrigins::parse(" https://App.example.com ,null").unwrap();
        assert_eq!(
            list,
            AllowedOrigins::Listed(vec!["https://app.example.com".into(), "null".into()])
        );
        assert!(list.allows("https://APP.example.com"));
        assert!(list.allows("null"));
        assert!(!list.allows("http://app.example.com"));
        assert_eq!(
            AllowedOrigins::parse("https://a.example,*").unwrap(),
            AllowedOrigins::Any
        );
        for bad in [
            "",
            "app.example.com",
            "https://",
            "https://a.example/",
            "https://*.example",
            "ht tp://a",
        ] {
            assert!(AllowedOrigins::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn the_setting_round_trips_through_json() {
        for origins in [
            AllowedOrigins::Any,
            AllowedOrigins::Listed(vec!["https://a.example".into()]),
        ] {
            let json = serde_json::to_string(&origins).unwrap();
            assert_eq!(
                serde_json::from_str::<AllowedOrigins>(&json).unwrap(),
                origins
            );
        }
        assert!(serde_json::from_str::<AllowedOrigins>(r#"["a.example"]"#).is_err());
    }
}

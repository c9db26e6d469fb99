//! Applications: `{id, key, secret}` credentials and their limits.
//!
//! Both halves read the same `PUSHWIRE_APPS` value, `id:key:secret[,id:key:secret…]`;
//! the origin's config file lists apps as objects. Every source goes through
//! [`AppList::new`], so every app is held to the same rules.

use std::fmt;

/// A secret shorter than this many bytes is accepted but worth a warning:
/// it can be guessed. Pusher issues 20-character secrets.
pub const MIN_SECRET_LEN: usize = 16;

/// Per-app limits. The defaults are Pusher's, save the two per-socket
/// subscription limits, which Pusher does not publish: 100 channels, like a
/// handshake's channel list and the channels of one event, and 10 subscribes a
/// second after a burst of that many.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest `data`, in bytes of the string (or of the value's JSON text).
    pub max_data_bytes: usize,
    /// Most channels one event may go to.
    pub max_channels_per_event: usize,
    /// Most events in one `batch_events` request.
    pub max_batch_events: usize,
    /// Most distinct members of one presence channel.
    pub max_presence_members: usize,
    /// Largest `user_info` of a presence member, in bytes of its JSON text.
    pub max_presence_user_info_bytes: usize,
    /// Client events (`client-*`) one socket may send per second.
    pub max_client_events_per_sec: u32,
    /// Most channels one socket may be on at once (handshake channels included).
    pub max_channels_per_socket: usize,
    /// Subscribes one socket may make per second, on average; bursts of up to
    /// `max_channels_per_socket` pass at once.
    pub max_subscribes_per_sec: u32,
    /// Most connections (Socket.IO and Pusher protocol) of the app one origin
    /// holds, split evenly over its workers; 0, the default, for no cap.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_data_bytes: 10 * 1024,
            max_channels_per_event: 100,
            max_batch_events: 10,
            max_presence_members: 100,
            max_presence_user_info_bytes: 1024,
            max_client_events_per_sec: 10,
            max_channels_per_socket: 100,
            max_subscribes_per_sec: 10,
            max_connections: 0,
        }
    }
}

/// One application's credentials.
///
/// `Debug` redacts the secret so it never reaches a log.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct App {
    /// The app id in `/apps/{id}/…` paths; numeric by convention.
    pub id: String,
    /// The public key clients and signed requests name.
    pub key: String,
    /// The HMAC secret shared with the app's backend.
    pub secret: String,
    /// Content limits applied to this app's triggers.
    #[serde(default)]
    pub limits: Limits,
}

impl App {
    /// Whether the secret is shorter than [`MIN_SECRET_LEN`]: accepted, but
    /// the server should say so at start-up.
    ///
    /// ```
    /// use pushwire_shared::AppList;
    /// let apps = AppList::parse("1:k:short,2:k2:0123456789abcdef0123").unwrap();
    /// let short: Vec<&str> = apps.iter().filter(|a| a.has_short_secret()).map(|a| a.id.as_str()).collect();
    /// assert_eq!(short, ["1"]);
    /// ```
    pub fn has_short_secret(&self) -> bool {
        self.secret.len() < MIN_SECRET_LEN
    }

    /// Checks the rules every app obeys, wherever it was configured; `index`
    /// (1-based) names it in the error.
    fn validate(&self, index: usize) -> Result<(), AppsParseError> {
        // The id is a segment of Redis keys (`…:{id}:…`) and of `/apps/{id}/…`
        // paths: a `:` or `/` in it would make two apps' keys or routes meet.
        let id_is_valid = !self.id.is_empty()
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !id_is_valid {
            return Err(AppsParseError::InvalidId {
                index,
                id: self.id.clone(),
            });
        }
        if self.key.is_empty() {
            return Err(AppsParseError::EmptyKey { index });
        }
        // An empty secret signs every request with an empty HMAC key: anyone
        // can compute it.
        if self.secret.is_empty() {
            return Err(AppsParseError::EmptySecret { index });
        }
        Ok(())
    }
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("id", &self.id)
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .field("limits", &self.limits)
            .finish()
    }
}

/// Why a `PUSHWIRE_APPS` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppsParseError {
    /// An entry is not `id:key:secret`.
    #[error("app entry #{index} is not of the form id:key:secret")]
    Malformed {
        /// 1-based position of the entry.
        index: usize,
    },
    /// An id or key is used twice.
    #[error("app {field} {value:?} is configured twice")]
    Duplicate {
        /// `"id"` or `"key"`.
        field: &'static str,
        /// The repeated value.
        value: String,
    },
    /// No app at all.
    #[error("no app configured")]
    Empty,
    /// An id is not `[A-Za-z0-9_-]+`.
    #[error("app #{index}: id {id:?} must be letters, digits, '_' or '-'")]
    InvalidId {
        /// 1-based position of the app.
        index: usize,
        /// The id given.
        id: String,
    },
    /// A key is empty.
    #[error("app #{index}: the key is empty")]
    EmptyKey {
        /// 1-based position of the app.
        index: usize,
    },
    /// A secret is empty (anyone could sign with it).
    #[error("app #{index}: the secret is empty")]
    EmptySecret {
        /// 1-based position of the app.
        index: usize,
    },
}

/// The configured apps, looked up by id or by key.
///
/// Serialises as a list of apps; deserialising validates like [`AppList::new`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "Vec<App>", into = "Vec<App>")]
pub struct AppList {
    apps: Vec<App>,
}

impl AppList {
    /// Builds the list, refusing an empty list, an id that is not
    /// `[A-Za-z0-9_-]+`, an empty key or secret, and duplicate ids or keys.
    pub fn new(apps: Vec<App>) -> Result<Self, AppsParseError> {
        if apps.is_empty() {
            return Err(AppsParseError::Empty);
        }
        for (i, app) in apps.iter().enumerate() {
            app.validate(i + 1)?;
            for other in &apps[..i] {
                if other.id == app.id {
                    return Err(AppsParseError::Duplicate {
                        field: "id",
                        value: app.id.clone(),
                    });
                }
                if other.key == app.key {
                    return Err(AppsParseError::Duplicate {
                        field: "key",
                        value: app.key.clone(),
                    });
                }
            }
        }
        Ok(AppList { apps })
    }

    /// Parses `id:key:secret[,id:key:secret…]`; surrounding whitespace is ignored.
    /// The secret is everything after the second colon. Each app is then
    /// checked as [`AppList::new`] checks it.
    ///
    /// ```
    /// use pushwire_shared::{AppList, AppsParseError};
    /// let apps = AppList::parse("1000001:app-key:app-secret").unwrap();
    /// assert_eq!(apps.by_id("1000001").unwrap().key, "app-key");
    /// assert!(AppList::parse("1000001:app-key").is_err());
    /// assert_eq!(AppList::parse("1:k:"), Err(AppsParseError::EmptySecret { index: 1 }));
    /// ```
    pub fn parse(value: &str) -> Result<Self, AppsParseError> {
        let apps = value
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .enumerate()
            .map(|(i, entry)| {
                let mut parts = entry.splitn(3, ':');
                match (parts.next(), parts.next(), parts.next()) {
                    (Some(id), Some(key), Some(secret)) => Ok(App {
                        id: id.to_owned(),
                        key: key.to_owned(),
                        secret: secret.to_owned(),
                        limits: Limits::default(),
                    }),
                    _ => Err(AppsParseError::Malformed { index: i + 1 }),
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        AppList::new(apps)
    }

    /// The app with this id.
    pub fn by_id(&self, id: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.id == id)
    }

    /// The app with this public key.
    pub fn by_key(&self, key: &str) -> Option<&App> {
        self.apps.iter().find(|a| a.key == key)
    }

    /// The only app, when exactly one is configured.
    pub fn single(&self) -> Option<&App> {
        match self.apps.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// All apps, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = &App> {
        self.apps.iter()
    }
}

impl TryFrom<Vec<App>> for AppList {
    type Error = AppsParseError;

    fn try_from(apps: Vec<App>) -> Result<Self, Self::Error> {
        AppList::new(apps)
    }
}

impl From<AppList> for Vec<App> {
    fn from(list: AppList) -> Self {
        list.apps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_several_apps_and_keeps_colons_in_secrets() {
        let apps = AppList::parse(" 1:k1:s1 , 2:k2:s:2 ,").unwrap();
        assert_eq!(apps.iter().count(), 2);
        assert_eq!(apps.by_key("k2").unwrap().secret, "s:2");
        assert!(apps.single().is_none());
    }

    #[test]
    fn refuses_bad_lists() {
        assert_eq!(AppList::parse(""), Err(AppsParseError::Empty));
        assert_eq!(
            AppList::parse("1:k:s,2:s"),
            Err(AppsParseError::Malformed { index: 2 })
        );
        assert_eq!(
            AppList::parse("1:k:s,2::s"),
            Err(AppsParseError::EmptyKey { index: 2 })
        );
        assert!(matches!(
            AppList::parse("1:k:s,1:k2:s"),
            Err(AppsParseError::Duplicate { field: "id", .. })
        ));
        assert!(matches!(
            AppList::parse("1:k:s,2:k:s"),
            Err(AppsParseError::Duplicate { field: "key", .. })
        ));
    }

    #[test]
    fn every_source_gets_the_same_app_rules() {
        let from_json = |app: &str| serde_json::from_str::<AppList>(&format!("[{app}]"));
        // An empty secret: anyone could sign.
        assert_eq!(
            AppList::parse("1:k:"),
            Err(AppsParseError::EmptySecret { index: 1 })
        );
        let err = from_json(r#"{"id":"1","key":"k","secret":""}"#).unwrap_err();
        assert!(
            err.to_string().contains("app #1: the secret is empty"),
            "{err}"
        );
        let err = from_json(r#"{"id":"1","key":"","secret":"s"}"#).unwrap_err();
        assert!(
            err.to_string().contains("app #1: the key is empty"),
            "{err}"
        );
        // Ids are key and path segments.
        for id in ["a:b", "a/b", "a b", "", "é", "a\u{0}"] {
            let app = serde_json::json!({"id": id, "key": "k", "secret": "s"}).to_string();
            assert!(
                matches!(
                    from_json(&app),
                    Err(e) if e.to_string().contains("must be letters, digits")
                ),
                "{id:?}"
            );
        }
        assert_eq!(
            AppList::parse("a/b:k:s"),
            Err(AppsParseError::InvalidId {
                index: 1,
                id: "a/b".into()
            })
        );
        assert!(AppList::parse("1000001:k:s,my_app-2:k2:s").is_ok());
    }

    #[test]
    fn short_secrets_are_reported_not_refused() {
        let apps = AppList::parse("1:k:app-secret,2:k2:0123456789abcdef").unwrap();
        let short: Vec<&str> = apps
            .iter()
            .filter(|a| a.has_short_secret())
            .map(|a| a.id.as_str())
            .collect();
        assert_eq!(short, ["1"]);
    }

    #[test]
    fn serde_round_trip_validates() {
        let apps = AppList::parse("1:k:s").unwrap();
        let json = serde_json::to_string(&apps).unwrap();
        assert_eq!(serde_json::from_str::<AppList>(&json).unwrap(), apps);
        let dup = r#"[{"id":"1","key":"k","secret":"s"},{"id":"1","key":"k2","secret":"s"}]"#;
        assert!(serde_json::from_str::<AppList>(dup).is_err());
    }

    #[test]
    fn debug_redacts_the_secret() {
        let apps = AppList::parse("1:k:topsecret").unwrap();
        assert!(!format!("{apps:?}").contains("topsecret"));
    }
}

//! Which webhook endpoints each app has: the config file's `webhooks` (per
//! app, with event types and a channel prefix), and the one URL a flag, a
//! variable or the file's `webhook_url` gives every app for every event.

use std::collections::BTreeMap;

use pushwire_shared::AppList;
use pushwire_shared::webhook::WebhookEndpoint;

use super::ConfigError;

/// Endpoints by app id.
pub(crate) type Webhooks = BTreeMap<String, Vec<WebhookEndpoint>>;

/// Resolves `per_app` (the file's `webhooks`) and `url` (with where it was
/// given) against the served `apps`, refusing what could not be delivered.
pub(super) fn resolve(
    apps: &AppList,
    url: Option<(String, String)>,
    per_app: Option<Webhooks>,
) -> Result<Webhooks, ConfigError> {
    let in_file = "webhooks in the config file";
    let refuse = |setting: &str, why: String| ConfigError::Webhooks {
        setting: setting.to_owned(),
        why,
    };
    let mut webhooks = per_app.unwrap_or_default();
    if let Some(id) = webhooks
        .keys()
        .find(|id| apps.iter().all(|app| &app.id != *id))
    {
        return Err(refuse(in_file, format!("no app has the id {id:?}")));
    }
    if let Some((url, setting)) = &url {
        let endpoint =
            WebhookEndpoint::all_events(url).map_err(|e| refuse(setting, e.to_string()))?;
        for app in apps.iter() {
            webhooks
                .entry(app.id.clone())
                .or_default()
                .push(endpoint.clone());
        }
    }
    webhooks.retain(|_, endpoints| !endpoints.is_empty());
    Ok(webhooks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apps() -> AppList {
        AppList::parse("1:key:0123456789abcdef,2:key2:0123456789abcdef").unwrap()
    }

    fn url(u: &str) -> Option<(String, String)> {
        Some((u.into(), "--webhook-url / PUSHWIRE_WEBHOOK_URL".into()))
    }

    #[test]
    fn one_url_reaches_every_app_and_the_file_adds_per_app_endpoints() {
        let file: Webhooks = serde_json::from_str(
            r#"{"2": [{"url": "http://127.0.0.1:9/hooks", "events": ["member_added"], "channel_prefix": "presence-"}]}"#,
        )
        .unwrap();
        let webhooks = resolve(&apps(), url("http://127.0.0.1:8/all"), Some(file)).unwrap();
        assert_eq!(webhooks["1"].len(), 1);
        assert_eq!(webhooks["2"].len(), 2);
        assert!(resolve(&apps(), None, None).unwrap().is_empty());
        let https = resolve(&apps(), url("https://hooks.example.com/p"), None).unwrap();
        assert!(https["1"][0].url().is_https());
    }

    #[test]
    fn what_could_not_be_delivered_is_refused_naming_the_setting() {
        let cases = [
            (
                url("ftp://x/"),
                None,
                "--webhook-url / PUSHWIRE_WEBHOOK_URL: ",
            ),
            (
                None,
                Some(serde_json::from_str(r#"{"9": []}"#).unwrap()),
                "webhooks in the config file: no app has the id \"9\"",
            ),
        ];
        for (url, file, says) in cases {
            let err = resolve(&apps(), url, file).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
    }
}

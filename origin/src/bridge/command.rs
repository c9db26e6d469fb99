//! `RedisCommand`: one command of an Upstash REST request, parsed from its JSON
//! array and checked against the allow-list.

use pushwire_shared::keys::KeySpace;
use pushwire_shared::publish_check;
use pushwire_shared::publishing::{self, PubSubMode};
use serde_json::Value;

use super::BridgeError;

/// The commands allowed when none are configured: what the edge worker needs.
/// `EVAL` and `EVALSHA` are only ever allowed for pushwire's own publish script
/// ([`pushwire_shared::publishing::PUBLISH_SCRIPT`], by text or by digest), and
/// the [`READ_COMMANDS`] only on pushwire's own keys, and `PUBLISH` only to
/// pushwire's pub/sub channels ([`KeySpace::parse_channel`]), whatever the list says.
pub(crate) const DEFAULT_ALLOWED: [&str; 8] = [
    "PING",
    "PUBLISH",
    "EVAL",
    "EVALSHA",
    "ZRANGEBYSCORE",
    "HGET",
    "HGETALL",
    "HLEN",
];

/// Reads the edge makes for channel queries (`pushwire_shared::directory`);
/// their key must be one of pushwire's ([`KeySpace::owns`]).
pub(super) const READ_COMMANDS: [&str; 4] = ["ZRANGEBYSCORE", "HGET", "HGETALL", "HLEN"];

/// A validated command: an allowed name (upper-case) and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RedisCommand {
    /// The command name, upper-case.
    pub name: String,
    /// The arguments, as Redis receives them.
    pub args: Vec<String>,
}

impl RedisCommand {
    /// Parses `["PUBLISH", "pushwire:v2:{1:news}:ch", "payload"]` (names in any case; numbers and
    /// booleans become their text) and checks the name against `allowed`.
    pub(crate) fn parse(value: &Value, allowed: &[String]) -> Result<Self, BridgeError> {
        let Value::Array(items) = value else {
            return Err(BridgeError::BadRequest(
                "a command must be a JSON array like [\"PUBLISH\", \"channel\", \"message\"]"
                    .into(),
            ));
        };
        let mut parts = items.iter().map(|item| match item {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            other => Err(BridgeError::BadRequest(format!(
                "command arguments must be strings or numbers, not {other}"
            ))),
        });
        let name = parts
            .next()
            .ok_or_else(|| BridgeError::BadRequest("empty command".into()))??
            .to_ascii_uppercase();
        // EVALSHA of the publish script is the same operation as its EVAL, so a
        // list written before the edge used digests keeps working.
        let listed = |n: &str| allowed.iter().any(|a| a == n);
        if !(listed(&name) || name == "EVALSHA" && listed("EVAL")) {
            return Err(BridgeError::NotAllowed(name));
        }
        let args: Vec<String> = parts.collect::<Result<_, _>>()?;
        if name == "EVAL" || name == "EVALSHA" {
            let whole: Vec<String> = std::iter::once(name.clone())
                .chain(args.iter().cloned())
                .collect();
            if let Err(why) =
                publish_check::check_publish_command(&whole, Some(crate::clock::now_ms()))
            {
                return Err(BridgeError::NotAllowed(format!("{name} with {why}")));
            }
        }
        // Only pushwire's own pub/sub channels: a token is for triggering
        // pushwire, not for reaching every subscriber of the Redis it fronts.
        if name == "PUBLISH"
            && args
                .first()
                .is_none_or(|channel| KeySpace::DEFAULT.parse_channel(channel).is_none())
        {
            return Err(BridgeError::NotAllowed(
                "PUBLISH outside pushwire's channels".into(),
            ));
        }
        if READ_COMMANDS.contains(&name.as_str())
            && !args.first().is_some_and(|key| KeySpace::DEFAULT.owns(key))
        {
            return Err(BridgeError::NotAllowed(format!(
                "{name} outside pushwire's keys"
            )));
        }
        Ok(RedisCommand { name, args })
    }

    /// Parses a pipeline or transaction body: an array of commands. All must be
    /// valid and allowed; otherwise none runs.
    pub(crate) fn parse_many(value: &Value, allowed: &[String]) -> Result<Vec<Self>, BridgeError> {
        match value {
            Value::Array(commands) if !commands.is_empty() => {
                commands.iter().map(|c| Self::parse(c, allowed)).collect()
            }
            Value::Array(_) => Err(BridgeError::BadRequest("empty pipeline".into())),
            _ => Err(BridgeError::BadRequest(
                "a pipeline must be a JSON array of commands".into(),
            )),
        }
    }

    /// The command for the Redis client.
    /// The command as it must run where events travel by `mode`: on a Redis
    /// Cluster (sharded pub/sub) a publish, bare or by the publish script,
    /// becomes `SPUBLISH`, since subscribers there listen with `SSUBSCRIBE`.
    pub(crate) fn for_mode(self, mode: PubSubMode) -> Self {
        if mode == PubSubMode::Classic {
            return self;
        }
        if self.name == "PUBLISH" {
            return RedisCommand {
                name: mode.publish_command().to_owned(),
                args: self.args,
            };
        }
        let mut words = Vec::with_capacity(1 + self.args.len());
        words.push(self.name);
        words.extend(self.args);
        let mut words = publishing::with_pubsub_mode(words, mode).into_iter();
        let name = words.next().unwrap_or_default();
        RedisCommand {
            name,
            args: words.collect(),
        }
    }

    pub(crate) fn to_cmd(&self) -> redis::Cmd {
        let mut cmd = redis::cmd(&self.name);
        for arg in &self.args {
            cmd.arg(arg);
        }
        cmd
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pushwire_shared::publishing::ScriptRef;
    use serde_json::json;

    fn allowed() -> Vec<String> {
        DEFAULT_ALLOWED.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn parses_and_upper_cases() {
        let channel = "pushwire:v2:{1:c}:ch";
        let cmd = RedisCommand::parse(&json!(["publish", channel, 5]), &allowed()).unwrap();
        assert_eq!(
            cmd,
            RedisCommand {
                name: "PUBLISH".into(),
                args: vec![channel.into(), "5".into()]
            }
        );
        for elsewhere in [
            json!(["PUBLISH", "victim:orders", "x"]),
            json!(["PUBLISH", "pushwire:v2:{1:c}:hist", "x"]),
            json!(["PUBLISH", "pushwire:v2:{1:a b}:ch", "x"]),
            json!(["PUBLISH"]),
        ] {
            assert!(
                matches!(
                    RedisCommand::parse(&elsewhere, &allowed()),
                    Err(BridgeError::NotAllowed(_))
                ),
                "{elsewhere}"
            );
        }
    }

    #[test]
    fn refuses_what_is_not_allowed_or_malformed() {
        assert!(
            matches!(RedisCommand::parse(&json!(["set", "k", "v"]), &allowed()), Err(BridgeError::NotAllowed(n)) if n == "SET")
        );
        for bad in [
            json!([]),
            json!("PING"),
            json!([["PING"]]),
            json!(["PUBLISH", null]),
            json!([1]),
        ] {
            assert!(RedisCommand::parse(&bad, &allowed()).is_err(), "{bad}");
        }
        assert!(RedisCommand::parse_many(&json!([["PING"], ["FLUSHALL"]]), &allowed()).is_err());
        assert!(RedisCommand::parse_many(&json!([]), &allowed()).is_err());
        assert!(matches!(
            RedisCommand::parse(
                &json!(["EVAL", "return redis.call('FLUSHALL')", 0]),
                &allowed()
            ),
            Err(BridgeError::NotAllowed(_))
        ));
        assert!(matches!(
            RedisCommand::parse(&json!(["HGETALL", "users:passwords"]), &allowed()),
            Err(BridgeError::NotAllowed(_))
        ));
        assert!(
            RedisCommand::parse(
                &json!([
                    "HLEN",
                    KeySpace::DEFAULT.members(
                        "1",
                        &pushwire_shared::ChannelName::new("presence-a").unwrap()
                    )
                ]),
                &allowed()
            )
            .is_ok()
        );
        for script in [ScriptRef::Digest, ScriptRef::Text] {
            let publish = news_publish(script, 0);
            assert!(RedisCommand::parse(&json!(publish), &allowed()).is_ok());
        }
        let eval_only: Vec<String> = vec!["EVAL".into()];
        let by_digest = news_publish(ScriptRef::Digest, 0);
        assert!(RedisCommand::parse(&json!(by_digest), &eval_only).is_ok());
        let other_digest = "e0e1f9fabfc9d4800c877a703b823ac0578ff8db";
        assert!(matches!(
            RedisCommand::parse(&json!(["EVALSHA", other_digest, 0]), &allowed()),
            Err(BridgeError::NotAllowed(_))
        ));
        assert_eq!(
            RedisCommand::parse_many(&json!([["PING"], ["ping"]]), &allowed())
                .unwrap()
                .len(),
            2
        );
    }
    /// The publish command the edge sends for one event on app 1000001's `news`.
    fn news_publish(script: ScriptRef, now: u64) -> Vec<String> {
        use pushwire_shared::ChannelName;
        use pushwire_shared::history::PublishMessage;
        let channel = ChannelName::new("news").unwrap();
        let message = PublishMessage {
            channel: KeySpace::DEFAULT.channel("1000001", &channel),
            history_key: KeySpace::DEFAULT.history("1000001", &channel),
            epoch_key: KeySpace::DEFAULT.epoch("1000001", &channel),
            envelope: r#"{"event":"e"}"#.into(),
        };
        let mut commands = publishing::publish_commands(
            script,
            &Default::default(),
            now,
            "k3x",
            std::slice::from_ref(&message),
        );
        commands.remove(0)
    }

    #[test]
    fn on_a_cluster_publishes_become_sharded() {
        let bare =
            RedisCommand::parse(&json!(["publish", "pushwire:v2:{1:c}:ch", "x"]), &allowed())
                .unwrap();
        let script =
            RedisCommand::parse(&json!(news_publish(ScriptRef::Digest, 0)), &allowed()).unwrap();
        assert_eq!(bare.clone().for_mode(PubSubMode::Classic), bare);
        assert_eq!(script.clone().for_mode(PubSubMode::Classic), script);
        assert_eq!(bare.for_mode(PubSubMode::Sharded).name, "SPUBLISH");
        let sharded = script.clone().for_mode(PubSubMode::Sharded);
        assert_eq!(
            (sharded.name.as_str(), &sharded.args[8]),
            ("EVALSHA", &"SPUBLISH".to_owned())
        );
        assert_eq!(sharded.args.len(), script.args.len());
        let ping = RedisCommand::parse(&json!(["PING"]), &allowed()).unwrap();
        assert_eq!(ping.clone().for_mode(PubSubMode::Sharded), ping);
    }

    #[test]
    fn a_publish_script_call_with_bent_arguments_is_not_allowed() {
        let edge_shaped = news_publish(ScriptRef::Digest, crate::clock::now_ms());
        assert!(RedisCommand::parse(&json!(edge_shaped), &allowed()).is_ok());
        // (index in the command, value): a foreign stream, a foreign channel, a
        // ttl of years, a min id wiping the history, an epoch breaking
        // positions, a command other than a publish.
        for (index, value) in [
            (4, "victim:orders"),
            (10, "victim:orders"),
            (7, "999999999999999"),
            (6, "99999999999999"),
            (8, "x\"}"),
            (9, "DEL"),
        ] {
            let mut bent = edge_shaped.clone();
            bent[index] = value.into();
            let refused = RedisCommand::parse(&json!(bent), &allowed());
            assert!(
                matches!(&refused, Err(BridgeError::NotAllowed(why)) if why.starts_with("EVALSHA with")),
                "{index} = {value}: {refused:?}"
            );
            let text = refused.unwrap_err().to_string();
            assert!(text.contains("is not allowed by this bridge"), "{text}");
        }
    }
}

//! `--mqtt mqtt://[user@]host[:port]/topic/base`: where to publish, parsed once.
//!
//! Hand-parsed rather than through the `url` crate: the grammar is four parts, and the one rule that matters
//! (no password in the address, where `ps` and shell history would show it) is ours to enforce.

use std::fmt;
use std::str::FromStr;

/// A broker and the topic every message goes under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MqttTarget {
    /// `mqtts://`: TLS (rustls).
    pub tls: bool,
    /// Host name or address.
    pub host: String,
    /// Port (default 1883, or 8883 with TLS).
    pub port: u16,
    /// The user name, if the address has one (`mqtt://user@host/…`).
    pub username: Option<String>,
    /// Topic base without slashes at either end, e.g. `lookout/cam1`.
    pub base_topic: String,
}

impl MqttTarget {
    /// `host:port`, as messages name the broker (never the credentials).
    pub fn broker(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for MqttTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = self
            .username
            .as_deref()
            .map(|u| format!("{u}@"))
            .unwrap_or_default();
        write!(f, "{scheme}://{user}{}/{}", self.broker(), self.base_topic)
    }
}

impl FromStr for MqttTarget {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let example = "e.g. mqtt://192.168.1.10:1883/lookout/cam1";
        let (tls, rest) = if let Some(rest) = s.strip_prefix("mqtt://") {
            (false, rest)
        } else if let Some(rest) = s.strip_prefix("mqtts://") {
            (true, rest)
        } else {
            return Err(format!(
                "{s:?} is not an MQTT address: it starts with mqtt:// or mqtts:// ({example})"
            ));
        };
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((user, hostport)) => (Some(user), hostport),
            None => (None, authority),
        };
        if userinfo.is_some_and(|u| u.contains(':')) {
            return Err("a password in the --mqtt address would show in `ps` and shell history; \
                 give it with --mqtt-password-file FILE or the LOOKOUT_MQTT_PASSWORD environment variable"
                .into());
        }
        let username = userinfo.filter(|u| !u.is_empty()).map(str::to_string);
        let (host, port) = split_host_port(hostport)?;
        if host.is_empty() {
            return Err(format!("{s:?} names no broker host ({example})"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| format!("{p:?} is not a port number ({example})"))?,
            None if tls => 8883,
            None => 1883,
        };
        let base_topic = path.trim_matches('/').to_string();
        if base_topic.is_empty() {
            return Err(format!(
                "{s:?} has no topic: give the topic every message goes under after the host ({example})"
            ));
        }
        if base_topic.contains(['#', '+']) || base_topic.split('/').any(str::is_empty) {
            return Err(format!(
                "{base_topic:?} is not a topic to publish under: no wildcards (#, +) and no empty levels"
            ));
        }
        Ok(MqttTarget {
            tls,
            host: host.to_string(),
            port,
            username,
            base_topic,
        })
    }
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(s: &str) -> Result<(&str, Option<&str>), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{s:?}: an IPv6 address needs its closing ]"))?;
        return match after.strip_prefix(':') {
            Some(port) => Ok((host, Some(port))),
            None if after.is_empty() => Ok((host, None)),
            None => Err(format!("{s:?}: expected :PORT after the address")),
        };
    }
    Ok(match s.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    })
}

/// `s` as one MQTT topic level and a Home Assistant object id (labels, zones, the node id): lower-case letters and digits, runs of anything else one `_`.
pub fn slug(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

#[cfg(test)]
mod tests {
    use super::{slug, MqttTarget};

    #[test]
    fn slugs_are_lower_case_words_joined_by_one_underscore() {
        assert_eq!(slug("lookout/cam1"), "lookout_cam1");
        assert_eq!(slug("Golden Retriever!"), "golden_retriever");
    }

    fn parse(s: &str) -> Result<MqttTarget, String> {
        s.parse()
    }

    #[test]
    fn addresses_with_and_without_port_user_and_tls() {
        let t = parse("mqtt://192.168.1.10:1884/lookout/cam1").unwrap();
        assert_eq!(
            (t.tls, t.host.as_str(), t.port, t.base_topic.as_str()),
            (false, "192.168.1.10", 1884, "lookout/cam1")
        );
        assert_eq!(t.username, None);
        let t = parse("mqtts://pi@broker.lan/home/door/").unwrap();
        assert_eq!(
            (t.tls, t.port, t.username.as_deref(), t.base_topic.as_str()),
            (true, 8883, Some("pi"), "home/door")
        );
        assert_eq!(t.to_string(), "mqtts://pi@broker.lan:8883/home/door");
        let t = parse("mqtt://[::1]:1883/x").unwrap();
        assert_eq!((t.host.as_str(), t.broker()), ("::1", "[::1]:1883".into()));
        assert_eq!(parse("mqtt://localhost/x").unwrap().port, 1883);
    }

    #[test]
    fn bad_addresses_say_what_to_write() {
        let err = parse("mqtt://pi:secret@host/x").unwrap_err();
        assert!(err.contains("--mqtt-password-file") && !err.contains("secret"));
        assert!(parse("http://host/x").unwrap_err().contains("mqtt://"));
        assert!(parse("mqtt://host").unwrap_err().contains("no topic"));
        assert!(parse("mqtt://host:99999/x")
            .unwrap_err()
            .contains("not a port"));
        assert!(parse("mqtt://host/a/#").unwrap_err().contains("wildcards"));
        assert!(parse("mqtt://host/a//b").unwrap_err().contains("empty"));
        assert!(parse("mqtt:///x").unwrap_err().contains("no broker host"));
    }
}

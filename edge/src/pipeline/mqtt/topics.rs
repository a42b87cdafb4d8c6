//! The topics `--mqtt` publishes on, what each (re)connection sends first, and Home Assistant discovery.

use std::sync::{Arc, Mutex};

use lookout_fleet::target::slug;
use serde_json::json;

use super::link::{Kind, Message};
use super::{on_off, MqttConfig};

/// Which labels are ON now.
pub(super) struct LabelStates {
    pub labels: Vec<bool>,
    pub unknown: bool,
}

/// Every topic the sink publishes on.
pub(super) struct Topics {
    pub availability: String,
    /// `BASE/model`: the running bundle (retained), at start and at every switch or refusal.
    pub model: String,
    /// The slug of each label (topic level and discovery object id).
    pub slugs: Vec<String>,
    /// The Home Assistant node id: the base topic as a slug.
    pub node: String,
    /// Per zone, in order; one, unnamed, without zones.
    pub zones: Vec<ZoneTopics>,
}

/// The topics of one zone (`BASE/ZONE/…`), or of the whole frame without zones (`BASE/…`).
pub(super) struct ZoneTopics {
    pub name: Option<String>,
    pub event: String,
    pub state: String,
    pub unknown: String,
    /// `…/label/<slug>`, per label.
    pub labels: Vec<String>,
}

impl Topics {
    pub fn new(base: &str, labels: &[String], zones: &[String]) -> Self {
        let slugs = label_slugs(labels);
        let zone = |name: Option<&String>| {
            let at = match name {
                Some(zone) => format!("{base}/{zone}"),
                None => base.to_string(),
            };
            ZoneTopics {
                name: name.cloned(),
                event: format!("{at}/event"),
                state: format!("{at}/state"),
                unknown: format!("{at}/unknown"),
                labels: slugs.iter().map(|s| format!("{at}/label/{s}")).collect(),
            }
        };
        let zones = if zones.is_empty() {
            vec![zone(None)]
        } else {
            zones.iter().map(Some).map(zone).collect()
        };
        Topics {
            availability: format!("{base}/availability"),
            model: format!("{base}/model"),
            slugs,
            node: slug(base),
            zones,
        }
    }

    /// The index of a zone's topics (`None`: the whole frame's, without zones).
    pub fn zone(&self, name: Option<&str>) -> Option<usize> {
        self.zones.iter().position(|z| z.name.as_deref() == name)
    }

    pub fn offline(&self) -> Message {
        Message {
            topic: self.availability.clone(),
            payload: b"offline".to_vec(),
            retain: true,
            kind: Kind::Session,
        }
    }
}

/// A topic level and id for each label: lower case, `[a-z0-9_]`; a label whose slug repeats another's gets
/// its index appended.
fn label_slugs(labels: &[String]) -> Vec<String> {
    let mut slugs: Vec<String> = Vec::with_capacity(labels.len());
    for (i, label) in labels.iter().enumerate() {
        let mut s = slug(label);
        if s.is_empty() || slugs.contains(&s) {
            s = format!("{s}_{i}").trim_start_matches('_').to_string();
        }
        slugs.push(s);
    }
    slugs
}

/// What each (re)connection sends first: `online`, the discovery configs, the current states (none for the
/// background label: it has no topic to keep).
pub(super) fn session_messages(
    config: &MqttConfig,
    topics: &Topics,
    states: Arc<Mutex<Vec<LabelStates>>>,
) -> Box<dyn Fn() -> Vec<Message> + Send> {
    let mut fixed = vec![Message {
        topic: topics.availability.clone(),
        payload: b"online".to_vec(),
        retain: true,
        kind: Kind::Session,
    }];
    if let Some(prefix) = &config.discovery_prefix {
        fixed.extend(discovery(prefix, config, topics));
    }
    let background = config.background;
    let zone_topics: Vec<(Vec<String>, Option<String>)> = topics
        .zones
        .iter()
        .map(|z| {
            (
                z.labels.clone(),
                config.on_unknown.then(|| z.unknown.clone()),
            )
        })
        .collect();
    Box::new(move || {
        let mut messages = fixed.clone();
        let states: Vec<(Vec<bool>, bool)> = match states.lock() {
            Ok(s) => s.iter().map(|s| (s.labels.clone(), s.unknown)).collect(),
            Err(_) => Vec::new(),
        };
        for (zone, (label_topics, unknown_topic)) in zone_topics.iter().enumerate() {
            let (labels, unknown) = states.get(zone).cloned().unwrap_or_default();
            for (i, topic) in label_topics.iter().enumerate() {
                if Some(i) != background {
                    let on = labels.get(i).copied().unwrap_or(false);
                    messages.push(on_off(topic.clone(), on, Kind::Session));
                }
            }
            if let Some(topic) = unknown_topic {
                messages.push(on_off(topic.clone(), unknown, Kind::Session));
            }
        }
        messages
    })
}

/// Home Assistant MQTT discovery: one `binary_sensor` per label but the background (and for "unknown"), one
/// `sensor` for the current label with `--mqtt-frames`, all of one device, all retained; with zones, all of it
/// per zone, the zone in each object id and name. One `sensor` for the device: the bundle it runs (`BASE/model`).
pub(super) fn discovery(prefix: &str, config: &MqttConfig, topics: &Topics) -> Vec<Message> {
    let device = json!({
        "identifiers": [topics.node],
        "name": format!("Lookout {}", config.target.base_topic),
        "manufacturer": "Lookout",
        "model": format!("lookout-edge ({})", config.labels.join(", ")),
        "sw_version": env!("CARGO_PKG_VERSION"),
    });
    let binary = |object: &str, name: &str, state_topic: &str| Message {
        topic: format!("{prefix}/binary_sensor/{}/{object}/config", topics.node),
        payload: json!({
            "name": name,
            "unique_id": format!("{}_{object}", topics.node),
            "state_topic": state_topic,
            "payload_on": "ON",
            "payload_off": "OFF",
            "availability_topic": topics.availability,
            "payload_available": "online",
            "payload_not_available": "offline",
            "device": device,
        })
        .to_string()
        .into_bytes(),
        retain: true,
        kind: Kind::Session,
    };
    // A sensor whose state is a field of the JSON on `state_topic`, the whole JSON its attributes.
    let sensor = |object: &str, name: &str, state_topic: &str, field: &str| Message {
        topic: format!("{prefix}/sensor/{}/{object}/config", topics.node),
        payload: json!({
            "name": name,
            "unique_id": format!("{}_{object}", topics.node),
            "state_topic": state_topic,
            "value_template": format!("{{{{ value_json.{field} }}}}"),
            "json_attributes_topic": state_topic,
            "availability_topic": topics.availability,
            "device": device,
        })
        .to_string()
        .into_bytes(),
        retain: true,
        kind: Kind::Session,
    };
    let mut messages = vec![sensor(
        "lookout_bundle",
        "bundle",
        &topics.model,
        "sha256[:12]",
    )];
    for zone in &topics.zones {
        // Without zones, ids and names are exactly the labels' (what earlier versions announced).
        let object = |id: &str| match &zone.name {
            Some(zone) => format!("{}_{id}", slug(zone)),
            None => id.to_string(),
        };
        let name = |name: &str| match &zone.name {
            Some(zone) => format!("{zone} {name}"),
            None => name.to_string(),
        };
        for (i, ((label, label_slug), topic)) in config
            .labels
            .iter()
            .zip(&topics.slugs)
            .zip(&zone.labels)
            .enumerate()
        {
            if Some(i) != config.background {
                messages.push(binary(&object(label_slug), &name(label), topic));
            }
        }
        if config.on_unknown {
            messages.push(binary(&object("unknown"), &name("unknown"), &zone.unknown));
        }
        if config.frames {
            messages.push(sensor(
                &object("label"),
                &name("label"),
                &zone.state,
                "label",
            ));
        }
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn labels_become_topic_levels_and_ids() {
        let labels: Vec<String> = ["Cat", "cat", "#", "Dog"].map(String::from).to_vec();
        assert_eq!(label_slugs(&labels), ["cat", "cat_1", "2", "dog"]);
        let topics = Topics::new("lookout/cam1", &labels[..1], &[]);
        assert_eq!(topics.zones.len(), 1);
        assert_eq!(topics.zones[0].labels, ["lookout/cam1/label/cat"]);
        assert_eq!(topics.zones[0].event, "lookout/cam1/event");
        assert_eq!(topics.zones[0].state, "lookout/cam1/state");
        assert_eq!(topics.node, "lookout_cam1");
    }

    fn config(zones: &[&str], background: Option<usize>) -> MqttConfig {
        MqttConfig {
            target: "mqtt://broker/lookout/cam1".parse().expect("target"),
            password: None,
            ca_pem: None,
            client_id: "test".into(),
            discovery_prefix: Some("homeassistant".into()),
            frames: true,
            on_unknown: true,
            queue: 10,
            flush_timeout: Duration::ZERO,
            labels: ["cat", "dog", "background"].map(String::from).to_vec(),
            background,
            zones: zones.iter().map(|z| z.to_string()).collect(),
            model_sha256: "0".into(),
            fleet: None,
            status: Arc::new(|_: &str| {}),
        }
    }

    /// Topic → payload of what a (re)connection sends.
    fn session(config: &MqttConfig) -> Vec<(String, String)> {
        let topics = Topics::new(&config.target.base_topic, &config.labels, &config.zones);
        let states = topics
            .zones
            .iter()
            .map(|_| LabelStates {
                labels: vec![false; config.labels.len()],
                unknown: false,
            })
            .collect();
        session_messages(config, &topics, Arc::new(Mutex::new(states)))()
            .into_iter()
            .map(|m| (m.topic, String::from_utf8_lossy(&m.payload).into_owned()))
            .collect()
    }

    #[test]
    fn zones_get_topics_and_entities_of_their_own_and_the_background_none() {
        let messages = session(&config(&["bowl", "door-1"], Some(2)));
        let topics: Vec<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
        for want in [
            "lookout/cam1/availability",
            "lookout/cam1/bowl/label/cat",
            "lookout/cam1/door-1/label/dog",
            "lookout/cam1/door-1/unknown",
            "homeassistant/binary_sensor/lookout_cam1/bowl_cat/config",
            "homeassistant/binary_sensor/lookout_cam1/door_1_dog/config",
            "homeassistant/sensor/lookout_cam1/bowl_label/config",
            "homeassistant/sensor/lookout_cam1/lookout_bundle/config",
        ] {
            assert!(topics.contains(&want), "{want} missing from {topics:?}");
        }
        assert!(
            !topics.iter().any(|t| t.contains("background")),
            "the background label has no topic: {topics:?}"
        );
        assert!(
            !topics.contains(&"lookout/cam1/label/cat"),
            "with zones, no whole-frame topics: {topics:?}"
        );
        let (_, config) = messages
            .iter()
            .find(|(t, _)| t == "homeassistant/binary_sensor/lookout_cam1/bowl_cat/config")
            .expect("bowl cat entity");
        let config: serde_json::Value = serde_json::from_str(config).expect("JSON");
        assert_eq!(config["unique_id"], "lookout_cam1_bowl_cat");
        assert_eq!(config["name"], "bowl cat");
        assert_eq!(config["state_topic"], "lookout/cam1/bowl/label/cat");
        let (_, bundle) = messages
            .iter()
            .find(|(t, _)| t.ends_with("/lookout_bundle/config"))
            .expect("bundle entity");
        let bundle: serde_json::Value = serde_json::from_str(bundle).expect("JSON");
        assert_eq!(bundle["state_topic"], "lookout/cam1/model");
        assert_eq!(bundle["unique_id"], "lookout_cam1_lookout_bundle");
    }

    #[test]
    fn without_zones_the_topics_are_as_before_less_the_background() {
        let messages = session(&config(&[], Some(2)));
        let topics: Vec<&str> = messages.iter().map(|(t, _)| t.as_str()).collect();
        for want in [
            "lookout/cam1/label/cat",
            "lookout/cam1/label/dog",
            "lookout/cam1/unknown",
            "homeassistant/binary_sensor/lookout_cam1/cat/config",
            "homeassistant/sensor/lookout_cam1/label/config",
        ] {
            assert!(topics.contains(&want), "{want} missing from {topics:?}");
        }
        assert!(
            !topics.iter().any(|t| t.contains("background")),
            "{topics:?}"
        );
        // A bundle without a background announces every label, that one included.
        let all = session(&config(&[], None));
        assert!(all
            .iter()
            .any(|(t, _)| t == "homeassistant/binary_sensor/lookout_cam1/background/config"));
    }
}

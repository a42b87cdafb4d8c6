//! `watch --mqtt mqtt://host:1883/lookout/cam1`: events where home automation listens.
//!
//! Topics, under the base topic of the address:
//! - `BASE/event`: one JSON message per event (`"type"`: `event`, `clear`, `unknown`, `known`), QoS 1, queued
//!   through a broker outage (`link.rs`).
//! - `BASE/label/<label>`: `ON` while the label's event is active, `OFF` otherwise; retained, QoS 1.
//! - `BASE/unknown`: the same for "none of the labels" (with `--on-unknown`).
//! - `BASE/availability`: `online` (retained, at each connection) / `offline` (at the end, and as the last will
//!   when the Pi loses power or the network).
//! - `BASE/state`: every frame's label and scores as JSON, QoS 0, only with `--mqtt-frames`.
//! - With `--mqtt-discovery homeassistant`: a retained Home Assistant discovery config per label
//!   (`homeassistant/binary_sensor/<node>/<label>/config`), so each label appears as a `binary_sensor` of one
//!   device with no configuration, plus a `sensor` of the current label with `--mqtt-frames`.
//!
//! With zones (`--zone NAME=…`), every topic but availability is per zone, one level down: `BASE/ZONE/event`,
//! `BASE/ZONE/label/<label>`, `BASE/ZONE/unknown`, `BASE/ZONE/state`; Home Assistant gets one entity per
//! (zone, label), its unique id `<node>_<zone>_<label>`. Without zones the topics are exactly the ones above.
//!
//! The bundle's background label (the empty scene) is no entity and has no state topic: it is "nothing", never
//! an event. A frame of it says `"label": "nothing"` and `"background": true` on the state topic.
//!
//! A new bundle with other labels (see [`super::reload`]): the old labels' events end (`clear`, `OFF`), the
//! retained state and discovery config of each label that is gone are cleared (an empty retained message,
//! which Home Assistant takes as "remove the entity"), and the new labels are announced with `OFF`. The clears
//! go out again at every later connection, so a broker that was away at the switch still forgets them.
//!
//! The sink never blocks the loop: it formats a message and hands it to the link's threads.

mod fleet;
mod link;
mod topics;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rumqttc::{Client, LastWill, MqttOptions, QoS};
use serde_json::json;

use super::actions::Status;
use super::reload::{ModelEvent, ModelInfo};
use super::{ChangeKind, FrameReport, LabelChange, SceneChange, Sink, WatchSummary};
pub use fleet::FleetReceiving;
pub use link::MqttCounts;
use link::{Kind, Link, LinkOptions, Message};
pub use lookout_fleet::MqttTarget;
use topics::{discovery, session_messages, LabelStates, Topics};

/// What each (re)connection sends first: built for the running labels, and again when they change.
type SessionMessages = Box<dyn Fn() -> Vec<Message> + Send>;

/// Where a finished [`MqttSink`] leaves what its link did (empty until the run ends).
pub type MqttReport = Arc<Mutex<Option<MqttCounts>>>;

/// Everything `--mqtt` needs.
#[derive(Clone)]
pub struct MqttConfig {
    /// Broker, credentials' user, topic base.
    pub target: MqttTarget,
    /// The password (from a file or the environment; never from the command line).
    pub password: Option<String>,
    /// PEM certificates to trust for `mqtts://` instead of the system's (a home broker's own CA).
    pub ca_pem: Option<Vec<u8>>,
    /// The MQTT client id (unique per broker).
    pub client_id: String,
    /// Home Assistant's discovery prefix (`homeassistant`), or none.
    pub discovery_prefix: Option<String>,
    /// Publish every frame's state on `BASE/state` (QoS 0).
    pub frames: bool,
    /// Also publish the scene's unknown / known state.
    pub on_unknown: bool,
    /// Events held through an outage; beyond it the oldest are dropped.
    pub queue: usize,
    /// How long the end of the run waits for queued events to be acknowledged.
    pub flush_timeout: Duration,
    /// The model's labels.
    pub labels: Vec<String>,
    /// The background label (the empty scene), which gets no topic and no entity.
    pub background: Option<usize>,
    /// The zones' names, in order (empty without zones).
    pub zones: Vec<String>,
    /// The bundle's sha256 (in events, and the device's model in discovery).
    pub model_sha256: String,
    /// Take new bundles published to the camera's fleet (`lookout publish`), when set.
    pub fleet: Option<FleetReceiving>,
    /// Where connection changes are reported.
    pub status: Status,
}

/// Why `--mqtt` could not start.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// The broker refused the credentials or the client id.
    #[error("--mqtt {target}: {reason}")]
    Refused {
        /// The address, without credentials.
        target: String,
        /// The broker's answer, with what to check.
        reason: String,
    },
    /// The broker's settings are not usable (the certificates to trust).
    #[error(transparent)]
    Broker(#[from] lookout_fleet::BrokerError),
    /// The threads could not be started.
    #[error("starting the MQTT threads: {0}")]
    Thread(#[source] std::io::Error),
}

/// Publishes events, label states, availability and discovery to an MQTT broker.
pub struct MqttSink {
    link: Option<Link>,
    /// The running settings (labels and background follow the running bundle).
    config: MqttConfig,
    topics: Topics,
    /// The running labels' session messages.
    session: Arc<Mutex<SessionMessages>>,
    /// Topics of labels an earlier bundle had: cleared at the switch and at every connection after.
    retired: Arc<Mutex<Vec<String>>>,
    /// Current ON/OFF of each label and of "unknown", per zone: what each (re)connection sends.
    states: Arc<Mutex<Vec<LabelStates>>>,
    /// The running bundle's checksum, for the fleet receiver.
    running: Arc<Mutex<String>>,
    /// The last report of the running bundle, sent again at each connection.
    model_report: Arc<Mutex<Option<Message>>>,
    counts: MqttReport,
}

impl MqttSink {
    /// Connects (waiting up to `connect_wait` for the broker): refuses to start when the broker rejects the
    /// credentials; when it cannot be reached, reports it and starts anyway (the link keeps trying and queues
    /// events). Returns the sink and where its counts appear when it finishes.
    pub fn start(
        config: MqttConfig,
        connect_wait: Duration,
    ) -> Result<(Self, MqttReport), MqttError> {
        let topics = Topics::new(&config.target.base_topic, &config.labels, &config.zones);
        let options = mqtt_options(&config, &topics)?;
        let (client, connection) = Client::new(options, 16);
        let states = Arc::new(Mutex::new(
            topics
                .zones
                .iter()
                .map(|_| LabelStates {
                    labels: vec![false; config.labels.len()],
                    unknown: false,
                })
                .collect(),
        ));
        // The running bundle's report goes with every (re)connection's messages: it is retained state.
        let model_report: Arc<Mutex<Option<Message>>> = Arc::default();
        let session_now = Arc::new(Mutex::new(session_messages(
            &config,
            &topics,
            Arc::clone(&states),
        )));
        let retired: Arc<Mutex<Vec<String>>> = Arc::default();
        let session = {
            let (labels, retired) = (Arc::clone(&session_now), Arc::clone(&retired));
            let report = Arc::clone(&model_report);
            Box::new(move || {
                let mut messages: Vec<Message> = match retired.lock() {
                    Ok(retired) => retired.iter().map(|t| cleared(t.clone())).collect(),
                    Err(_) => Vec::new(),
                };
                messages.extend(labels.lock().map(|labels| labels()).unwrap_or_default());
                messages.extend(report.lock().ok().and_then(|r| r.clone()));
                messages
            })
        };
        let running = Arc::new(Mutex::new(config.model_sha256.clone()));
        let receiver = config
            .fleet
            .clone()
            .map(|f| fleet::Receiver::new(f, Arc::clone(&running), Arc::clone(&config.status)));
        let link = Link::start(
            client,
            connection,
            session,
            LinkOptions {
                capacity: config.queue,
                status: Arc::clone(&config.status),
                broker: config.target.broker(),
                receiver,
            },
        )
        .map_err(MqttError::Thread)?;
        if let Err(reason) = link.wait_connected(connect_wait) {
            let _ = link.finish(topics.offline(), Duration::ZERO);
            return Err(MqttError::Refused {
                target: config.target.to_string(),
                reason,
            });
        }
        let counts = Arc::new(Mutex::new(None));
        Ok((
            MqttSink {
                link: Some(link),
                topics,
                session: session_now,
                retired,
                states,
                running,
                model_report,
                config,
                counts: Arc::clone(&counts),
            },
            counts,
        ))
    }

    fn push(&self, message: Message) {
        if let Some(link) = &self.link {
            link.push(message);
        }
    }

    fn event(&self, zone: usize, mut payload: serde_json::Value) {
        let Some(topics) = self.topics.zones.get(zone) else {
            return;
        };
        if let Some(name) = &topics.name {
            payload["zone"] = json!(name);
        }
        self.push(Message {
            topic: topics.event.clone(),
            payload: payload.to_string().into_bytes(),
            retain: false,
            kind: Kind::Event,
        });
    }
}

impl Sink for MqttSink {
    fn frame(&mut self, f: &FrameReport<'_>) {
        if !self.config.frames {
            return;
        }
        let Some(topics) = self.topics.zone(f.zone) else {
            return;
        };
        let scores: serde_json::Map<String, serde_json::Value> = self
            .config
            .labels
            .iter()
            .zip(&f.prediction.probabilities)
            .map(|(label, p)| (label.clone(), json!(p)))
            .collect();
        let mut payload = json!({"frame": f.number, "label": f.answer(), "score": f.prediction.score,
            "unknown": f.prediction.unknown, "background": f.prediction.background, "ood_score": f.prediction.ood_score,
            "scores": scores, "fps": f.fps, "time": unix_seconds()});
        if let Some(zone) = f.zone {
            payload["zone"] = json!(zone);
        }
        let topic = self.topics.zones[topics].state.clone();
        self.push(Message {
            topic,
            payload: payload.to_string().into_bytes(),
            retain: false,
            kind: Kind::Frame,
        });
    }

    fn change(&mut self, c: &LabelChange<'_>) {
        let Some(zone) = self.topics.zone(c.zone) else {
            return;
        };
        let on = c.kind == ChangeKind::Fired;
        if let Ok(mut states) = self.states.lock() {
            if let Some(state) = states.get_mut(zone).and_then(|s| s.labels.get_mut(c.label)) {
                *state = on;
            }
        }
        self.event(zone, json!({"type": c.kind.as_str(), "label": c.label_name, "label_index": c.label, "score": c.score,
            "frame": c.frame, "time": unix_seconds(), "model_sha256": self.config.model_sha256}));
        if let Some(topic) = self.topics.zones[zone].labels.get(c.label) {
            self.push(on_off(topic.clone(), on, Kind::State));
        }
    }

    fn scene(&mut self, c: &SceneChange<'_>) {
        let Some(zone) = self.topics.zone(c.zone) else {
            return;
        };
        if let Ok(mut states) = self.states.lock() {
            if let Some(state) = states.get_mut(zone) {
                state.unknown = c.unknown;
            }
        }
        let kind = if c.unknown { "unknown" } else { "known" };
        self.event(
            zone,
            json!({"type": kind, "fraction": c.fraction, "frame": c.frame, "time": unix_seconds(),
            "model_sha256": self.config.model_sha256}),
        );
        let topic = self.topics.zones[zone].unknown.clone();
        self.push(on_off(topic, c.unknown, Kind::State));
    }

    fn model(&mut self, info: &ModelInfo, event: &ModelEvent, frame: u64) {
        self.config.model_sha256.clone_from(&info.sha256);
        if let Ok(mut running) = self.running.lock() {
            running.clone_from(&info.sha256);
        }
        if info.labels != self.config.labels || info.background_index() != self.config.background {
            self.relabel(info);
        }
        let mut payload = super::reload::model_report(info, event, frame);
        payload["time"] = json!(unix_seconds());
        let report = Message {
            topic: self.topics.model.clone(),
            payload: payload.to_string().into_bytes(),
            retain: true,
            kind: Kind::State,
        };
        if let Ok(mut last) = self.model_report.lock() {
            *last = Some(report.clone());
        }
        self.push(report);
    }

    fn finish(&mut self, _summary: &WatchSummary) {
        if let Some(link) = self.link.take() {
            let counts = link.finish(self.topics.offline(), self.config.flush_timeout);
            if let Ok(mut slot) = self.counts.lock() {
                *slot = Some(counts);
            }
        }
    }
}

impl MqttSink {
    /// The running bundle's labels are now `info`'s (their old events already ended): clears what only the old
    /// labels had, announces the new ones, and sends the new labels' session from the next connection on.
    fn relabel(&mut self, info: &ModelInfo) {
        let mut config = self.config.clone();
        config.labels.clone_from(&info.labels);
        config.background = info.background_index();
        let topics = Topics::new(&config.target.base_topic, &config.labels, &config.zones);
        let retained = |config: &MqttConfig, topics: &Topics| -> Vec<String> {
            let prefix = config.discovery_prefix.as_deref();
            let configs = prefix
                .map(|p| discovery(p, config, topics))
                .unwrap_or_default();
            let states = topics.zones.iter().flat_map(|z| z.labels.iter().cloned());
            configs.into_iter().map(|m| m.topic).chain(states).collect()
        };
        let now = retained(&config, &topics);
        let gone: Vec<String> = retained(&self.config, &self.topics)
            .into_iter()
            .filter(|topic| !now.contains(topic))
            .collect();
        if let Ok(mut states) = self.states.lock() {
            for state in states.iter_mut() {
                state.labels = vec![false; config.labels.len()];
            }
        }
        let session = session_messages(&config, &topics, Arc::clone(&self.states));
        for topic in &gone {
            self.push(Message {
                kind: Kind::State,
                ..cleared(topic.clone())
            });
        }
        // Online, every discovery config (the device now lists the new labels) and every state, OFF.
        for message in session() {
            self.push(Message {
                kind: Kind::State,
                ..message
            });
        }
        if let Ok(mut retired) = self.retired.lock() {
            retired.retain(|topic| !now.contains(topic));
            for topic in gone {
                if !retired.contains(&topic) {
                    retired.push(topic);
                }
            }
        }
        if let Ok(mut running) = self.session.lock() {
            *running = session;
        }
        self.topics = topics;
        self.config = config;
    }
}

/// An empty retained message: the broker forgets what `topic` kept (and Home Assistant an entity's config).
fn cleared(topic: String) -> Message {
    Message {
        topic,
        payload: Vec::new(),
        retain: true,
        kind: Kind::Session,
    }
}

fn on_off(topic: String, on: bool, kind: Kind) -> Message {
    Message {
        topic,
        payload: if on { b"ON".to_vec() } else { b"OFF".to_vec() },
        retain: true,
        kind,
    }
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_millis() as f64) / 1000.0)
}

/// rumqttc's options: client id, keep-alive, the last will, credentials, TLS.
fn mqtt_options(config: &MqttConfig, topics: &Topics) -> Result<MqttOptions, MqttError> {
    let broker = lookout_fleet::Broker {
        target: config.target.clone(),
        password: config.password.clone(),
        ca_pem: config.ca_pem.clone(),
    };
    let mut options = broker.options(&config.client_id)?;
    options
        .set_keep_alive(Duration::from_secs(15))
        .set_clean_session(true)
        // One message in flight: the link's outbox keeps the rest (see `link`).
        .set_inflight(1)
        // A bundle's chunks come in (see `fleet`); rumqttc refuses packets over 10 kB by default.
        .set_max_packet_size(
            lookout_fleet::protocol::MAX_PACKET,
            lookout_fleet::protocol::MAX_PACKET,
        )
        .set_last_will(LastWill::new(
            topics.availability.clone(),
            "offline",
            QoS::AtLeastOnce,
            true,
        ));
    Ok(options)
}

//! The publisher's end: send a bundle to a fleet and wait for every camera's answer (`lookout publish`), or
//! list what each camera runs (`lookout fleet`). Each camera's answer is its retained `FLEET/NAME/model`
//! report (what `watch` prints as a `"type": "model"` line).

use std::collections::BTreeMap;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rumqttc::{Client, Event, Packet, QoS};
use serde::Serialize;
use serde_json::Value;

use crate::broker::{Broker, BrokerError};
use crate::protocol::{
    announcement_topic, camera_of_model_topic, chunk_topic, chunks, models_filter, Announcement,
    FleetError,
};

/// How long retained reports take to arrive after subscribing: a broker sends them at once.
const RETAINED: Duration = Duration::from_millis(1500);

/// Why publishing or listing failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The broker's settings.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// The broker could not be reached or refused us.
    #[error("cannot reach the MQTT broker at {broker}: {reason}. Is it running, and are the address and the credentials right?")]
    Connect {
        /// `host:port`.
        broker: String,
        /// What happened.
        reason: String,
    },
    /// The bundle cannot be announced.
    #[error(transparent)]
    Fleet(#[from] FleetError),
    /// The link broke while sending.
    #[error("the MQTT link broke while sending: {0}")]
    Send(String),
}

/// What a camera did with a published bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// It checked, self-tested and switched to it.
    Switched,
    /// It was running it already.
    AlreadyRunning,
    /// It refused it (the reason is in the row).
    Refused,
    /// No answer before the time was up (offline: the bundle stays retained for when it is back).
    NoAnswer,
}

/// One camera's line of the table `publish` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CameraRow {
    /// The camera's name in the fleet.
    pub camera: String,
    /// The bundle it ran before (checksum), if it had reported one.
    pub before: Option<String>,
    /// The bundle it runs now, if it reported.
    pub after: Option<String>,
    /// What it did.
    pub outcome: Outcome,
    /// The self-test (`"N frames, C changed"`) or the reason for a refusal.
    pub detail: String,
    /// Its whole last report.
    pub report: Option<Value>,
}

/// What came in on the link.
enum Incoming {
    Connected,
    Message(String, Vec<u8>),
    Failed(String),
}

/// A connected client, its connection driven on a thread that forwards what comes in.
struct Session {
    client: Client,
    incoming: Receiver<Incoming>,
}

impl Session {
    fn open(broker: &Broker, role: &str) -> Result<Session, PublishError> {
        let id = format!("lookout-{role}-{}", std::process::id());
        let mut options = broker.options(&id)?;
        options
            .set_keep_alive(Duration::from_secs(15))
            .set_max_packet_size(crate::protocol::MAX_PACKET, crate::protocol::MAX_PACKET);
        let (client, mut connection) = Client::new(options, 16);
        let (send, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            for event in connection.iter() {
                let forwarded = match event {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => send.send(Incoming::Connected),
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        send.send(Incoming::Message(p.topic.clone(), p.payload.to_vec()))
                    }
                    Ok(_) => Ok(()),
                    Err(e) => {
                        let reason = crate::broker::refusal(&e).unwrap_or_else(|| e.to_string());
                        let _ = send.send(Incoming::Failed(reason));
                        return;
                    }
                };
                if forwarded.is_err() {
                    return;
                }
            }
        });
        let connect = |reason: String| PublishError::Connect {
            broker: broker.target.broker(),
            reason,
        };
        match incoming.recv_timeout(Duration::from_secs(10)) {
            Ok(Incoming::Connected) => Ok(Session { client, incoming }),
            Ok(Incoming::Failed(reason)) => Err(connect(reason)),
            Ok(Incoming::Message(..)) | Err(_) => Err(connect("no answer in 10 s".into())),
        }
    }

    /// The messages that come in until `deadline`, or until `done` says enough.
    fn collect(
        &self,
        deadline: Instant,
        mut take: impl FnMut(&str, &[u8]) -> bool,
    ) -> Result<(), PublishError> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.incoming.recv_timeout(left) {
                Ok(Incoming::Message(topic, payload)) => {
                    if take(&topic, &payload) {
                        return Ok(());
                    }
                }
                Ok(Incoming::Connected) => {}
                Ok(Incoming::Failed(reason)) => return Err(PublishError::Send(reason)),
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(PublishError::Send("the connection ended".into()))
                }
            }
        }
    }

    fn publish(&self, topic: String, payload: Vec<u8>) -> Result<(), PublishError> {
        self.client
            .publish(topic, QoS::AtLeastOnce, true, payload)
            .map_err(|e| PublishError::Send(e.to_string()))
    }

    fn close(self) {
        let _ = self.client.disconnect();
        // Let the DISCONNECT (and the last acknowledgements) go out.
        let _ = self.collect(Instant::now() + Duration::from_millis(500), |_, _| false);
    }
}

/// Each camera's retained report: camera → the JSON of its `FLEET/NAME/model`.
pub fn list(broker: &Broker) -> Result<BTreeMap<String, Value>, PublishError> {
    let fleet = broker.target.base_topic.clone();
    let session = Session::open(broker, "fleet")?;
    session
        .client
        .subscribe(models_filter(&fleet), QoS::AtLeastOnce)
        .map_err(|e| PublishError::Send(e.to_string()))?;
    let mut reports = BTreeMap::new();
    session.collect(Instant::now() + RETAINED, |topic, payload| {
        if let (Some(camera), Ok(report)) = (
            camera_of_model_topic(&fleet, topic),
            serde_json::from_slice::<Value>(payload),
        ) {
            reports.insert(camera.to_string(), report);
        }
        false
    })?;
    session.close();
    Ok(reports)
}

/// Sends the bundle file `bytes` to the fleet (the broker's base topic; `cameras`: only those) and waits up to
/// `wait` for every camera's answer. `progress` hears what is happening, one line at a time.
pub fn publish(
    broker: &Broker,
    bytes: &[u8],
    cameras: Option<Vec<String>>,
    wait: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Vec<CameraRow>, PublishError> {
    let fleet = broker.target.base_topic.clone();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let announcement = Announcement::of(bytes, cameras.clone(), now)?;
    let session = Session::open(broker, "publish")?;
    for filter in [models_filter(&fleet), announcement_topic(&fleet)] {
        session
            .client
            .subscribe(filter, QoS::AtLeastOnce)
            .map_err(|e| PublishError::Send(e.to_string()))?;
    }
    // What each camera runs now, and the bundle announced before (its chunks are cleared after).
    let mut before: BTreeMap<String, Value> = BTreeMap::new();
    let mut previous: Option<Announcement> = None;
    session.collect(Instant::now() + RETAINED, |topic, payload| {
        if topic == announcement_topic(&fleet) {
            previous = Announcement::parse(payload).ok();
        } else if let (Some(camera), Ok(report)) = (
            camera_of_model_topic(&fleet, topic),
            serde_json::from_slice::<Value>(payload),
        ) {
            before.insert(camera.to_string(), report);
        }
        false
    })?;
    progress(&format!(
        "publishing {} ({} bytes in {} chunks) to {} camera(s) of {fleet}: {}",
        &announcement.sha256[..12],
        announcement.size,
        announcement.chunks,
        cameras.as_ref().map_or(before.len(), Vec::len),
        cameras
            .clone()
            .unwrap_or_else(|| before.keys().cloned().collect())
            .join(", ")
    ));
    // The chunks first, then the announcement: a camera that reads the announcement finds every chunk.
    for (topic, chunk) in chunks(&fleet, &announcement, bytes) {
        session.publish(topic, chunk.to_vec())?;
    }
    let payload =
        serde_json::to_vec(&announcement).map_err(|e| PublishError::Send(e.to_string()))?;
    session.publish(announcement_topic(&fleet), payload)?;
    if let Some(old) = previous.filter(|old| old.id() != announcement.id()) {
        for n in 0..old.chunks {
            session.publish(chunk_topic(&fleet, old.id(), n), Vec::new())?;
        }
    }

    let targets: Vec<String> = cameras.unwrap_or_else(|| before.keys().cloned().collect());
    let mut after: BTreeMap<String, Value> = BTreeMap::new();
    let answered = |after: &BTreeMap<String, Value>, camera: &str| {
        after
            .get(camera)
            .is_some_and(|r| outcome(r, &announcement.sha256).is_some())
    };
    let deadline = Instant::now() + wait;
    if !targets.iter().all(|c| answered(&after, c)) {
        session.collect(deadline, |topic, payload| {
            if let (Some(camera), Ok(report)) = (
                camera_of_model_topic(&fleet, topic),
                serde_json::from_slice::<Value>(payload),
            ) {
                // Retained reports from before the announcement say nothing of this bundle.
                if outcome(&report, &announcement.sha256).is_some() {
                    after.insert(camera.to_string(), report);
                }
            }
            targets.iter().all(|c| answered(&after, c))
        })?;
    }
    session.close();
    Ok(targets
        .iter()
        .map(|camera| {
            row(
                camera,
                before.get(camera),
                after.get(camera),
                &announcement.sha256,
            )
        })
        .collect())
}

/// What a camera's report says of the bundle `sha256`, if anything.
fn outcome(report: &Value, sha256: &str) -> Option<Outcome> {
    let runs = report["sha256"] == sha256;
    match report["event"].as_str() {
        Some("switch") if runs => Some(Outcome::Switched),
        Some("start") if runs => Some(Outcome::Switched),
        Some("refused") if report["refused_sha256"] == sha256 => Some(Outcome::Refused),
        _ => None,
    }
}

fn row(camera: &str, before: Option<&Value>, after: Option<&Value>, sha256: &str) -> CameraRow {
    let sha = |r: Option<&Value>| r.and_then(|r| r["sha256"].as_str()).map(str::to_string);
    let was_running = before.is_some_and(|r| r["sha256"] == sha256);
    let outcome = match after.and_then(|r| outcome(r, sha256)) {
        Some(o) => o,
        None if was_running => Outcome::AlreadyRunning,
        None => Outcome::NoAnswer,
    };
    let detail = match (outcome, after) {
        (Outcome::Switched, Some(r)) => {
            let names = |field: &str| {
                let names: Vec<&str> = r["labels_changed"][field]
                    .as_array()
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                names.join(", ")
            };
            let labels = match (names("added"), names("removed")) {
                (added, removed) if added.is_empty() && removed.is_empty() => String::new(),
                (added, removed) => format!("; labels added: {added}; removed: {removed}"),
            };
            format!(
                "self-test: {} frames, {} changed; {} ms{labels}",
                r["self_test"]["frames"], r["self_test"]["changed"], r["load_ms"]
            )
        }
        (Outcome::Refused, Some(r)) => r["reason"].as_str().unwrap_or_default().to_string(),
        (Outcome::NoAnswer, _) => "no answer: the bundle stays retained for when it is back".into(),
        _ => String::new(),
    };
    CameraRow {
        camera: camera.to_string(),
        before: sha(before),
        after: sha(after).or_else(|| sha(before)),
        outcome,
        detail,
        report: after.or(before).cloned(),
    }
}

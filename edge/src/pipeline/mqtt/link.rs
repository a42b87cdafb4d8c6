//! The link to the broker: a bounded outbox, a thread that drives rumqttc's connection (connect, reconnect with
//! backoff, acknowledgements), and a thread that publishes from the outbox one QoS 1 message at a time.
//!
//! Why our own outbox rather than rumqttc's request channel: with a clean session, rumqttc drops the messages
//! it had in flight when the broker comes back without the session (a restarted broker), and its channel is
//! bounded by refusing the newest. Here a message leaves the outbox only when the broker acknowledged it; one
//! that was in flight when the link broke goes back to the front and is sent again (at least once, as QoS 1
//! promises), and when the outbox is full the oldest event is dropped and counted. One message in flight at a
//! time is plenty for events (a few per minute) and keeps that bookkeeping exact.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttc::{Client, ConnectReturnCode, Connection, Event, Outgoing, Packet, QoS};

use crate::pipeline::actions::Status;

/// What a message is, for the outbox's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// An event, clear, unknown or known: queued through an outage, counted.
    Event,
    /// A retained ON/OFF state: superseded by the states sent at each (re)connection.
    State,
    /// Sent at each (re)connection: availability, discovery, the current states.
    Session,
    /// A frame's state (QoS 0): only the newest of each topic (each zone's) waits, never through an outage.
    Frame,
}

/// One message to publish.
#[derive(Debug, Clone)]
pub(super) struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retain: bool,
    pub kind: Kind,
}

/// What the link did, for the summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MqttCounts {
    /// Events the broker acknowledged.
    pub delivered: u64,
    /// Events dropped because the outbox was full (the oldest first).
    pub dropped: u64,
    /// Events that happened while the broker was unreachable (queued; delivered later unless dropped).
    pub queued_offline: u64,
    /// Events still waiting when the run ended (the broker was unreachable at the end).
    pub undelivered: u64,
    /// Times the link was lost after having been up.
    pub outages: u64,
    /// Frame states published (QoS 0, with `--mqtt-frames`).
    pub frames: u64,
}

/// The state both threads and the sink share, under one lock.
struct State {
    outbox: VecDeque<Message>,
    /// The one QoS 1 message sent and not yet acknowledged.
    in_flight: Option<Message>,
    /// The newest frame state of each topic (one per zone), waiting, the oldest first.
    frames: Vec<Message>,
    connected: bool,
    /// Builds the session messages (availability, discovery, current states) at each connection.
    session: Box<dyn Fn() -> Vec<Message> + Send>,
    capacity: usize,
    stopping: bool,
    counts: MqttCounts,
    /// The first connection's outcome, for [`Link::wait_connected`].
    first: Option<Result<(), String>>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic in one thread must not silence the others: the state stays usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running link: the sink pushes messages, the threads deliver them.
pub(super) struct Link {
    shared: Arc<Shared>,
    client: Client,
    threads: Vec<JoinHandle<()>>,
    done: Arc<AtomicBool>,
}

/// How the link behaves.
pub(super) struct LinkOptions {
    /// Events held through an outage.
    pub capacity: usize,
    /// Where lost/regained connections are reported.
    pub status: Status,
    /// `host:port`, for messages.
    pub broker: String,
    /// Takes the messages that come in (a fleet's bundles), subscribed at every connection.
    pub receiver: Option<super::fleet::Receiver>,
}

impl Link {
    /// Starts the threads over a rumqttc client and connection; `session` gives the messages to send at every
    /// connection, first.
    pub fn start(
        client: Client,
        connection: Connection,
        session: Box<dyn Fn() -> Vec<Message> + Send>,
        options: LinkOptions,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                outbox: VecDeque::new(),
                in_flight: None,
                frames: Vec::new(),
                connected: false,
                session,
                capacity: options.capacity.max(1),
                stopping: false,
                counts: MqttCounts::default(),
                first: None,
            }),
            changed: Condvar::new(),
        });
        let done = Arc::new(AtomicBool::new(false));
        let driver = {
            let shared = Arc::clone(&shared);
            let done = Arc::clone(&done);
            let client = client.clone();
            std::thread::Builder::new()
                .name("mqtt-connection".into())
                .spawn(move || drive(connection, &client, &shared, &done, options))?
        };
        let publisher = {
            let shared = Arc::clone(&shared);
            let client = client.clone();
            std::thread::Builder::new()
                .name("mqtt-publish".into())
                .spawn(move || publish(&client, &shared))?
        };
        Ok(Link {
            shared,
            client,
            threads: vec![driver, publisher],
            done,
        })
    }

    /// Waits up to `timeout` for the first connection: `Err` with the broker's reason when it refused us (bad
    /// credentials), `Ok(false)` when it could not be reached yet (the link keeps trying).
    pub fn wait_connected(&self, timeout: Duration) -> Result<bool, String> {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        loop {
            match &state.first {
                Some(Ok(())) => return Ok(true),
                Some(Err(refused)) => return Err(refused.clone()),
                None => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            state = self
                .shared
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Queues a message. Events go through outages (the oldest dropped when full); states wait only while
    /// connected (the next connection sends the current ones); a frame replaces the one waiting on its topic
    /// (with zones, each zone's frames have a topic of their own: one zone's never replaces another's).
    pub fn push(&self, message: Message) {
        let mut state = self.shared.lock();
        match message.kind {
            Kind::Frame => {
                if state.connected {
                    keep_newest(&mut state.frames, message);
                }
            }
            Kind::State | Kind::Session if !state.connected => {}
            Kind::Event | Kind::State | Kind::Session => {
                if message.kind == Kind::Event && !state.connected {
                    state.counts.queued_offline += 1;
                }
                let events = state
                    .outbox
                    .iter()
                    .filter(|m| m.kind == Kind::Event)
                    .count();
                if message.kind == Kind::Event && events >= state.capacity {
                    if let Some(oldest) = state.outbox.iter().position(|m| m.kind == Kind::Event) {
                        state.outbox.remove(oldest);
                        state.counts.dropped += 1;
                    }
                }
                state.outbox.push_back(message);
            }
        }
        drop(state);
        self.shared.changed.notify_all();
    }

    /// Sends `last` (the "offline" availability), waits up to `timeout` for everything queued to be
    /// acknowledged, disconnects, and returns what the link did.
    pub fn finish(mut self, last: Message, timeout: Duration) -> MqttCounts {
        self.push(last);
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while (!state.outbox.is_empty() || state.in_flight.is_some()) && Instant::now() < deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            state = self
                .shared
                .changed
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.stopping = true;
        let in_flight_event = state
            .in_flight
            .as_ref()
            .is_some_and(|m| m.kind == Kind::Event);
        state.counts.undelivered = state
            .outbox
            .iter()
            .filter(|m| m.kind == Kind::Event)
            .count() as u64
            + u64::from(in_flight_event);
        let counts = state.counts;
        drop(state);
        self.shared.changed.notify_all();
        self.done.store(true, Ordering::SeqCst);
        // A clean DISCONNECT: the broker does not publish the last will ("offline" was sent above).
        let _ = self.client.try_disconnect();
        // The connection thread may be in a connect attempt to a broker that is gone: give it a moment, then
        // leave it (the process is ending).
        let until = Instant::now() + Duration::from_millis(1500);
        while self.threads.iter().any(|t| !t.is_finished()) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
        for thread in self.threads.drain(..) {
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
        counts
    }
}

/// Drives rumqttc's connection: tells the state about connections, losses and acknowledgements; retries with
/// backoff (0.5 s doubling to 30 s) while the broker is away.
fn drive(
    mut connection: Connection,
    client: &Client,
    shared: &Shared,
    done: &AtomicBool,
    mut options: LinkOptions,
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(500);
    let mut backoff = FIRST_BACKOFF;
    let mut ever_connected = false;
    let mut lost_at: Option<Instant> = None;
    let mut told_unreachable = false;
    for event in connection.iter() {
        // After `finish`: stop once the DISCONNECT is out (or the link is down anyway).
        if done.load(Ordering::SeqCst) && matches!(event, Ok(Event::Outgoing(Outgoing::Disconnect)))
        {
            break;
        }
        match event {
            Ok(Event::Incoming(Packet::ConnAck(ack))) if ack.code == ConnectReturnCode::Success => {
                backoff = FIRST_BACKOFF;
                let mut state = shared.lock();
                state.connected = true;
                // What was in flight is sent again; states queued before are superseded by the current ones.
                if let Some(message) = state.in_flight.take() {
                    state.outbox.push_front(message);
                }
                state.outbox.retain(|m| m.kind == Kind::Event);
                for message in (state.session)().into_iter().rev() {
                    state.outbox.push_front(message);
                }
                let waiting = state.outbox.len();
                if state.first.is_none() {
                    state.first = Some(Ok(()));
                }
                drop(state);
                shared.changed.notify_all();
                match lost_at.take() {
                    Some(at) => (options.status)(&format!(
                        "mqtt: reconnected to {} after {:.1} s; sending {waiting} queued messages",
                        options.broker,
                        at.elapsed().as_secs_f64()
                    )),
                    None if told_unreachable => {
                        (options.status)(&format!("mqtt: connected to {}", options.broker))
                    }
                    None => {}
                }
                ever_connected = true;
                told_unreachable = false;
                // The session is clean: subscribe again at every connection (never blocking this thread,
                // which is the one that drains rumqttc's requests).
                for topic in options.receiver.iter().flat_map(|r| r.subscriptions()) {
                    let _ = client.try_subscribe(topic, QoS::AtLeastOnce);
                }
            }
            Ok(Event::Incoming(Packet::Publish(message))) => {
                if let Some(receiver) = options.receiver.as_mut() {
                    receiver.on_message(client, &message.topic, &message.payload);
                }
            }
            Ok(Event::Incoming(Packet::PubAck(_))) => {
                let mut state = shared.lock();
                if let Some(message) = state.in_flight.take() {
                    if message.kind == Kind::Event {
                        state.counts.delivered += 1;
                    }
                }
                drop(state);
                shared.changed.notify_all();
            }
            Ok(_) => {}
            Err(error) => {
                let refused = lookout_fleet::broker::refusal(&error);
                let mut state = shared.lock();
                let was_connected = std::mem::replace(&mut state.connected, false);
                if was_connected {
                    state.counts.outages += 1;
                }
                if state.first.is_none() {
                    if let Some(reason) = &refused {
                        state.first = Some(Err(reason.clone()));
                    }
                }
                let capacity = state.capacity;
                drop(state);
                shared.changed.notify_all();
                if done.load(Ordering::SeqCst) {
                    break;
                }
                let reason = refused.clone().unwrap_or_else(|| error.to_string());
                if was_connected {
                    lost_at = Some(Instant::now());
                    told_unreachable = true;
                    (options.status)(&format!(
                        "mqtt: lost the broker at {} ({reason}); watching on, retrying with backoff up to 30 s, \
                         holding up to {capacity} events",
                        options.broker
                    ));
                } else if !told_unreachable && (ever_connected || refused.is_none()) {
                    // A refusal before the first connection is the caller's to report (it stops the run).
                    told_unreachable = true;
                    (options.status)(&format!(
                        "mqtt: cannot reach the broker at {} ({reason}); watching on, retrying with backoff up \
                         to 30 s, holding up to {capacity} events. Is it running, and is the address right?",
                        options.broker
                    ));
                }
                sleep_unless(done, backoff);
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
    let mut state = shared.lock();
    state.connected = false;
    drop(state);
    shared.changed.notify_all();
}

fn sleep_unless(done: &AtomicBool, duration: Duration) {
    let until = Instant::now() + duration;
    while Instant::now() < until && !done.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50).min(until - Instant::now()));
    }
}

/// Adds a frame state to those waiting, in place of the one waiting on its topic, if any.
fn keep_newest(frames: &mut Vec<Message>, frame: Message) {
    match frames.iter_mut().find(|m| m.topic == frame.topic) {
        Some(waiting) => *waiting = frame,
        None => frames.push(frame),
    }
}

/// Publishes from the outbox while connected: one QoS 1 message at a time, each kept until acknowledged; frame
/// states (QoS 0) in between.
fn publish(client: &Client, shared: &Shared) {
    let mut state = shared.lock();
    loop {
        if state.stopping {
            return;
        }
        if state.connected && state.in_flight.is_none() {
            if let Some(message) = state.outbox.pop_front() {
                let sent = client.try_publish(
                    message.topic.clone(),
                    QoS::AtLeastOnce,
                    message.retain,
                    message.payload.clone(),
                );
                match sent {
                    Ok(()) => {
                        state.in_flight = Some(message);
                        continue;
                    }
                    // rumqttc's request channel is full (it is reconnecting): wait, then try again.
                    Err(_) => state.outbox.push_front(message),
                }
            } else if !state.frames.is_empty() {
                let frame = state.frames.remove(0);
                if client
                    .try_publish(frame.topic, QoS::AtMostOnce, false, frame.payload)
                    .is_ok()
                {
                    state.counts.frames += 1;
                }
                continue;
            }
        }
        state = shared
            .changed
            .wait_timeout(state, Duration::from_millis(200))
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(test)]
mod tests {
    use super::{keep_newest, Kind, Link, LinkOptions, Message};
    use std::sync::Arc;
    use std::time::Duration;

    fn event(n: u32) -> Message {
        Message {
            topic: "t/event".into(),
            payload: n.to_string().into_bytes(),
            retain: false,
            kind: Kind::Event,
        }
    }

    /// Each zone's newest frame waits: a frame replaces only the one of its own topic.
    #[test]
    fn a_frame_replaces_only_the_waiting_frame_of_its_zone() {
        let frame = |topic: &str, n: u32| Message {
            topic: topic.into(),
            kind: Kind::Frame,
            ..event(n)
        };
        let mut frames = Vec::new();
        for message in [
            frame("t/a/state", 1),
            frame("t/b/state", 1),
            frame("t/a/state", 2),
        ] {
            keep_newest(&mut frames, message);
        }
        let waiting: Vec<(&str, &[u8])> = frames
            .iter()
            .map(|m| (m.topic.as_str(), m.payload.as_slice()))
            .collect();
        assert_eq!(
            waiting,
            [("t/a/state", &b"2"[..]), ("t/b/state", &b"1"[..])]
        );
    }

    /// A broker that is not there (a closed loopback port): what the outbox keeps, drops and counts.
    #[test]
    fn an_outage_keeps_the_newest_events_and_counts_the_rest() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let (client, connection) =
            rumqttc::Client::new(rumqttc::MqttOptions::new("t", "127.0.0.1", port), 4);
        let link = Link::start(
            client,
            connection,
            Box::new(Vec::new),
            LinkOptions {
                capacity: 3,
                status: Arc::new(|_| {}),
                broker: format!("127.0.0.1:{port}"),
                receiver: None,
            },
        )
        .unwrap();
        assert_eq!(link.wait_connected(Duration::from_millis(300)), Ok(false));
        for n in 0..5 {
            link.push(event(n));
        }
        // States and frames are not held through an outage: the next connection sends the current ones.
        link.push(Message {
            kind: Kind::State,
            ..event(9)
        });
        let kept: Vec<String> = link
            .shared
            .lock()
            .outbox
            .iter()
            .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
            .collect();
        assert_eq!(kept, ["2", "3", "4"]);
        let last = Message {
            kind: Kind::Session,
            ..event(0)
        };
        let counts = link.finish(last, Duration::ZERO);
        assert_eq!(
            (counts.queued_offline, counts.dropped, counts.undelivered),
            (5, 2, 3)
        );
        assert_eq!((counts.delivered, counts.outages), (0, 0));
    }
}

//! A camera's end of the fleet ([`lookout_fleet::protocol`]): the announcement of a new bundle, its chunks put
//! together, the file written beside the running bundle and handed to the reload thread, which checks the
//! announced SHA-256, self-tests and switches ([`crate::pipeline::reload`]). Runs on the MQTT connection's
//! thread, on every message that arrives.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use lookout_fleet::protocol::{announcement_topic, chunks_filter, Announcement, Assembly};
use rumqttc::{Client, QoS};

use crate::pipeline::actions::Status;
use crate::pipeline::reload::{ReloadRequest, ReloadRequests};

/// What a camera needs to take bundles from its fleet.
#[derive(Clone)]
pub struct FleetReceiving {
    /// The fleet's topic (`home` for a camera at `home/porch`).
    pub fleet: String,
    /// This camera's name in it (`porch`).
    pub camera: String,
    /// Where a received bundle is written before it is checked (beside the running bundle).
    pub incoming: PathBuf,
    /// Where it is handed to the reload thread.
    pub requests: ReloadRequests,
}

pub(super) struct Receiver {
    config: FleetReceiving,
    /// The running bundle's checksum, as the sink hears of it: its announcement is not downloaded.
    running: Arc<Mutex<String>>,
    /// Files (SHA-256) already handed to the reload thread: an announcement stays retained on the broker and
    /// comes again at each reconnection; a refused bundle is not tried again.
    tried: HashSet<String>,
    assembly: Option<Assembly>,
    status: Status,
}

impl Receiver {
    pub fn new(config: FleetReceiving, running: Arc<Mutex<String>>, status: Status) -> Self {
        Receiver {
            config,
            running,
            tried: HashSet::new(),
            assembly: None,
            status,
        }
    }

    /// What to subscribe to at every connection.
    pub fn subscriptions(&self) -> Vec<String> {
        vec![announcement_topic(&self.config.fleet)]
    }

    pub fn on_message(&mut self, client: &Client, topic: &str, payload: &[u8]) {
        if topic == announcement_topic(&self.config.fleet) {
            self.announced(client, payload);
            return;
        }
        let Some(assembly) = self.assembly.as_mut() else {
            return;
        };
        let Some(whole) = assembly.add(topic, payload) else {
            return;
        };
        let announcement = assembly.announcement.clone();
        let _ = client.try_unsubscribe(chunks_filter(&self.config.fleet, announcement.id()));
        self.assembly = None;
        self.tried.insert(announcement.file_sha256.clone());
        // Written as received: the reload thread checks it against the announced SHA-256 before anything else,
        // and refuses it (reported like any refusal) when it is not the file announced.
        match lookout_shared::atomic::write_atomic(&self.config.incoming, &whole) {
            Ok(()) => {
                if let Ok(mut requests) = self.config.requests.lock() {
                    *requests = Some(ReloadRequest {
                        path: self.config.incoming.clone(),
                        file_sha256: announcement.file_sha256,
                    });
                }
            }
            Err(e) => (self.status)(&format!(
                "fleet: bundle {} not taken: writing {}: {e}",
                short(&announcement.sha256),
                self.config.incoming.display()
            )),
        }
    }

    fn announced(&mut self, client: &Client, payload: &[u8]) {
        // An empty retained message clears the announcement.
        if payload.is_empty() {
            return;
        }
        let announcement = match Announcement::parse(payload) {
            Ok(a) => a,
            Err(e) => return (self.status)(&format!("fleet: {e}")),
        };
        let wanted = announcement.is_for(&self.config.camera)
            && !self.tried.contains(&announcement.file_sha256)
            && self
                .running
                .lock()
                .is_ok_and(|running| *running != announcement.sha256);
        if let Some(old) = &self.assembly {
            if old.announcement.id() != announcement.id() || !wanted {
                let _ = client
                    .try_unsubscribe(chunks_filter(&self.config.fleet, old.announcement.id()));
                self.assembly = None;
            }
        }
        if !wanted {
            return;
        }
        // Subscribed again after a reconnection too (the session is clean): chunks already here are kept.
        let filter = chunks_filter(&self.config.fleet, announcement.id());
        if self.assembly.is_none() {
            (self.status)(&format!(
                "fleet: receiving bundle {} ({} bytes in {} chunks)",
                short(&announcement.sha256),
                announcement.size,
                announcement.chunks
            ));
            self.assembly = Some(Assembly::new(&self.config.fleet, announcement));
        }
        let _ = client.try_subscribe(filter, QoS::AtLeastOnce);
    }
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(12)]
}

//! How a bundle travels to the cameras of a fleet, as retained MQTT messages.
//!
//! A camera whose base topic is `FLEET/NAME` (`watch --mqtt mqtt://broker/home/porch`) is camera `NAME` of
//! fleet `FLEET`. A publisher sends, all retained (QoS 1):
//! - `FLEET/bundle/ID/N`: the bundle file in chunks of [`CHUNK`] bytes (ID: the first 16 hex digits of the
//!   file's SHA-256), first;
//! - `FLEET/bundle`: the [`Announcement`] (JSON): the file's SHA-256 and size, the bundle's own checksum, the
//!   cameras it is for, last.
//!
//! Retained, so a camera that was offline gets the bundle when it comes back, and a broker restarted mid-way
//! (with persistence) still holds every chunk. A camera puts the chunks together ([`Assembly`]), checks the
//! file's SHA-256 against the announcement, self-tests the bundle and switches, then reports what it runs on
//! `FLEET/NAME/model` (retained): the publisher waits for those reports. Chunks keep every message far under
//! brokers' limits (mosquitto's `message_size_limit`, rumqttc's packet size).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Bytes per chunk: small enough for any broker's message limit, large enough to be few.
pub const CHUNK: usize = 128 * 1024;
/// The largest MQTT packet either side needs to take: a chunk and its topic.
pub const MAX_PACKET: usize = CHUNK + 4096;
/// The largest bundle a camera puts together (a Lite0 f32 bundle is 20 MB).
pub const MAX_BUNDLE: u64 = 512 * 1024 * 1024;

/// Why a bundle cannot be sent or was not received whole.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FleetError {
    /// Not an announcement (or not one this version reads).
    #[error("not a bundle announcement: {0}")]
    Announcement(String),
    /// The bytes received are not the ones announced.
    #[error(
        "the bundle received ({received}) is not the one its publisher announced ({announced}): refused"
    )]
    Checksum {
        /// The SHA-256 the publisher announced.
        announced: String,
        /// The SHA-256 of what arrived.
        received: String,
    },
    /// Too short to be a bundle (no checksum).
    #[error("{0} bytes are too few for a bundle")]
    TooShort(usize),
    /// The base topic has no fleet level (`FLEET/NAME`).
    #[error("--mqtt topic {0:?} names no fleet: a camera of a fleet publishes under FLEET/NAME, e.g. home/porch")]
    NoFleet(String),
    /// The camera's name is the fleet's own topic level.
    #[error("--mqtt topic {0:?}: a camera cannot be named `{BUNDLE_LEVEL}`, the level under which its fleet's bundles travel (FLEET/{BUNDLE_LEVEL}); name it otherwise, e.g. home/porch")]
    ReservedName(String),
}

/// What a publisher announces: which bundle, for which cameras, in how many chunks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Announcement {
    /// The bundle's own checksum (its last 32 bytes, hex): what `watch` reports as the running bundle's.
    pub sha256: String,
    /// SHA-256 of the whole file, hex: what a camera checks the bytes it put together against.
    pub file_sha256: String,
    /// Bytes in the file.
    pub size: u64,
    /// Bytes per chunk (the last may be shorter).
    pub chunk_size: u32,
    /// Number of chunks.
    pub chunks: u32,
    /// The cameras it is for (`None`: every camera of the fleet).
    pub cameras: Option<Vec<String>>,
    /// When it was published, seconds since the Unix epoch.
    pub published: u64,
}

/// Hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

impl Announcement {
    /// The announcement of the bundle file `bytes`, for `cameras` (`None`: all).
    pub fn of(
        bytes: &[u8],
        cameras: Option<Vec<String>>,
        published: u64,
    ) -> Result<Announcement, FleetError> {
        if bytes.len() < 32 {
            return Err(FleetError::TooShort(bytes.len()));
        }
        Ok(Announcement {
            sha256: hex(&bytes[bytes.len() - 32..]),
            file_sha256: sha256_hex(bytes),
            size: bytes.len() as u64,
            chunk_size: CHUNK as u32,
            chunks: bytes.len().div_ceil(CHUNK) as u32,
            cameras,
            published,
        })
    }

    /// Parses an announcement's payload and checks its numbers agree.
    pub fn parse(payload: &[u8]) -> Result<Announcement, FleetError> {
        let a: Announcement =
            serde_json::from_slice(payload).map_err(|e| FleetError::Announcement(e.to_string()))?;
        let consistent = a.file_sha256.len() == 64
            && a.chunk_size > 0
            && a.size <= MAX_BUNDLE
            && u64::from(a.chunks) == a.size.div_ceil(u64::from(a.chunk_size));
        if !consistent {
            return Err(FleetError::Announcement(format!(
                "{} bytes in {} chunks of {} (at most {MAX_BUNDLE} bytes)",
                a.size, a.chunks, a.chunk_size
            )));
        }
        Ok(a)
    }

    /// The chunks' topic level: the first 16 hex digits of the file's SHA-256.
    pub fn id(&self) -> &str {
        &self.file_sha256[..16.min(self.file_sha256.len())]
    }

    /// Whether `bytes` are the file announced.
    pub fn verify(&self, bytes: &[u8]) -> Result<(), FleetError> {
        let received = sha256_hex(bytes);
        if received == self.file_sha256 {
            Ok(())
        } else {
            Err(FleetError::Checksum {
                announced: self.file_sha256.clone(),
                received,
            })
        }
    }

    /// Whether camera `name` should take it.
    pub fn is_for(&self, name: &str) -> bool {
        self.cameras
            .as_ref()
            .is_none_or(|cameras| cameras.iter().any(|c| c == name))
    }
}

/// The topic level under a fleet that carries its bundles (`FLEET/bundle`, `FLEET/bundle/ID/N`): no camera of
/// the fleet may take it as its name, or its own topics would sit among the bundles'.
pub const BUNDLE_LEVEL: &str = "bundle";

/// The fleet and the camera's name of a camera's base topic: `home/porch` is camera `porch` of fleet `home`.
/// [`FleetError::NoFleet`] for a single level (a camera outside any fleet), [`FleetError::ReservedName`] for a
/// camera named [`BUNDLE_LEVEL`].
pub fn fleet_of(base: &str) -> Result<(&str, &str), FleetError> {
    let (fleet, name) = base
        .rsplit_once('/')
        .filter(|(fleet, name)| !fleet.is_empty() && !name.is_empty())
        .ok_or_else(|| FleetError::NoFleet(base.to_string()))?;
    if name == BUNDLE_LEVEL {
        return Err(FleetError::ReservedName(base.to_string()));
    }
    Ok((fleet, name))
}

/// `FLEET/bundle`: the retained announcement.
pub fn announcement_topic(fleet: &str) -> String {
    format!("{fleet}/{BUNDLE_LEVEL}")
}

/// `FLEET/bundle/ID/N`: chunk `n` of the bundle `id`.
pub fn chunk_topic(fleet: &str, id: &str, n: u32) -> String {
    format!("{fleet}/{BUNDLE_LEVEL}/{id}/{n}")
}

/// `FLEET/bundle/ID/+`: every chunk of the bundle `id`.
pub fn chunks_filter(fleet: &str, id: &str) -> String {
    format!("{fleet}/{BUNDLE_LEVEL}/{id}/+")
}

/// `FLEET/+/model`: what every camera of the fleet runs (retained).
pub fn models_filter(fleet: &str) -> String {
    format!("{fleet}/+/model")
}

/// The camera's name in a topic `FLEET/NAME/model`.
pub fn camera_of_model_topic<'t>(fleet: &str, topic: &'t str) -> Option<&'t str> {
    topic
        .strip_prefix(fleet)?
        .strip_prefix('/')?
        .strip_suffix("/model")
        .filter(|name| !name.contains('/'))
}

/// The chunks of the bundle file `bytes`: (topic, bytes).
pub fn chunks<'b>(
    fleet: &str,
    announcement: &Announcement,
    bytes: &'b [u8],
) -> Vec<(String, &'b [u8])> {
    bytes
        .chunks(announcement.chunk_size as usize)
        .enumerate()
        .map(|(n, chunk)| (chunk_topic(fleet, announcement.id(), n as u32), chunk))
        .collect()
}

/// A bundle being put together from its chunks, in whatever order they come.
#[derive(Debug)]
pub struct Assembly {
    /// What is being put together.
    pub announcement: Announcement,
    prefix: String,
    parts: Vec<Option<Vec<u8>>>,
    received: usize,
}

impl Assembly {
    /// Waits for the chunks of `announcement`, published under `fleet`.
    pub fn new(fleet: &str, announcement: Announcement) -> Assembly {
        Assembly {
            prefix: format!("{fleet}/{BUNDLE_LEVEL}/{}/", announcement.id()),
            parts: vec![None; announcement.chunks as usize],
            received: 0,
            announcement,
        }
    }

    /// Takes the message on `topic` if it is one of the chunks; when it was the last one missing, the whole
    /// file (check it with [`Announcement::verify`] before use).
    pub fn add(&mut self, topic: &str, payload: &[u8]) -> Option<Vec<u8>> {
        let n: usize = topic.strip_prefix(&self.prefix)?.parse().ok()?;
        let slot = self.parts.get_mut(n)?;
        // An empty retained message clears a topic: not a chunk.
        if payload.is_empty() || slot.is_some() {
            return None;
        }
        *slot = Some(payload.to_vec());
        self.received += 1;
        if self.received < self.parts.len() {
            return None;
        }
        let bytes: Vec<u8> = self
            .parts
            .iter_mut()
            .flat_map(|p| p.take().unwrap_or_default())
            .collect();
        self.received = 0;
        Some(bytes)
    }

    /// Chunks received so far, and of how many.
    pub fn progress(&self) -> (usize, usize) {
        (self.received, self.parts.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_goes_out_in_chunks_and_comes_back_whole_in_any_order() {
        let bytes: Vec<u8> = (0..(CHUNK * 2 + 100))
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let a = Announcement::of(&bytes, None, 1).expect("announcement");
        assert_eq!(a.chunks, 3);
        let parsed = Announcement::parse(&serde_json::to_vec(&a).expect("json")).expect("parse");
        assert_eq!(parsed, a);
        let mut assembly = Assembly::new("home", parsed);
        let parts = chunks("home", &a, &bytes);
        assert_eq!(parts[0].0, format!("home/bundle/{}/0", a.id()));
        assert!(assembly.add(&parts[2].0, parts[2].1).is_none());
        assert!(assembly.add("home/bundle/other/0", b"x").is_none());
        assert!(
            assembly.add(&parts[0].0, b"").is_none(),
            "a cleared topic is no chunk"
        );
        assert!(assembly.add(&parts[0].0, parts[0].1).is_none());
        assert_eq!(assembly.progress(), (2, 3));
        let whole = assembly.add(&parts[1].0, parts[1].1).expect("complete");
        assert_eq!(whole, bytes);
        assert_eq!(a.verify(&whole), Ok(()));
    }

    #[test]
    fn a_wrong_checksum_or_inconsistent_announcement_is_refused() {
        let bytes = vec![5u8; 1000];
        let mut a = Announcement::of(&bytes, Some(vec!["porch".into()]), 1).expect("announcement");
        assert!(a.is_for("porch") && !a.is_for("garage"));
        a.file_sha256 = sha256_hex(b"something else");
        let mut assembly = Assembly::new("home", a.clone());
        let topic = chunk_topic("home", a.id(), 0);
        let whole = assembly.add(&topic, &bytes).expect("complete");
        let error = a.verify(&whole).expect_err("wrong");
        assert!(
            error
                .to_string()
                .contains("is not the one its publisher announced"),
            "{error}"
        );
        a.chunks = 7;
        let error = Announcement::parse(&serde_json::to_vec(&a).expect("json")).expect_err("bad");
        assert!(matches!(error, FleetError::Announcement(_)));
        assert!(Announcement::parse(b"{").is_err());
    }

    #[test]
    fn a_camera_of_a_fleet_is_named_by_its_base_topic() {
        assert_eq!(fleet_of("home/porch"), Ok(("home", "porch")));
        assert_eq!(fleet_of("lookout/yard/cam1"), Ok(("lookout/yard", "cam1")));
        assert!(matches!(fleet_of("porch"), Err(FleetError::NoFleet(_))));
        let reserved = fleet_of("home/bundle").expect_err("the fleet's own level");
        assert!(matches!(reserved, FleetError::ReservedName(_)));
        assert!(reserved.to_string().contains("cannot be named `bundle`"));
        assert_eq!(fleet_of("home/bundles"), Ok(("home", "bundles")));
        assert_eq!(
            camera_of_model_topic("home", "home/porch/model"),
            Some("porch")
        );
        assert_eq!(camera_of_model_topic("home", "home/porch/bowl/model"), None);
        assert_eq!(camera_of_model_topic("home", "garden/porch/model"), None);
    }
}

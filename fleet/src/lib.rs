//! A fleet of Lookout cameras over the MQTT broker they already use (no server of our own).
//!
//! [`target`] is the broker address both binaries take (`--mqtt mqtt://[user@]host[:port]/BASE`), [`broker`]
//! turns it and its credentials into a client's options (TLS through rustls), [`protocol`] is how a bundle
//! travels: announced and chunked as retained messages under the fleet's topic, put together and verified by
//! each camera. `lookout publish` and `lookout fleet` (host) send and list; `lookout-edge watch --mqtt`
//! receives, self-tests and switches (edge), and reports what it runs on `FLEET/CAMERA/model`.

pub mod broker;
pub mod protocol;
pub mod publish;
pub mod target;

pub use broker::{secret, Broker, BrokerError};
pub use protocol::{Announcement, Assembly, FleetError};
pub use target::MqttTarget;

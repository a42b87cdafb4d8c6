//! A broker to connect to: the address, the credentials and the certificates to trust, resolved once, the
//! same way for `watch --mqtt` and `lookout publish`.

use std::path::Path;
use std::sync::Arc;

use rumqttc::{ConnectReturnCode, ConnectionError, MqttOptions, TlsConfiguration, Transport};

use crate::target::MqttTarget;

/// Why the broker's settings are not usable. One line each, naming the flag.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// A file named by a flag could not be read.
    #[error("{flag} {path}: {source}")]
    Read {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A password without a user name.
    #[error("an MQTT password needs a user name: --mqtt-username USER or mqtt://USER@host/...")]
    PasswordWithoutUser,
    /// `--mqtt-ca` with a plain `mqtt://` address.
    #[error("--mqtt-ca is for TLS: use an mqtts:// address")]
    CaWithoutTls,
    /// The certificates to trust are not usable.
    #[error("--mqtt-ca: {0}")]
    BadCa(String),
}

/// A broker address with what it takes to log in.
#[derive(Debug, Clone)]
pub struct Broker {
    /// Where, and the topic base.
    pub target: MqttTarget,
    /// The password (from a file or `LOOKOUT_MQTT_PASSWORD`, never from the address).
    pub password: Option<String>,
    /// PEM certificates to trust for `mqtts://` (default: the system's).
    pub ca_pem: Option<Vec<u8>>,
}

impl Broker {
    /// `target` with `--mqtt-username`, the password from `--mqtt-password-file` (its first line) or the
    /// `LOOKOUT_MQTT_PASSWORD` environment variable, and `--mqtt-ca`.
    pub fn resolve(
        target: &MqttTarget,
        username: Option<&str>,
        password_file: Option<&Path>,
        ca_file: Option<&Path>,
    ) -> Result<Broker, BrokerError> {
        let read = |flag: &'static str, path: &Path| {
            std::fs::read(path).map_err(|source| BrokerError::Read {
                flag,
                path: path.display().to_string(),
                source,
            })
        };
        let mut target = target.clone();
        if let Some(user) = username {
            target.username = Some(user.to_string());
        }
        let password =
            secret(password_file, "LOOKOUT_MQTT_PASSWORD").map_err(|source| BrokerError::Read {
                flag: "--mqtt-password-file",
                path: password_file
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                source,
            })?;
        if password.is_some() && target.username.is_none() {
            return Err(BrokerError::PasswordWithoutUser);
        }
        let ca_pem = match ca_file {
            Some(_) if !target.tls => return Err(BrokerError::CaWithoutTls),
            Some(path) => Some(read("--mqtt-ca", path)?),
            None => None,
        };
        Ok(Broker {
            target,
            password,
            ca_pem,
        })
    }

    /// rumqttc options for a client called `client_id`: the address, the credentials, TLS.
    pub fn options(&self, client_id: &str) -> Result<MqttOptions, BrokerError> {
        let target = &self.target;
        let mut options = MqttOptions::new(client_id, target.host.clone(), target.port);
        if let Some(user) = &target.username {
            options.set_credentials(user.clone(), self.password.clone().unwrap_or_default());
        }
        if target.tls {
            // One process-wide crypto provider (ring); a second install is refused harmlessly.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let tls = match &self.ca_pem {
                Some(pem) => {
                    if !String::from_utf8_lossy(pem).contains("-----BEGIN CERTIFICATE-----") {
                        return Err(BrokerError::BadCa(
                            "the file holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
                                .into(),
                        ));
                    }
                    TlsConfiguration::Simple {
                        ca: pem.clone(),
                        alpn: None,
                        client_auth: None,
                    }
                }
                None => TlsConfiguration::Rustls(Arc::new(system_roots()?)),
            };
            options.set_transport(Transport::tls_with_config(tls));
        }
        Ok(options)
    }
}

/// The broker's refusal of our credentials or identity, in words, if that is what `error` is.
pub fn refusal(error: &ConnectionError) -> Option<String> {
    let ConnectionError::ConnectionRefused(code) = error else {
        return None;
    };
    Some(match code {
        ConnectReturnCode::BadUserNamePassword => {
            "the broker refused the user name or password (check --mqtt-username and \
             --mqtt-password-file / LOOKOUT_MQTT_PASSWORD)"
                .into()
        }
        ConnectReturnCode::NotAuthorized => {
            "the broker says this client is not authorized (check the user name, --mqtt-password-file / \
             LOOKOUT_MQTT_PASSWORD, and the broker's ACL)"
                .into()
        }
        ConnectReturnCode::BadClientId => {
            "the broker refused the client id (set another with --mqtt-client-id)".into()
        }
        other => format!("the broker refused the connection ({other:?})"),
    })
}

/// A rustls client configuration trusting the system's certificates.
fn system_roots() -> Result<rustls::ClientConfig, BrokerError> {
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    for cert in found.certs {
        let _ = roots.add(cert);
    }
    if roots.is_empty() {
        return Err(BrokerError::BadCa(
            "no system certificates found to check the broker with; give the broker's CA with --mqtt-ca FILE"
                .into(),
        ));
    }
    Ok(rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A password kept out of the command line: the first line of `file` when one is given, else the environment
/// variable `env` (for a service's environment file), else none. One rule for every `--…-password-file`.
pub fn secret(file: Option<&Path>, env: &str) -> std::io::Result<Option<String>> {
    match file {
        Some(path) => {
            let text = std::fs::read(path)?;
            let text = String::from_utf8_lossy(&text);
            Ok(Some(text.lines().next().unwrap_or_default().to_string()))
        }
        None => Ok(std::env::var(env).ok()),
    }
}

//! A real MQTT broker for the tests: Debian's mosquitto on a free loopback port, its files in a test folder.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, which};

/// Whether mosquitto and its clients are installed; under CI their absence fails the test.
pub fn have_mosquitto(test: &str) -> bool {
    let found = ["mosquitto", "mosquitto_sub", "mosquitto_passwd"]
        .iter()
        .all(|p| which(p).is_some() || Path::new("/usr/sbin").join(p).is_file());
    if !found {
        lookout_testdata::missing(
            test,
            "mosquitto is not installed (apt-get install mosquitto mosquitto-clients; .ci/run does)",
        );
    }
    found
}

pub fn mosquitto_bin() -> PathBuf {
    which("mosquitto").unwrap_or_else(|| PathBuf::from("/usr/sbin/mosquitto"))
}

/// A mosquitto broker on a loopback port, with its configuration in `dir`; killed when dropped.
pub struct Broker {
    child: Option<Child>,
    conf: PathBuf,
    /// The loopback port it listens on.
    pub port: u16,
}

impl Broker {
    /// Starts a broker with `extra` configuration lines, its files in `dir`.
    pub fn start(dir: &Path, extra: &str) -> Broker {
        let port = free_port();
        let data = dir.join("broker");
        std::fs::create_dir_all(&data).expect("broker folder");
        let conf = data.join("mosquitto.conf");
        // `user root`: run as root (as tests do), mosquitto would switch to its own user and could not write
        // the persistence file here. Persistence keeps the subscriber's session through the restart.
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nuser root\npersistence true\npersistence_location {}/\n\
                 autosave_interval 1\nlog_dest file {}/broker.log\n{extra}\n",
                data.display(),
                data.display()
            ),
        )
        .expect("broker config");
        let mut broker = Broker {
            child: None,
            conf,
            port,
        };
        broker.run();
        broker
    }

    /// Starts it (again).
    pub fn run(&mut self) {
        let child = Command::new(mosquitto_bin())
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mosquitto did not listen"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the broker the way a service manager does (SIGTERM: it saves its state and exits).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// One message as mosquitto_sub printed it.
#[derive(Debug, Clone)]
pub struct Received {
    /// Whether the broker sent it as retained.
    pub retained: bool,
    pub topic: String,
    pub payload: String,
}

/// The retained messages under `topics` now, as a fresh client sees them on subscribing; `extra` are more
/// mosquitto_sub arguments (credentials, TLS).
pub fn retained(port: u16, topics: &[&str], extra: &[&str]) -> Vec<Received> {
    let mut cmd = Command::new(which("mosquitto_sub").expect("mosquitto_sub"));
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "--retained-only",
    ])
    .args(["-W", "2", "-F", "%r\t%t\t%p"])
    .args(extra);
    for topic in topics {
        cmd.args(["-t", topic]);
    }
    let out = cmd.output().expect("mosquitto_sub");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, '\t');
            Some(Received {
                retained: parts.next()? == "1",
                topic: parts.next()?.to_string(),
                payload: parts.next()?.to_string(),
            })
        })
        .collect()
}

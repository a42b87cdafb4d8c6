//! Resumable, verified HTTP downloads into the cache.
//!
//! Bytes go to `<dest>.part`; a later attempt (in this run or the next) asks for the rest with an HTTP Range
//! request. Only a file whose sha256 matches is renamed to `dest`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use crate::ModelsError;

/// Transfer attempts per download: a dropped connection resumes from where it stopped.
const ATTEMPTS: usize = 3;

/// What a finished download must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedDigest(pub String);

impl ExpectedDigest {
    /// True if `actual` (full lowercase hex) is this digest or starts with this prefix (torchvision's check).
    pub fn matches(&self, actual: &str) -> bool {
        let expected = self.0.to_ascii_lowercase();
        !expected.is_empty() && actual.starts_with(&expected)
    }
}

/// Why one transfer attempt stopped.
enum Attempt {
    /// The `.part` file holds the whole body.
    Complete,
    /// The connection dropped; the `.part` file keeps what arrived.
    Interrupted(String),
}

/// Downloads `url` to `dest` (resuming a `.part` file), verifies its sha256, and returns the full digest.
pub fn download(
    url: &str,
    dest: &Path,
    expected: &ExpectedDigest,
    arch: &str,
    progress: bool,
) -> Result<String, ModelsError> {
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ModelsError::io("creating", dir, e))?;
    }
    let part = part_path(dest);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(Duration::from_secs(60)))
        .timeout_recv_body(Some(Duration::from_secs(60)))
        .build()
        .into();
    let bar = if progress {
        ProgressBar::new(0)
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(
        dest.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
    );
    let mut last_reason = String::new();
    for _ in 0..ATTEMPTS {
        match transfer(&agent, url, &part, arch, &bar)? {
            Attempt::Complete => {
                last_reason.clear();
                break;
            }
            Attempt::Interrupted(reason) => last_reason = reason,
        }
    }
    bar.finish_and_clear();
    if !last_reason.is_empty() {
        return Err(ModelsError::Download {
            url: url.to_string(),
            reason: format!("{last_reason} ({ATTEMPTS} attempts; run the command again to resume)"),
        });
    }
    let actual = sha256_file(&part)?;
    if !expected.matches(&actual) {
        // A wrong file is worthless: drop it so the next pull starts clean.
        let _ = std::fs::remove_file(&part);
        return Err(ModelsError::Checksum {
            path: dest.to_path_buf(),
            expected: expected.0.clone(),
            actual,
        });
    }
    std::fs::rename(&part, dest).map_err(|e| ModelsError::io("renaming into", dest, e))?;
    Ok(actual)
}

/// The partial-download file of `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// sha256 of a file, lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, ModelsError> {
    let mut file = File::open(path).map_err(|e| ModelsError::io("reading", path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ModelsError::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One GET, appending to `part` from its current length.
fn transfer(
    agent: &ureq::Agent,
    url: &str,
    part: &Path,
    arch: &str,
    bar: &ProgressBar,
) -> Result<Attempt, ModelsError> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    let mut request = agent.get(url);
    if have > 0 {
        request = request.header("Range", format!("bytes={have}-"));
    }
    let response = match request.call() {
        Ok(response) => response,
        Err(e) if have > 0 && is_interruption(&e) => {
            return Ok(Attempt::Interrupted(e.to_string()))
        }
        Err(e) => return Err(connect_error(url, arch, e)),
    };
    let status = response.status().as_u16();
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let (mut file, offset) = match status {
        206 => {
            // The server must resume exactly where our file ends.
            let range = header("content-range").unwrap_or_default();
            if !range.starts_with(&format!("bytes {have}-")) {
                return Err(ModelsError::Download {
                    url: url.to_string(),
                    reason: format!("asked for bytes {have}- but the server sent `{range}`"),
                });
            }
            let file = OpenOptions::new()
                .append(true)
                .open(part)
                .map_err(|e| ModelsError::io("opening", part, e))?;
            (file, have)
        }
        200 => (
            File::create(part).map_err(|e| ModelsError::io("creating", part, e))?,
            0,
        ),
        // Our `.part` already holds everything the server has; the checksum decides.
        416 if have > 0 => return Ok(Attempt::Complete),
        other => {
            return Err(ModelsError::Download {
                url: url.to_string(),
                reason: format!("the server answered HTTP {other}"),
            })
        }
    };
    let length = header("content-length").and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = length {
        bar.set_length(offset + length);
    }
    bar.set_position(offset);
    let mut body = response.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut received = 0u64;
    let outcome = loop {
        match body.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => {
                file.write_all(&buf[..n])
                    .map_err(|e| ModelsError::io("writing", part, e))?;
                received += n as u64;
                bar.inc(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Some(e.to_string()),
        }
    };
    file.flush()
        .map_err(|e| ModelsError::io("writing", part, e))?;
    file.sync_all()
        .map_err(|e| ModelsError::io("writing", part, e))?;
    match (outcome, length) {
        (Some(reason), _) => Ok(Attempt::Interrupted(reason)),
        (None, Some(length)) if received < length => Ok(Attempt::Interrupted(format!(
            "connection closed after {received} of {length} bytes"
        ))),
        (None, _) => Ok(Attempt::Complete),
    }
}

/// Errors worth another attempt once some bytes have arrived.
fn is_interruption(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::Timeout(_) | ureq::Error::Protocol(_)
    )
}

/// Maps a failed request to the one-line error: "offline" for anything that means no route to the server.
fn connect_error(url: &str, arch: &str, e: ureq::Error) -> ModelsError {
    let offline = matches!(
        e,
        ureq::Error::Io(_)
            | ureq::Error::Timeout(_)
            | ureq::Error::HostNotFound
            | ureq::Error::ConnectionFailed
            | ureq::Error::Tls(_)
    );
    if offline {
        ModelsError::Offline {
            url: url.to_string(),
            reason: e.to_string(),
            arch: arch.to_string(),
        }
    } else {
        ModelsError::Download {
            url: url.to_string(),
            reason: e.to_string(),
        }
    }
}

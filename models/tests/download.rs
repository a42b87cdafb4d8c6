//! The download code against a local HTTP server (127.0.0.1 only) that serves a file, honours or ignores
//! Range requests, and can drop the connection midway.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread;

use lookout_models::download::{download, part_path, ExpectedDigest};
use lookout_models::ModelsError;
use sha2::{Digest, Sha256};

/// How the test server behaves.
#[derive(Clone, Copy)]
struct Behaviour {
    /// On the first request, send the headers for the whole body but only this many bytes, then close.
    drop_first_after: Option<usize>,
    /// Answer 200 with the whole file even when asked for a range.
    ignore_range: bool,
}

struct Server {
    url: String,
    /// The `Range` start of each request received (None = no Range header).
    requests: Arc<Mutex<Vec<Option<u64>>>>,
}

fn serve(body: Vec<u8>, behaviour: Behaviour) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/weights.pth", listener.local_addr().unwrap());
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    thread::spawn(move || {
        for (i, stream) in listener.incoming().enumerate() {
            let Ok(stream) = stream else { continue };
            let range = handle(stream, &body, behaviour, i == 0);
            log.lock().unwrap().push(range);
        }
    });
    Server { url, requests }
}

fn handle(mut stream: TcpStream, body: &[u8], behaviour: Behaviour, first: bool) -> Option<u64> {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("range: bytes=") {
            range = value.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let start = if behaviour.ignore_range {
        0
    } else {
        range.unwrap_or(0) as usize
    };
    let head = if start > 0 {
        format!(
            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nConnection: close\r\n\r\n",
            body.len() - start,
            body.len() - 1,
            body.len()
        )
    } else {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
    };
    let _ = stream.write_all(head.as_bytes());
    let end = match behaviour.drop_first_after {
        Some(n) if first => n,
        _ => body.len(),
    };
    let _ = stream.write_all(&body[start..end]);
    let _ = stream.flush();
    range
}

/// 300 KB of deterministic, incompressible-looking bytes.
fn fixture() -> (Vec<u8>, String) {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let body: Vec<u8> = (0..300_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    let digest = Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    (body, digest)
}

fn assert_clean(dest: &Path, body: &[u8]) {
    assert_eq!(std::fs::read(dest).unwrap(), body);
    assert!(!part_path(dest).exists(), "the .part file was left behind");
}

#[test]
fn downloads_and_verifies_a_file() {
    let (body, digest) = fixture();
    let server = serve(
        body.clone(),
        Behaviour {
            drop_first_after: None,
            ignore_range: false,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.pth");
    let got = download(
        &server.url,
        &dest,
        &ExpectedDigest(digest.clone()),
        "mobilenet_v3_large",
        false,
    )
    .unwrap();
    assert_eq!(got, digest);
    assert_clean(&dest, &body);
    assert_eq!(*server.requests.lock().unwrap(), vec![None]);
}

#[test]
fn accepts_a_torchvision_style_digest_prefix() {
    let (body, digest) = fixture();
    let server = serve(
        body.clone(),
        Behaviour {
            drop_first_after: None,
            ignore_range: false,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.pth");
    download(
        &server.url,
        &dest,
        &ExpectedDigest(digest[..8].to_string()),
        "x",
        false,
    )
    .unwrap();
    assert_clean(&dest, &body);
}

#[test]
fn resumes_after_the_connection_drops_midway() {
    let (body, digest) = fixture();
    let server = serve(
        body.clone(),
        Behaviour {
            drop_first_after: Some(120_000),
            ignore_range: false,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.pth");
    download(&server.url, &dest, &ExpectedDigest(digest), "x", false).unwrap();
    assert_clean(&dest, &body);
    // The second request asked for exactly the missing bytes.
    assert_eq!(*server.requests.lock().unwrap(), vec![None, Some(120_000)]);
}

#[test]
fn resumes_a_part_file_left_by_an_earlier_run() {
    let (body, digest) = fixture();
    let server = serve(
        body.clone(),
        Behaviour {
            drop_first_after: None,
            ignore_range: false,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.pth");
    std::fs::write(part_path(&dest), &body[..77_777]).unwrap();
    download(&server.url, &dest, &ExpectedDigest(digest), "x", false).unwrap();
    assert_clean(&dest, &body);
    assert_eq!(*server.requests.lock().unwrap(), vec![Some(77_777)]);
}

#[test]
fn starts_over_when_the_server_ignores_range() {
    let (body, digest) = fixture();
    let server = serve(
        body.clone(),
        Behaviour {
            drop_first_after: None,
            ignore_range: true,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.pth");
    std::fs::write(part_path(&dest), b"stale bytes from some other file").unwrap();
    download(&server.url, &dest, &ExpectedDigest(digest), "x", false).unwrap();
    assert_clean(&dest, &body);
}

#[test]
fn rejects_a_file_with_the_wrong_digest_and_keeps_nothing() {
    let (body, _) = fixture();
    let server = serve(
        body,
        Behaviour {
            drop_first_after: None,
            ignore_range: false,
        },
    );
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.pth");
    let err = download(
        &server.url,
        &dest,
        &ExpectedDigest("8738ca79".into()),
        "x",
        false,
    )
    .unwrap_err();
    assert!(matches!(err, ModelsError::Checksum { .. }), "{err}");
    assert!(!dest.exists() && !part_path(&dest).exists());
}

#[test]
fn no_server_is_a_one_line_offline_error_that_suggests_import() {
    // Bind then drop a listener: nothing listens on that port any more.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("w.pth");
    let url = format!("http://127.0.0.1:{port}/mobilenet_v3_large-5c1a4163.pth");
    let err = download(
        &url,
        &dest,
        &ExpectedDigest("5c1a4163".into()),
        "mobilenet_v3_large",
        false,
    )
    .unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, ModelsError::Offline { .. }), "{message}");
    assert!(!message.contains('\n'), "not one line: {message}");
    assert!(
        message.contains("lookout backbone import FILE.pth --arch mobilenet_v3_large"),
        "{message}"
    );
    assert!(!dest.exists());
}

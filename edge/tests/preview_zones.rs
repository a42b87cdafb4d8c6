//! The live page with zones and the empty scene, over HTTP (the browser test of the page is the e2e crate's).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use lookout_edge::pipeline::preview::{PreviewOptions, PreviewSink};
use lookout_edge::pipeline::{FrameReport, Regions, Sink, Zone};
use lookout_edge::source::RawFrame;
use lookout_edge::Prediction;
use lookout_shared::Region;
use serde_json::Value;

/// The body of `GET path` from the preview at `url` (`http://ADDR/`).
fn get(url: &str, path: &str) -> String {
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let mut stream = TcpStream::connect(&addr).expect("connect to the preview");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    assert!(
        head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200"),
        "{head}"
    );
    body.to_string()
}

fn prediction(label: usize, background: bool) -> Prediction {
    Prediction {
        label,
        score: 0.9,
        probabilities: if label == 0 {
            vec![0.9, 0.05, 0.05]
        } else {
            vec![0.05, 0.05, 0.9]
        },
        preprocess: Duration::ZERO,
        inference: Duration::ZERO,
        ood_score: None,
        unknown: false,
        background,
    }
}

#[test]
fn the_page_draws_the_zones_and_shows_the_empty_scene_as_nothing() {
    let zones: Vec<Zone> = ["bowl=0,0,0.5,1", "door=0.5,0.25,0.5,0.75"]
        .iter()
        .map(|z| z.parse().expect("zone"))
        .collect();
    let labels: Vec<String> = ["cat", "dog", "background"].map(String::from).to_vec();
    let (mut sink, url) = PreviewSink::start(
        "127.0.0.1:0".parse().expect("address"),
        None,
        PreviewOptions {
            labels: labels.clone(),
            background: Some(2),
            smooth: 1,
            regions: Regions::zones(zones.clone()).expect("zones"),
        },
    )
    .expect("preview starts");

    // Before any frame, the zones are already there to draw.
    let status: Value = serde_json::from_str(&get(&url, "/status.json")).expect("JSON");
    assert_eq!(status["zones"][1]["name"], "door", "{status}");
    assert_eq!(
        status["zones"][1]["region"],
        serde_json::json!([0.5, 0.25, 0.5, 0.75])
    );

    let raw = RawFrame::Rgb(image::RgbImage::new(8, 8));
    let cat = prediction(0, false);
    let empty = prediction(2, true);
    for (zone, prediction) in zones.iter().zip([&cat, &empty]) {
        sink.frame(&FrameReport {
            number: 1,
            name: None,
            prediction,
            raw: &raw,
            crop: None,
            zone: Some(&zone.name),
            region: zone.region,
            label: &labels[prediction.label],
            latency: Duration::from_millis(5),
            fps: 10.0,
            behind: 0,
            newer_at_start: 0,
            model_ran: true,
        });
    }
    let status: Value = serde_json::from_str(&get(&url, "/status.json")).expect("JSON");
    let zone = |i: usize| &status["zones"][i];
    assert_eq!(
        (zone(0)["name"].as_str(), zone(0)["answer"].as_str()),
        (Some("bowl"), Some("cat"))
    );
    assert_eq!(
        (zone(1)["name"].as_str(), zone(1)["answer"].as_str()),
        (Some("door"), Some("nothing"))
    );
    assert_eq!(zone(1)["background"], true);
    // The empty scene gets no bar.
    let bars: Vec<&str> = zone(1)["smoothed"]
        .as_array()
        .expect("bars")
        .iter()
        .map(|b| b["label"].as_str().expect("label"))
        .collect();
    assert_eq!(bars, ["cat", "dog"]);

    // The page draws what status.json lists, and turns a dragged rectangle into the flag to paste.
    let page = get(&url, "/");
    for needed in ["s.zones", "pointerdown", "\"--zone \"", "\"nothing\""] {
        assert!(page.contains(needed), "the page lacks {needed}");
    }
    sink.finish(&Default::default());

    // An --roi is drawn as one region named "roi"; the whole frame draws nothing.
    let roi = Region::new(0.25, 0.25, 0.5, 0.5).expect("region");
    for (regions, want) in [
        (
            Regions::Frame(roi),
            serde_json::json!([{"name": "roi", "region": [0.25, 0.25, 0.5, 0.5]}]),
        ),
        (Regions::default(), serde_json::json!([])),
    ] {
        let (_sink, url) = PreviewSink::start(
            "127.0.0.1:0".parse().expect("address"),
            None,
            PreviewOptions {
                labels: labels.clone(),
                background: None,
                smooth: 1,
                regions,
            },
        )
        .expect("preview starts");
        let status: Value = serde_json::from_str(&get(&url, "/status.json")).expect("JSON");
        assert_eq!(status["zones"], want);
    }
}

//! The watch loop driven as a library, without the binary: a folder source, the real cat/dog bundle, and
//! recording sinks.

mod common;

use std::path::PathBuf;

use lookout_edge::pipeline::{
    ChangeKind, FrameReport, LabelChange, Pipeline, Sink, WatchOptions, WatchSummary,
};
use lookout_edge::source::dir::DirSource;
use lookout_edge::{EdgeError, Model, RuntimeOptions};

/// Everything a sink is told, in order.
#[derive(Debug, Default, PartialEq)]
struct Recorder {
    frames: Vec<(u64, String)>,
    errors: Vec<(u64, Option<String>)>,
    changes: Vec<(ChangeKind, String, u64)>,
    cat_active_after_frame: Vec<bool>,
    finished: Option<(u64, u64, u64, u64)>,
}

impl Sink for Recorder {
    fn frame(&mut self, f: &FrameReport<'_>) {
        self.frames.push((f.number, f.label.to_string()));
    }

    fn frame_error(&mut self, frame: u64, name: Option<&str>, _error: &EdgeError) {
        self.errors.push((frame, name.map(str::to_string)));
    }

    fn change(&mut self, c: &LabelChange<'_>) {
        self.changes
            .push((c.kind, c.label_name.to_string(), c.frame));
    }

    fn after_frame(&mut self, active: &dyn Fn(usize) -> bool) {
        // Label 1 of the test bundle is "cat".
        self.cat_active_after_frame.push(active(1));
    }

    fn finish(&mut self, s: &WatchSummary) {
        self.finished = Some((s.captured, s.classified, s.failed, s.events));
    }
}

fn options(max_frames: Option<u64>) -> WatchOptions {
    WatchOptions {
        fps: 0.0,
        no_drop: true,
        smooth: 3,
        threshold: 0.8,
        hysteresis: 0.1,
        max_frames,
        on_unknown: false,
    }
}

/// The cat/dog bundle and a `dir:` source over six cat photos and a broken link named like a photo (returned
/// with the folder that holds them).
fn cats_with_a_broken_link(
    shared: &std::path::Path,
) -> (Model, DirSource, tempfile::TempDir, PathBuf) {
    let bundles = common::bundles(shared);
    let model = Model::load(&bundles.sigmoid, &RuntimeOptions::default()).expect("bundle");
    let dir = tempfile::tempdir().expect("temp dir");
    for (i, photo) in common::photos(shared, "Cat", 6).iter().enumerate() {
        std::fs::copy(photo, dir.path().join(format!("{i:02}.jpg"))).expect("copy photo");
    }
    let gone = dir.path().join("99-gone.jpg");
    std::os::unix::fs::symlink(dir.path().join("nowhere.jpg"), &gone).expect("symlink");
    let source = DirSource::open(dir.path().to_path_buf()).expect("dir source");
    (model, source, dir, gone)
}

#[test]
fn every_sink_sees_every_frame_event_and_error_in_order() {
    let shared = lookout_testdata::require_shared!();
    let (mut model, source, _dir, gone) = cats_with_a_broken_link(&shared);

    let (mut first, mut second) = (Recorder::default(), Recorder::default());
    let outcome = Pipeline::new(options(None))
        .run(Box::new(source), &mut model, &mut [&mut first, &mut second])
        .expect("run");

    assert!(outcome.source_error.is_none(), "{:?}", outcome.source_error);
    assert_eq!(first, second, "sinks are told the same things");
    assert_eq!(first.frames.len(), 6, "{first:?}");
    assert!(
        first.frames.iter().all(|(_, label)| label == "cat"),
        "{first:?}"
    );
    // The broken link is one failed frame, with its path: the stream goes on.
    assert_eq!(
        first.errors,
        vec![(7, Some(gone.display().to_string()))],
        "{first:?}"
    );
    // One cat event once the 3-frame window is full, and the label stays active from then on.
    assert_eq!(
        first.changes,
        vec![(ChangeKind::Fired, "cat".to_string(), 3)],
        "{first:?}"
    );
    assert_eq!(
        first.cat_active_after_frame,
        vec![false, false, true, true, true, true]
    );
    assert_eq!(first.finished, Some((7, 6, 1, 1)));
    assert_eq!(outcome.summary.dropped, 0);
}

#[test]
fn max_frames_stops_the_run_after_that_many_results() {
    let shared = lookout_testdata::require_shared!();
    let (mut model, source, _dir, _) = cats_with_a_broken_link(&shared);

    let mut recorder = Recorder::default();
    let outcome = Pipeline::new(options(Some(2)))
        .run(Box::new(source), &mut model, &mut [&mut recorder])
        .expect("run");
    assert!(outcome.source_error.is_none());
    assert_eq!(recorder.frames.len(), 2, "{recorder:?}");
    assert_eq!(outcome.summary.classified, 2);
    assert!(recorder.changes.is_empty(), "{recorder:?}");
}

//! The watch loop driven as a library, without the binary: a folder source, the real cat/dog bundle, and
//! recording sinks.

mod common;

use std::path::PathBuf;

use lookout_edge::pipeline::{
    Active, ChangeKind, FrameReport, LabelChange, Pipeline, Regions, Sink, WatchOptions,
    WatchSummary, Zone,
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

    fn after_frame(&mut self, active: &Active<'_>) {
        // Label 1 of the test bundle is "cat".
        self.cat_active_after_frame.push(active.is_active(None, 1));
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
        regions: Regions::default(),
        motion: None,
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

/// One report: frame number, zone, answer, whether it is the empty scene, the crop's size.
type ZoneFrame = (u64, Option<String>, String, bool, Option<(u32, u32)>);

/// What a sink sees with zones: every report's zone, answer and crop size, every change's zone, and where the
/// labels are active after each frame.
#[derive(Debug, Default)]
struct ZoneRecorder {
    frames: Vec<ZoneFrame>,
    changes: Vec<(ChangeKind, String, Option<String>, u64)>,
    /// (cat in left, cat in right, dog in right, dog anywhere) after each frame.
    active: Vec<(bool, bool, bool, bool)>,
    summary: Option<WatchSummary>,
}

impl Sink for ZoneRecorder {
    fn frame(&mut self, f: &FrameReport<'_>) {
        self.frames.push((
            f.number,
            f.zone.map(str::to_string),
            f.answer().to_string(),
            f.prediction.background,
            f.crop.map(|c| c.dimensions()),
        ));
    }

    fn change(&mut self, c: &LabelChange<'_>) {
        self.changes.push((
            c.kind,
            c.label_name.to_string(),
            c.zone.map(str::to_string),
            c.frame,
        ));
    }

    fn after_frame(&mut self, active: &Active<'_>) {
        self.active.push((
            active.is_active(Some("left"), 1),
            active.is_active(Some("right"), 1),
            active.is_active(Some("right"), 0),
            active.is_active(None, 0),
        ));
    }

    fn finish(&mut self, s: &WatchSummary) {
        self.summary = Some(s.clone());
    }
}

fn zones(texts: &[&str]) -> Regions {
    Regions::zones(texts.iter().map(|t| t.parse::<Zone>().expect(t)).collect()).expect("zones")
}

#[test]
fn each_zone_is_cropped_classified_and_triggered_on_its_own() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let mut model = Model::load(&bundles.sigmoid, &RuntimeOptions::default()).expect("bundle");
    let dir = common::cats_beside_dogs(&shared, 4);
    let source = DirSource::open(dir.path().to_path_buf()).expect("dir source");
    let mut opts = options(None);
    opts.regions = zones(&["left=0,0,0.5,1", "right=0.5,0,0.5,1"]);

    let mut recorder = ZoneRecorder::default();
    let outcome = Pipeline::new(opts)
        .run(Box::new(source), &mut model, &mut [&mut recorder])
        .expect("run");

    // Two reports per frame, zone by zone, each of a 320×320 crop: the cat on the left, the dog on the right.
    assert_eq!(recorder.frames.len(), 8, "{:?}", recorder.frames);
    for (i, (number, zone, answer, _, crop)) in recorder.frames.iter().enumerate() {
        assert_eq!(*number, i as u64 / 2 + 1);
        let (want_zone, want_answer) = if i % 2 == 0 {
            ("left", "cat")
        } else {
            ("right", "dog")
        };
        assert_eq!(zone.as_deref(), Some(want_zone));
        assert_eq!(answer, want_answer, "{:?}", recorder.frames);
        assert_eq!(*crop, Some((320, 320)));
    }
    // One event per zone once its 3-frame window is full, each in its own zone.
    assert_eq!(
        recorder.changes,
        vec![
            (ChangeKind::Fired, "cat".into(), Some("left".into()), 3),
            (ChangeKind::Fired, "dog".into(), Some("right".into()), 3),
        ]
    );
    let active_after = (true, false, true, true);
    assert_eq!(recorder.active[..2], [(false, false, false, false); 2]);
    assert_eq!(recorder.active[2..], [active_after; 2]);

    // One frame is one frame, however many zones; the zones count their own.
    let summary = recorder.summary.expect("finished");
    assert_eq!(
        (summary.captured, summary.classified, summary.events),
        (4, 4, 2)
    );
    assert_eq!(outcome.summary.classified, 4);
    let per_zone: Vec<(&str, u64, u64)> = summary
        .zones
        .iter()
        .map(|z| (z.name.as_str(), z.counts.classified, z.counts.events))
        .collect();
    assert_eq!(per_zone, [("left", 4, 1), ("right", 4, 1)]);
}

#[test]
fn an_roi_is_what_the_model_sees() {
    let shared = lookout_testdata::require_shared!();
    let bundles = common::bundles(&shared);
    let mut model = Model::load(&bundles.sigmoid, &RuntimeOptions::default()).expect("bundle");
    let dir = common::cats_beside_dogs(&shared, 3);
    for (roi, want) in [("0,0,0.5,1", "cat"), ("0.5,0,0.5,1", "dog")] {
        let source = DirSource::open(dir.path().to_path_buf()).expect("dir source");
        let mut opts = options(None);
        opts.regions = Regions::Frame(roi.parse().expect("roi"));
        let mut recorder = ZoneRecorder::default();
        Pipeline::new(opts)
            .run(Box::new(source), &mut model, &mut [&mut recorder])
            .expect("run");
        assert!(
            recorder
                .frames
                .iter()
                .all(|(_, zone, answer, _, crop)| zone.is_none()
                    && answer == want
                    && *crop == Some((320, 320))),
            "{roi}: {:?}",
            recorder.frames
        );
        assert_eq!(
            recorder.changes,
            vec![(ChangeKind::Fired, want.into(), None, 3)]
        );
    }
}

#[test]
fn the_empty_scene_votes_for_nothing_and_is_counted() {
    let shared = lookout_testdata::require_shared!();
    let path = common::background_bundle(&shared);
    let mut model = Model::load(path, &RuntimeOptions::default()).expect("bundle");
    // Three dogs (a label that acts), then four cats: the empty scene for this bundle.
    let dir = tempfile::tempdir().expect("temp dir");
    let photos = common::photos(&shared, "Dog", 3)
        .into_iter()
        .chain(common::photos(&shared, "Cat", 4));
    for (i, photo) in photos.enumerate() {
        std::fs::copy(photo, dir.path().join(format!("{i:02}.jpg"))).expect("copy photo");
    }
    let source = DirSource::open(dir.path().to_path_buf()).expect("dir source");
    let mut recorder = ZoneRecorder::default();
    Pipeline::new(options(None))
        .run(Box::new(source), &mut model, &mut [&mut recorder])
        .expect("run");

    let answers: Vec<(&str, bool)> = recorder
        .frames
        .iter()
        .map(|(_, _, answer, background, _)| (answer.as_str(), *background))
        .collect();
    assert_eq!(
        answers,
        [
            [("dog", false); 3].as_slice(),
            [("nothing", true); 4].as_slice()
        ]
        .concat()
    );
    // The dog fires, then the empty scene clears it; "background" itself never fires, though its own
    // probability is near 1 for four frames (it would, were its votes counted).
    let changes: Vec<(ChangeKind, &str, u64)> = recorder
        .changes
        .iter()
        .map(|(kind, label, _, frame)| (*kind, label.as_str(), *frame))
        .collect();
    assert_eq!(
        changes,
        [
            (ChangeKind::Fired, "dog", 3),
            (ChangeKind::Cleared, "dog", 4)
        ]
    );
    let summary = recorder.summary.expect("finished");
    assert_eq!(
        (
            summary.classified,
            summary.background,
            summary.unknown,
            summary.events
        ),
        (7, 4, 0, 1)
    );
    assert!(summary.zones.is_empty());
}

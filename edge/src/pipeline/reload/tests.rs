//! What a new bundle's labels must be for the running sinks, and answers compared by name.

use super::*;

fn info(labels: &[&str], background: Option<&str>) -> ModelInfo {
    ModelInfo {
        path: PathBuf::from("b.lookout"),
        sha256: String::new(),
        labels: labels.iter().map(|l| l.to_string()).collect(),
        background: background.map(str::to_string),
        precision: "f32".into(),
    }
}

#[test]
fn label_needs_refuse_what_a_running_sink_cannot_follow() {
    let running = info(&["cat", "dog"], None);
    let free = LabelNeeds::default();
    assert_eq!(free.check(&running, &info(&["fox"], None)), Ok(()));
    let when_cat = LabelNeeds {
        named: vec!["cat".into()],
        keep_indices: false,
    };
    assert_eq!(
        when_cat.check(&running, &info(&["dog", "cat"], None)),
        Ok(())
    );
    let missing = when_cat.check(&running, &info(&["dog", "kitten"], None));
    assert!(missing.is_err_and(|e| e.contains("no label \"cat\"") && !e.contains('\n')));
    let empty_scene = when_cat.check(&running, &info(&["dog", "cat"], Some("cat")));
    assert!(empty_scene.is_err_and(|e| e.contains("empty scene")));
    let serial = LabelNeeds {
        named: Vec::new(),
        keep_indices: true,
    };
    assert_eq!(
        serial.check(&running, &info(&["cat", "dog", "fox"], None)),
        Ok(())
    );
    for other in [&["dog", "cat"][..], &["cat"], &["cat", "fox"]] {
        let refused = serial.check(&running, &info(other, None));
        assert!(refused.is_err_and(|e| e.contains("--serial")), "{other:?}");
    }
}

#[test]
fn label_diff_and_answers_compare_by_name() {
    let (old, new) = (
        ["dog", "cat"].map(String::from),
        ["cat", "fox"].map(String::from),
    );
    let diff = LabelDiff::between(&old, &new);
    assert_eq!(
        (diff.added, diff.removed),
        (vec!["fox".to_string()], vec!["dog".to_string()])
    );
    assert!(LabelDiff::between(&old, &old).is_empty());
    // `cat` is index 1 before and 0 after: the same answer.
    assert_eq!(Answer::Label(1).named(&old), Answer::Label(0).named(&new));
    assert_ne!(Answer::Label(0).named(&old), Answer::Label(1).named(&new));
    assert_eq!(Answer::Unknown.named(&old), Answer::Unknown.named(&new));
    assert_ne!(Answer::Label(7).named(&old), Answer::Unknown.named(&new));
}

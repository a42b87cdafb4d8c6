//! The `edge-release` profile in the workspace manifest builds the binary people copy to their Pi. Its size goal
//! (≤ 15 MB stripped) only holds if the binary really is stripped, and cargo has a trap there: a package override
//! on the binary's own crate (which we need, for opt-level 3 on the hot edge code) makes cargo link that crate
//! without the profile's `strip`. The binaries measured in docs/performance.md lost 3.4 MB of symbol tables this way once.
//! A release build takes 20 minutes per target, too long for every test run, so the manifest is checked instead.

fn workspace_manifest() -> toml::Table {
    let path = lookout_testdata::crate_dir(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let text = std::fs::read_to_string(&path).expect("workspace Cargo.toml");
    text.parse().expect("workspace Cargo.toml parses")
}

fn get<'a>(table: &'a toml::Table, path: &[&str]) -> Option<&'a toml::Value> {
    let (last, parents) = path.split_last()?;
    let mut table = table;
    for key in parents {
        table = table.get(*key)?.as_table()?;
    }
    table.get(*last)
}

#[test]
fn edge_release_strips_the_edge_binary() {
    let manifest = workspace_manifest();
    assert_eq!(
        get(&manifest, &["profile", "edge-release", "strip"]).and_then(toml::Value::as_bool),
        Some(true),
        "[profile.edge-release] must set strip = true"
    );
    let overrides = get(&manifest, &["profile", "edge-release", "package"])
        .and_then(toml::Value::as_table)
        .cloned()
        .unwrap_or_default();
    // Every override of a crate that links a binary must repeat `strip`; lookout-edge is the one that exists today.
    for binary_crate in ["lookout-edge", "lookout-host"] {
        if let Some(settings) = overrides.get(binary_crate) {
            assert_eq!(
                settings.get("strip").and_then(toml::Value::as_bool),
                Some(true),
                "[profile.edge-release.package.{binary_crate}] overrides the binary's crate, so it must repeat \
                 strip = true (cargo drops the profile's strip for it)"
            );
        }
    }
    assert!(
        overrides.contains_key("lookout-edge"),
        "expected the opt-level 3 override of lookout-edge that this test guards"
    );
}

//! The host must build on a fresh machine with nothing but a C compiler: it links no camera, GPIO or serial
//! crate, and nothing that runs bindgen (which needs libclang). Those belong to `lookout-edge` alone.

use std::process::Command;

/// Crates that only the device side may pull in (V4L2 bindings, GPIO character device, serial port, bindgen).
const DEVICE_ONLY: &[&str] = &[
    "v4l",
    "v4l2-sys-mit",
    "linux-embedded-hal",
    "gpio-cdev",
    "serialport",
    "bindgen",
    "clang-sys",
    "signal-hook",
];

fn dependency_names(package: &str) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "--locked",
            "--offline",
            "-p",
            package,
            "-e",
            "normal,build",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(lookout_testdata::crate_dir(env!("CARGO_MANIFEST_DIR")))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_host_links_no_device_io_and_needs_no_libclang() {
    let host = dependency_names("lookout-host");
    assert!(host.iter().any(|n| n == "lookout-runtime"), "{host:?}");
    for name in DEVICE_ONLY {
        assert!(
            !host.iter().any(|n| n == name),
            "lookout-host depends on {name}: the host must not link device I/O (cargo tree -p lookout-host -e normal,build -i {name})"
        );
    }
}

#[test]
fn the_check_sees_device_io_where_it_is() {
    // The same query on the edge finds them: the test above is not blind.
    let edge = dependency_names("lookout-edge");
    for name in ["serialport", "signal-hook"] {
        assert!(edge.iter().any(|n| n == name), "{name} not in {edge:?}");
    }
    if cfg!(target_os = "linux") {
        for name in ["v4l", "bindgen"] {
            assert!(edge.iter().any(|n| n == name), "{name} not in {edge:?}");
        }
    }
}

//! The `.lookout` bundle format: round trips, and every way a file can be damaged or wrong.

use lookout_shared::bundle::{
    BackboneInfo, Bundle, BundleError, BundleFileError, BundleHeader, ExportMetrics, ForeignFormat,
    HeadInfo, ModelFormat, OutputKind, Precision, UnknownInfo, FORMAT_VERSION, MAGIC,
    MAX_HEADER_LEN,
};
use lookout_shared::preprocess::{ChannelOrder, Filter, Layout, PreprocessSpec, Resize};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

// Byte offsets of the layout documented in bundle.rs.
const VERSION_AT: usize = 8;
const HEADER_LEN_AT: usize = 10;
const HEADER_AT: usize = 14;

/// torchvision's ImageNet recipe, written out by hand so this test does not depend on preprocess helpers.
fn torchvision_spec() -> PreprocessSpec {
    PreprocessSpec {
        name: "torchvision".into(),
        resize: Resize::ShorterSide(256),
        filter: Filter::Bilinear,
        antialias: true,
        crop: Some((224, 224)),
        input_scale: 255.0,
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
        channel_order: ChannelOrder::Rgb,
        layout: Layout::Nchw,
    }
}

/// What `lookout export` writes for the cats-vs-dogs tutorial model.
fn cat_dog_header() -> BundleHeader {
    BundleHeader {
        labels: vec!["Cat".into(), "Dog".into()],
        preprocess: torchvision_spec(),
        backbone: BackboneInfo {
            name: "mobilenet_v3_large".into(),
            sha256: "8a4b".repeat(16),
            cut: Some("/features/features.16/features.16.2/HardSwish_output_0".into()),
        },
        head: HeadInfo {
            kind: "tutorial".into(),
            description: "flatten → Linear(47040,256) → ReLU → Dropout(0.5) → Linear(256,1)".into(),
            parameters: 12_042_753,
        },
        precision: Precision::F32,
        input_shape: vec![1, 3, 224, 224],
        output: OutputKind::Sigmoid,
        threshold: 0.5,
        metrics: Some(ExportMetrics {
            accuracy: 0.9725,
            float_accuracy: 0.975,
            agreement: 0.9975,
            max_probability_diff: 3.1e-5,
            test_images: 400,
            load_ms: 182.5,
            file_size: 0,
        }),
        lookout_version: "0.1.0".into(),
        model_format: ModelFormat::NnefTar,
        unknown: Some(UnknownInfo {
            method: "knn-cosine".into(),
            threshold: 0.21,
            keep: 0.95,
            bank_size: 512,
        }),
        background: None,
    }
}

/// Model bytes with structure (not all zeros), so misplaced offsets show up as mismatches.
fn model_bytes(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8)
        .collect()
}

fn cat_dog_bundle() -> Bundle {
    Bundle {
        header: cat_dog_header(),
        model: model_bytes(3000),
    }
}

fn header_len(bytes: &[u8]) -> usize {
    u32::from_le_bytes(bytes[HEADER_LEN_AT..HEADER_AT].try_into().unwrap()) as usize
}

/// Rewrites the trailing SHA-256 so a deliberately malformed bundle passes the checksum.
fn reseal(bytes: &mut Vec<u8>) {
    bytes.truncate(bytes.len() - 32);
    let checksum = Sha256::digest(&bytes[..]);
    bytes.extend_from_slice(&checksum);
}

fn assert_one_line(error: &dyn std::fmt::Display) {
    let message = error.to_string();
    assert!(!message.contains('\n'), "message spans lines: {message:?}");
    assert!(message.len() < 300, "message too long: {message:?}");
}

#[test]
fn round_trip_keeps_header_and_model() {
    let bundle = cat_dog_bundle();
    let bytes = bundle.to_bytes().unwrap();
    assert_eq!(Bundle::from_bytes(&bytes).unwrap(), bundle);
    // The owned form moves the model to the front of the file's buffer: same bundle, and no second buffer.
    let file = bytes.clone();
    let buffer = file.as_ptr();
    let owned = Bundle::from_vec(file).unwrap();
    assert_eq!(owned, bundle);
    assert_eq!(owned.model.as_ptr(), buffer, "the model was copied");
    assert_eq!(Bundle::peek_header(&bytes).unwrap(), bundle.header);
    assert_eq!(bundle.header.num_labels(), 2);
    assert_eq!(bundle.header.label(1), Some("Dog"));
    assert_eq!(bundle.header.label(2), None);
}

#[test]
fn bytes_follow_the_documented_layout() {
    let bundle = cat_dog_bundle();
    let bytes = bundle.to_bytes().unwrap();
    assert_eq!(bytes[..8], MAGIC);
    assert_eq!(
        u16::from_le_bytes([bytes[VERSION_AT], bytes[VERSION_AT + 1]]),
        FORMAT_VERSION
    );
    let header = postcard::to_allocvec(&bundle.header).unwrap();
    assert_eq!(header_len(&bytes), header.len());
    assert_eq!(bytes[HEADER_AT..HEADER_AT + header.len()], header[..]);
    let model_len_at = HEADER_AT + header.len();
    let model_len = u64::from_le_bytes(bytes[model_len_at..model_len_at + 8].try_into().unwrap());
    assert_eq!(model_len, 3000);
    let model_at = model_len_at + 8;
    assert_eq!(bytes[model_at..model_at + 3000], bundle.model[..]);
    assert_eq!(bytes.len(), model_at + 3000 + 32);
    let checksum = Sha256::digest(&bytes[..bytes.len() - 32]);
    assert_eq!(bytes[bytes.len() - 32..], checksum[..]);
}

#[test]
fn empty_model_and_no_metrics_round_trip() {
    let mut header = cat_dog_header();
    header.metrics = None;
    header.backbone.cut = None;
    let bundle = Bundle {
        header,
        model: Vec::new(),
    };
    let bytes = bundle.to_bytes().unwrap();
    assert_eq!(Bundle::from_bytes(&bytes).unwrap(), bundle);
    assert_eq!(Bundle::from_vec(bytes).unwrap(), bundle);
}

#[test]
fn every_truncation_says_truncated_with_the_right_sizes() {
    let bytes = cat_dog_bundle().to_bytes().unwrap();
    let full = bytes.len() as u64;
    for len in 0..bytes.len() {
        let error = Bundle::from_bytes(&bytes[..len]).unwrap_err();
        let BundleError::Truncated { needed, available } = error else {
            panic!("cut to {len} bytes: expected Truncated, got {error:?}");
        };
        assert_eq!(available, len as u64);
        assert!(
            needed > available && needed <= full,
            "cut to {len}: needed {needed}"
        );
        // Once the model length is readable, the exact size of the whole bundle is known.
        if len >= HEADER_AT + header_len(&bytes) + 8 {
            assert_eq!(needed, full, "cut to {len}");
        }
        assert_eq!(Bundle::peek_header(&bytes[..len]).unwrap_err(), error);
    }
}

/// The error a single damaged byte at `at` must give, by region of the layout.
fn assert_damage_detected(bytes: &[u8], at: usize, error: &BundleError) {
    let model_len_at = HEADER_AT + header_len(bytes);
    let ok = match at {
        0..=7 => matches!(error, BundleError::NotABundle { .. }),
        // A flipped version bit that lands on another readable version is caught by the checksum.
        8..=9 => matches!(
            error,
            BundleError::NewerVersion { .. }
                | BundleError::OlderVersion { .. }
                | BundleError::ChecksumMismatch
        ),
        // A damaged length points the reader elsewhere: past the end, over the cap, or at a wrong checksum.
        10..=13 => matches!(
            error,
            BundleError::Truncated { .. }
                | BundleError::HeaderTooLarge { .. }
                | BundleError::ChecksumMismatch
        ),
        _ if (model_len_at..model_len_at + 8).contains(&at) => matches!(
            error,
            BundleError::Truncated { .. } | BundleError::ChecksumMismatch
        ),
        _ => *error == BundleError::ChecksumMismatch,
    };
    assert!(ok, "byte {at} damaged: unexpected {error:?}");
}

#[test]
fn every_single_flipped_bit_is_detected() {
    let bytes = cat_dog_bundle().to_bytes().unwrap();
    for at in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut damaged = bytes.clone();
            damaged[at] ^= bit;
            let error = Bundle::from_bytes(&damaged).unwrap_err();
            assert_damage_detected(&bytes, at, &error);
            assert_eq!(Bundle::peek_header(&damaged).unwrap_err(), error);
        }
    }
}

#[test]
fn onnx_model_given_as_bundle_is_named() {
    let shared = lookout_testdata::require_shared!();
    let onnx =
        std::fs::read(shared.join("models/mobilenet_v3_small_tfslim_features_dynbatch.onnx"))
            .unwrap();
    let error = Bundle::from_bytes(&onnx).unwrap_err();
    assert_eq!(
        error,
        BundleError::NotABundle {
            looks_like: Some(ForeignFormat::Onnx)
        }
    );
    assert_eq!(
        error.to_string(),
        "not a lookout bundle (it looks like an ONNX model): pass a .lookout file made by `lookout export`"
    );
}

#[test]
fn other_foreign_formats_are_named() {
    let mut tar = vec![0u8; 512];
    tar[..10].copy_from_slice(b"model.nnef");
    tar[257..263].copy_from_slice(b"ustar\0");
    let cases: [(&[u8], Option<ForeignFormat>, &str); 4] = [
        (
            b"PK\x03\x04\x14\x00\x00\x00archive/data.pkl",
            Some(ForeignFormat::Zip),
            "PyTorch",
        ),
        (
            &[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0],
            Some(ForeignFormat::Gzip),
            "gzip",
        ),
        (&tar, Some(ForeignFormat::Tar), "NNEF"),
        (b"labels: Cat, Dog\n", None, "not a lookout bundle: pass"),
    ];
    for (bytes, expected, in_message) in cases {
        let error = Bundle::from_bytes(bytes).unwrap_err();
        assert_eq!(
            error,
            BundleError::NotABundle {
                looks_like: expected
            }
        );
        assert!(error.to_string().contains(in_message), "{error}");
        assert_one_line(&error);
    }
}

#[test]
fn newer_version_is_reported_even_when_the_rest_is_unreadable() {
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    let newer = FORMAT_VERSION + 1;
    bytes[VERSION_AT..VERSION_AT + 2].copy_from_slice(&newer.to_le_bytes());
    // A future format may lay out everything after the version differently: keep only up to it.
    bytes.truncate(VERSION_AT + 2);
    bytes.extend_from_slice(b"\xff\xff\xff\xff future layout");
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        error,
        BundleError::NewerVersion {
            found: newer,
            supported: FORMAT_VERSION
        }
    );
    assert!(
        error.to_string().contains("upgrade lookout-edge"),
        "{error}"
    );
    assert_one_line(&error);
}

#[test]
fn version_zero_is_too_old() {
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    bytes[VERSION_AT..VERSION_AT + 2].copy_from_slice(&0u16.to_le_bytes());
    reseal(&mut bytes);
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        error,
        BundleError::OlderVersion {
            found: 0,
            oldest: 1
        }
    );
    assert!(error.to_string().contains("lookout export"), "{error}");
    assert_one_line(&error);
}

#[test]
fn truncated_copy_reports_sizes() {
    let bytes = cat_dog_bundle().to_bytes().unwrap();
    let half = &bytes[..bytes.len() / 2];
    let error = Bundle::from_bytes(half).unwrap_err();
    assert_eq!(
        error,
        BundleError::Truncated {
            needed: bytes.len() as u64,
            available: half.len() as u64
        }
    );
    assert_eq!(
        error.to_string(),
        format!(
            "bundle is truncated: it needs at least {} bytes but has {}: the copy is incomplete; copy it again",
            bytes.len(),
            half.len()
        )
    );
}

#[test]
fn corrupted_model_byte_is_a_checksum_mismatch() {
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    let in_model = bytes.len() - 32 - 1000;
    bytes[in_model] = bytes[in_model].wrapping_add(1);
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert_eq!(error, BundleError::ChecksumMismatch);
    assert!(error.to_string().contains("copy it again"), "{error}");
    assert_one_line(&error);
}

#[test]
fn huge_header_length_is_refused_before_allocating() {
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    bytes[HEADER_LEN_AT..HEADER_AT].copy_from_slice(&u32::MAX.to_le_bytes());
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        error,
        BundleError::HeaderTooLarge {
            declared: u64::from(u32::MAX),
            limit: u64::from(MAX_HEADER_LEN)
        }
    );
    assert_one_line(&error);
}

#[test]
fn huge_model_length_is_truncation_not_an_allocation() {
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    let model_len_at = HEADER_AT + header_len(&bytes);
    bytes[model_len_at..model_len_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert_eq!(
        error,
        BundleError::Truncated {
            needed: u64::MAX,
            available: bytes.len() as u64
        }
    );
}

#[test]
fn writing_a_header_over_the_limit_fails() {
    let mut bundle = cat_dog_bundle();
    // 17 labels of 1 MiB: over the 16 MiB cap.
    bundle.header.labels = vec!["x".repeat(1 << 20); 17];
    let error = bundle.to_bytes().unwrap_err();
    assert!(
        matches!(error, BundleError::HeaderTooLarge { declared, .. } if declared > u64::from(MAX_HEADER_LEN)),
        "{error:?}"
    );
}

#[test]
fn header_that_does_not_decode_is_bad_header() {
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    // Label count varint claims 2^35 labels: the checksum is valid, the header is not.
    bytes[HEADER_AT..HEADER_AT + 5].copy_from_slice(&[0x80, 0x80, 0x80, 0x80, 0x7f]);
    reseal(&mut bytes);
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert!(matches!(error, BundleError::BadHeader(_)), "{error:?}");
    assert!(
        error.to_string().contains("incompatible lookout build"),
        "{error}"
    );
    assert_one_line(&error);
}

/// The bytes an older writer made: `bundle`'s header without its last `missing` fields (each a `None`, one
/// zero byte), labelled `version`.
fn older_bundle_bytes(bundle: &Bundle, version: u16, missing: usize) -> Vec<u8> {
    let mut header = postcard::to_allocvec(&bundle.header).unwrap();
    for _ in 0..missing {
        assert_eq!(header.pop(), Some(0), "`None` is one zero byte, last");
    }
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&version.to_le_bytes());
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&(bundle.model.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&bundle.model);
    bytes.extend_from_slice(&[0; 32]);
    reseal(&mut bytes);
    bytes
}

#[test]
fn a_version_1_bundle_still_reads_and_has_no_rejection() {
    // Version 1 is version 3's header without its last two fields (`unknown`, `background`): written here byte
    // for byte as a version-1 writer did.
    let mut bundle = cat_dog_bundle();
    bundle.header.unknown = None;
    let mut bytes = older_bundle_bytes(&bundle, 1, 2);
    let read = Bundle::from_bytes(&bytes).unwrap();
    assert_eq!(read, bundle);
    assert_eq!(read.header.unknown, None);
    assert_eq!(read.header.background, None);
    // The same bytes labelled version 2 lack a field: that is a bad header, not a silent default.
    bytes[8..10].copy_from_slice(&2u16.to_le_bytes());
    reseal(&mut bytes);
    assert!(matches!(
        Bundle::from_bytes(&bytes).unwrap_err(),
        BundleError::BadHeader(_)
    ));
}

#[test]
fn a_version_2_bundle_still_reads_keeps_its_rejection_and_has_no_background() {
    let bundle = cat_dog_bundle();
    assert!(bundle.header.unknown.is_some());
    let mut bytes = older_bundle_bytes(&bundle, 2, 1);
    let read = Bundle::from_bytes(&bytes).unwrap();
    assert_eq!(read, bundle);
    assert_eq!(read.header.background, None);
    // Labelled version 3, the last field is missing: a bad header.
    bytes[8..10].copy_from_slice(&3u16.to_le_bytes());
    reseal(&mut bytes);
    assert!(matches!(
        Bundle::from_bytes(&bytes).unwrap_err(),
        BundleError::BadHeader(_)
    ));
}

#[test]
fn a_background_label_round_trips_and_is_named() {
    let mut bundle = cat_dog_bundle();
    bundle.header.labels.push("background".into());
    bundle.header.output = OutputKind::Softmax;
    bundle.header.background = Some(2);
    let read = Bundle::from_bytes(&bundle.to_bytes().unwrap()).unwrap();
    assert_eq!(read, bundle);
    assert_eq!(read.header.background_label(), Some(2));
    assert!(read.header.is_background(2));
    assert!(!read.header.is_background(0));
    assert!(!cat_dog_header().is_background(1));
}

#[test]
fn header_with_unknown_extra_fields_is_bad_header() {
    // A header written by a build with one more field at the end, under the same format version.
    let bundle = cat_dog_bundle();
    let mut header = postcard::to_allocvec(&bundle.header).unwrap();
    header.push(0x2a);
    let mut bytes = Vec::new();
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(header.len() as u32).to_le_bytes());
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(&(bundle.model.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&bundle.model);
    bytes.extend_from_slice(&[0; 32]);
    reseal(&mut bytes);
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert!(matches!(error, BundleError::BadHeader(_)), "{error:?}");
}

#[test]
fn appended_bytes_are_trailing_data() {
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    bytes.extend_from_slice(b"\n\n\x00\x00\x00");
    let error = Bundle::from_bytes(&bytes).unwrap_err();
    assert_eq!(error, BundleError::TrailingData { extra: 5 });
    assert!(
        error.to_string().contains("copy the original again"),
        "{error}"
    );
    assert_one_line(&error);

    // Two bundles concatenated (`cat a b > c`).
    let single = cat_dog_bundle().to_bytes().unwrap();
    let double = [single.clone(), single.clone()].concat();
    assert_eq!(
        Bundle::from_bytes(&double).unwrap_err(),
        BundleError::TrailingData {
            extra: single.len() as u64
        }
    );
}

#[test]
fn file_round_trip_is_atomic_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cats.lookout");
    let bundle = cat_dog_bundle();
    bundle.write_file(&path).unwrap();
    assert_eq!(Bundle::read_file(&path).unwrap(), bundle);

    // Overwriting replaces the whole file.
    let mut smaller = cat_dog_bundle();
    smaller.model.truncate(10);
    smaller.write_file(&path).unwrap();
    assert_eq!(Bundle::read_file(&path).unwrap(), smaller);

    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name())
        .collect();
    assert_eq!(names, ["cats.lookout"]);
}

#[test]
fn file_errors_start_with_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.lookout");
    let error = Bundle::read_file(&missing).unwrap_err();
    assert!(
        matches!(error, BundleFileError::Io { action: "read", .. }),
        "{error:?}"
    );
    assert_eq!(error.path(), missing);
    assert!(
        error
            .to_string()
            .starts_with(&format!("{}: cannot read: ", missing.display())),
        "{error}"
    );
    assert_one_line(&error);

    let corrupt = dir.path().join("corrupt.lookout");
    let mut bytes = cat_dog_bundle().to_bytes().unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&corrupt, &bytes).unwrap();
    let error = Bundle::read_file(&corrupt).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("{}: {}", corrupt.display(), BundleError::ChecksumMismatch)
    );

    let in_missing_dir = dir.path().join("no/such/dir/cats.lookout");
    let error = cat_dog_bundle().write_file(&in_missing_dir).unwrap_err();
    assert!(matches!(error, BundleFileError::Io { .. }), "{error:?}");
    assert!(error
        .to_string()
        .starts_with(&dir.path().join("no/such/dir").display().to_string()));
}

#[test]
fn verifying_a_real_model_sized_bundle_is_cheap() {
    let shared = lookout_testdata::require_shared!();
    // A real 18.5 MB model file as the payload: the size of a float MobileNet/EfficientNet bundle.
    let model =
        std::fs::read(shared.join("models/efficientnet_lite0_classifier_dynbatch.onnx")).unwrap();
    let bundle = Bundle {
        header: cat_dog_header(),
        model,
    };
    let bytes = bundle.to_bytes().unwrap();
    let start = std::time::Instant::now();
    let header = Bundle::peek_header(&bytes).unwrap();
    let elapsed = start.elapsed();
    assert_eq!(header, bundle.header);
    assert_eq!(Bundle::from_bytes(&bytes).unwrap().model, bundle.model);
    // Measured here (x86_64, shared 2-core machine): about 0.1 s for 18.5 MB (sha2 software, opt-level 3 deps).
    // The bound is loose because builds share the machine; it guards against accidental quadratic work.
    assert!(elapsed.as_secs_f32() < 2.0, "peek_header took {elapsed:?}");
    eprintln!("peek_header on {} bytes: {elapsed:?}", bytes.len());
}

fn arb_text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9_ ./-]{0,24}",
        any::<String>().prop_map(|s| s.chars().take(24).collect())
    ]
}

/// Finite floats only: NaN != NaN would make the equality check meaningless, not the format wrong.
fn arb_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        -1e6f32..1e6,
        Just(0.0),
        Just(f32::MAX),
        Just(f32::MIN_POSITIVE)
    ]
}

fn arb_spec() -> impl Strategy<Value = PreprocessSpec> {
    (
        arb_text(),
        prop_oneof![
            any::<u32>().prop_map(Resize::ShorterSide),
            (any::<u32>(), any::<u32>())
                .prop_map(|(width, height)| Resize::Exact { width, height })
        ],
        prop_oneof![
            Just(Filter::Nearest),
            Just(Filter::Bilinear),
            Just(Filter::Bicubic),
            Just(Filter::Lanczos3)
        ],
        any::<bool>(),
        proptest::option::of((any::<u32>(), any::<u32>())),
        arb_f32(),
        [arb_f32(), arb_f32(), arb_f32()],
        [arb_f32(), arb_f32(), arb_f32()],
        prop_oneof![Just(ChannelOrder::Rgb), Just(ChannelOrder::Bgr)],
        prop_oneof![Just(Layout::Nchw), Just(Layout::Nhwc)],
    )
        .prop_map(
            |(
                name,
                resize,
                filter,
                antialias,
                crop,
                input_scale,
                mean,
                std,
                channel_order,
                layout,
            )| {
                PreprocessSpec {
                    name,
                    resize,
                    filter,
                    antialias,
                    crop,
                    input_scale,
                    mean,
                    std,
                    channel_order,
                    layout,
                }
            },
        )
}

fn arb_metrics() -> impl Strategy<Value = ExportMetrics> {
    (
        [arb_f32(), arb_f32(), arb_f32(), arb_f32(), arb_f32()],
        any::<u32>(),
        any::<u64>(),
    )
        .prop_map(
            |(
                [accuracy, float_accuracy, agreement, max_probability_diff, load_ms],
                test_images,
                file_size,
            )| {
                ExportMetrics {
                    accuracy,
                    float_accuracy,
                    agreement,
                    max_probability_diff,
                    test_images,
                    load_ms,
                    file_size,
                }
            },
        )
}

fn arb_header() -> impl Strategy<Value = BundleHeader> {
    (
        proptest::collection::vec(arb_text(), 0..12),
        arb_spec(),
        (arb_text(), arb_text(), proptest::option::of(arb_text()))
            .prop_map(|(name, sha256, cut)| BackboneInfo { name, sha256, cut }),
        (arb_text(), arb_text(), any::<u64>()).prop_map(|(kind, description, parameters)| {
            HeadInfo {
                kind,
                description,
                parameters,
            }
        }),
        prop_oneof![
            Just(Precision::F32),
            Just(Precision::F16),
            Just(Precision::Int8),
            Just(Precision::F32WeightsQ4),
            Just(Precision::Q4),
            Just(Precision::F16Q4)
        ],
        proptest::collection::vec(any::<u32>(), 0..5),
        prop_oneof![Just(OutputKind::Sigmoid), Just(OutputKind::Softmax)],
        arb_f32(),
        proptest::option::of(arb_metrics()),
        arb_text(),
        prop_oneof![Just(ModelFormat::NnefTar), Just(ModelFormat::NnefTarGz)],
    )
        .prop_map(
            |(
                labels,
                preprocess,
                backbone,
                head,
                precision,
                input_shape,
                output,
                threshold,
                metrics,
                version,
                model_format,
            )| {
                BundleHeader {
                    labels,
                    preprocess,
                    backbone,
                    head,
                    precision,
                    input_shape,
                    output,
                    threshold,
                    metrics,
                    lookout_version: version,
                    model_format,
                    unknown: None,
                    background: None,
                }
            },
        )
}

fn arb_bundle() -> impl Strategy<Value = Bundle> {
    (
        arb_header(),
        proptest::collection::vec(any::<u8>(), 0..2048),
    )
        .prop_map(|(header, model)| Bundle { header, model })
}

proptest! {
    #[test]
    fn any_bundle_round_trips(bundle in arb_bundle()) {
        let bytes = bundle.to_bytes().unwrap();
        prop_assert_eq!(&Bundle::from_bytes(&bytes).unwrap(), &bundle);
        prop_assert_eq!(&Bundle::peek_header(&bytes).unwrap(), &bundle.header);
    }

    #[test]
    fn any_truncation_is_an_error(bundle in arb_bundle(), cut in any::<prop::sample::Index>()) {
        let bytes = bundle.to_bytes().unwrap();
        let len = cut.index(bytes.len());
        let error = Bundle::from_bytes(&bytes[..len]).unwrap_err();
        let is_truncated = matches!(error, BundleError::Truncated { .. });
        prop_assert!(is_truncated, "cut to {}: {:?}", len, error);
    }

    #[test]
    fn any_damaged_byte_is_an_error(
        bundle in arb_bundle(),
        at in any::<prop::sample::Index>(),
        mask in 1u8..=255,
    ) {
        let bytes = bundle.to_bytes().unwrap();
        let at = at.index(bytes.len());
        let mut damaged = bytes.clone();
        damaged[at] ^= mask;
        let error = Bundle::from_bytes(&damaged).unwrap_err();
        assert_damage_detected(&bytes, at, &error);
    }

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Bundle::from_bytes(&bytes);
        let _ = Bundle::peek_header(&bytes);
    }

    #[test]
    fn random_bytes_after_a_valid_prefix_never_panic(
        header_len in prop_oneof![0u32..600, any::<u32>()],
        rest in proptest::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&MAGIC);
        bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        bytes.extend_from_slice(&header_len.to_le_bytes());
        bytes.extend_from_slice(&rest);
        prop_assert!(Bundle::from_bytes(&bytes).is_err());
        // With a valid checksum the header decoder itself sees the random bytes.
        if bytes.len() >= 32 + 22 {
            reseal(&mut bytes);
            let _ = Bundle::from_bytes(&bytes);
        }
    }
}

/// `open_file` (the edge's streaming read) checks what `read_file` checks, in the same order, with the same
/// errors; on an intact file it yields the same header and model bytes.
#[test]
fn streaming_a_bundle_file_checks_what_reading_it_whole_checks() {
    use std::io::Read;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cats.lookout");
    let bundle = cat_dog_bundle();
    let bytes = bundle.to_bytes().unwrap();
    std::fs::write(&path, &bytes).unwrap();
    let reader = Bundle::open_file(&path).unwrap();
    assert_eq!(reader.path(), path);
    let (header, mut model) = reader.into_model_reader().unwrap();
    let mut model_bytes = Vec::new();
    model.read_to_end(&mut model_bytes).unwrap();
    assert_eq!(
        Bundle {
            header,
            model: model_bytes
        },
        bundle
    );

    let header_len = u32::from_le_bytes(bytes[10..14].try_into().unwrap()) as usize;
    let mut damaged: Vec<(&str, Vec<u8>)> = Vec::new();
    for cut in [
        0,
        3,
        9,
        13,
        20,
        14 + header_len + 4,
        bytes.len() / 2,
        bytes.len() - 1,
    ] {
        damaged.push(("truncated", bytes[..cut].to_vec()));
    }
    for at in [
        0,
        8,
        12,
        14 + header_len + 2,
        bytes.len() - 40,
        bytes.len() - 1,
    ] {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x10;
        damaged.push(("flipped", flipped));
    }
    let mut trailing = bytes.clone();
    trailing.push(0);
    damaged.push(("trailing", trailing));
    let mut huge_header = bytes.clone();
    huge_header[10..14].copy_from_slice(&(MAX_HEADER_LEN + 1).to_le_bytes());
    damaged.push(("header length", huge_header));
    damaged.push(("onnx", b"\x08\x07\x12\x04onnx".to_vec()));
    for (what, content) in damaged {
        std::fs::write(&path, &content).unwrap();
        let whole = Bundle::read_file(&path).unwrap_err().to_string();
        let streamed = Bundle::open_file(&path).unwrap_err().to_string();
        assert_eq!(streamed, whole, "{what}, {} bytes", content.len());
    }
}

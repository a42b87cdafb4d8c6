//! Labelled image folders (torchvision's ImageFolder layout) and their stratified train/test split.
//!
//! `root/<class>/**/<file>`: one sub-folder per class, class index = position of the folder name in sorted
//! order. Files are recognised by their content, not their extension, so `photo.jpg` holding WebP data is
//! used and `notes.txt` is ignored. A file that claims to be an image (image extension, or empty) but is not
//! one is reported as a bad file; other non-images are ignored quietly and only counted.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use rayon::prelude::*;

use crate::features::{SkippedFile, SplitEntry};

/// Extensions of files that are meant to be images: such a file with unknown content is reported, not ignored.
const IMAGE_EXTENSIONS: &[&str] = &[
    "jpg", "jpeg", "png", "gif", "bmp", "webp", "tif", "tiff", "jfif", "pgm", "ppm", "ico",
];
/// Enough leading bytes for every magic number the sniffer knows.
const SNIFF_LEN: usize = 64;

/// What can go wrong scanning or splitting an image folder.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The data directory has no class sub-folders.
    #[error("{}: no class folders found; expected one sub-folder per class (e.g. DIR/cat/*.jpg, DIR/dog/*.jpg)", root.display())]
    NoClasses {
        /// The data directory.
        root: PathBuf,
    },
    /// A class folder holds no image.
    #[error("class folder {} holds no image; remove it or add images", path.display())]
    EmptyClass {
        /// The class folder.
        path: PathBuf,
    },
    /// The test fraction is not in [0, 1).
    #[error("test split fraction {0} must be at least 0 and below 1")]
    BadFraction(f64),
}

/// One image of the folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Path relative to the data directory.
    pub rel_path: PathBuf,
    /// Index of the sample's class in [`ImageFolder::classes`].
    pub class_index: u32,
    /// File size in bytes (part of the cache fingerprint).
    pub size: u64,
    /// Modification time in nanoseconds since the Unix epoch, 0 if unknown (part of the cache fingerprint).
    pub mtime_ns: u128,
}

/// A scanned ImageFolder.
#[derive(Debug, Clone)]
pub struct ImageFolder {
    /// The data directory, absolute.
    pub root: PathBuf,
    /// Class names (sorted folder names).
    pub classes: Vec<String>,
    /// The images, by class then path.
    pub samples: Vec<Sample>,
    /// Files named like images whose content is not an image (empty, text, unknown format).
    pub bad_files: Vec<SkippedFile>,
    /// Other files that are not images, ignored.
    pub ignored_non_images: usize,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DataError + '_ {
    move |source| DataError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// Every regular file under `dir`, recursively, sorted, hidden entries skipped.
fn walk_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let mut entries = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(dir))?;
    entries.sort();
    for path in entries {
        if is_hidden(&path) {
            continue;
        }
        // Follow symlinks: data sets are often assembled from links.
        let meta = std::fs::metadata(&path).map_err(io_err(&path))?;
        if meta.is_dir() {
            walk_files(&path, out)?;
        } else if meta.is_file() {
            out.push(path);
        }
    }
    Ok(())
}

/// What the first bytes of a file say about it.
enum Sniffed {
    Image,
    Bad(String),
    NotAnImage,
}

fn sniff_file(path: &Path) -> Result<(Sniffed, u64, u128), DataError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(io_err(path))?;
    let meta = file.metadata().map_err(io_err(path))?;
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    let mut head = Vec::with_capacity(SNIFF_LEN);
    file.take(SNIFF_LEN as u64)
        .read_to_end(&mut head)
        .map_err(io_err(path))?;
    let named_like_image = path
        .extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
    let sniffed = if lookout_shared::image_io::sniff_format(&head).is_some() {
        Sniffed::Image
    } else if head.is_empty() {
        Sniffed::Bad("empty file".into())
    } else if named_like_image {
        Sniffed::Bad("content is not a known image format".into())
    } else {
        Sniffed::NotAnImage
    };
    Ok((sniffed, meta.len(), mtime_ns))
}

impl ImageFolder {
    /// Scans `root`: class folders, then every file in them, sniffed by content (in parallel).
    pub fn scan(root: &Path) -> Result<ImageFolder, DataError> {
        let root = std::fs::canonicalize(root).map_err(io_err(root))?;
        let mut class_dirs = Vec::new();
        for entry in std::fs::read_dir(&root).map_err(io_err(&root))? {
            let path = entry.map_err(io_err(&root))?.path();
            if !is_hidden(&path) && path.is_dir() {
                class_dirs.push(path);
            }
        }
        class_dirs.sort();
        if class_dirs.is_empty() {
            return Err(DataError::NoClasses { root });
        }
        let mut classes = Vec::new();
        let mut samples = Vec::new();
        let mut bad_files = Vec::new();
        let mut ignored_non_images = 0;
        for (class_index, dir) in class_dirs.iter().enumerate() {
            classes.push(
                dir.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            );
            let mut files = Vec::new();
            walk_files(dir, &mut files)?;
            let sniffed = files
                .par_iter()
                .map(|p| sniff_file(p))
                .collect::<Result<Vec<_>, _>>()?;
            let before = samples.len();
            for (path, (kind, size, mtime_ns)) in files.iter().zip(sniffed) {
                let rel_path = path.strip_prefix(&root).unwrap_or(path).to_path_buf();
                match kind {
                    Sniffed::Image => samples.push(Sample {
                        rel_path,
                        class_index: class_index as u32,
                        size,
                        mtime_ns,
                    }),
                    Sniffed::Bad(reason) => bad_files.push(SkippedFile {
                        path: rel_path,
                        reason,
                    }),
                    Sniffed::NotAnImage => ignored_non_images += 1,
                }
            }
            if samples.len() == before {
                return Err(DataError::EmptyClass { path: dir.clone() });
            }
        }
        Ok(ImageFolder {
            root,
            classes,
            samples,
            bad_files,
            ignored_non_images,
        })
    }

    /// Stratified split: per class, a seeded shuffle, then `round(n · test_fraction)` images go to the test split.
    ///
    /// Same spirit as scikit-learn's `train_test_split(stratify=y)`, not the same permutation. Both lists come
    /// back ordered by class, then path.
    pub fn split(&self, test_fraction: f64, seed: u64) -> Result<SplitLists, DataError> {
        if !(0.0..1.0).contains(&test_fraction) {
            return Err(DataError::BadFraction(test_fraction));
        }
        let mut rng = SplitMix64::new(seed);
        let mut lists = SplitLists::default();
        for class in 0..self.classes.len() as u32 {
            let mut members: Vec<&Sample> = self
                .samples
                .iter()
                .filter(|s| s.class_index == class)
                .collect();
            rng.shuffle(&mut members);
            let n_test = (members.len() as f64 * test_fraction).round() as usize;
            let (test, train) = members.split_at(n_test.min(members.len()));
            let entries = |part: &[&Sample]| {
                let mut v: Vec<SplitEntry> =
                    part.iter().map(|s| (s.rel_path.clone(), class)).collect();
                v.sort();
                v
            };
            lists.train.extend(entries(train));
            lists.test.extend(entries(test));
        }
        Ok(lists)
    }
}

/// The file lists of the two splits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitLists {
    /// Training images.
    pub train: Vec<SplitEntry>,
    /// Test images.
    pub test: Vec<SplitEntry>,
}

/// SplitMix64 (Steele, Lea & Flood 2014): a tiny, well-mixed, seedable PRNG. Self-contained so a split never
/// changes because a dependency changed its algorithm.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`), by rejection so there is no modulo bias.
    pub fn below(&mut self, n: u64) -> u64 {
        let zone = u64::MAX - u64::MAX % n;
        loop {
            let x = self.next_u64();
            if x < zone {
                return x % n;
            }
        }
    }

    /// Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_matches_the_reference_sequence() {
        // First outputs of the reference C implementation for seed 1234567.
        let mut rng = SplitMix64::new(1234567);
        assert_eq!(rng.next_u64(), 6457827717110365317);
        assert_eq!(rng.next_u64(), 3203168211198807973);
    }

    #[test]
    fn shuffle_is_a_seeded_permutation() {
        let mut a: Vec<u32> = (0..100).collect();
        let mut b = a.clone();
        SplitMix64::new(42).shuffle(&mut a);
        SplitMix64::new(42).shuffle(&mut b);
        assert_eq!(a, b);
        assert_ne!(a, (0..100).collect::<Vec<_>>());
        let mut sorted = a.clone();
        sorted.sort();
        assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    }
}

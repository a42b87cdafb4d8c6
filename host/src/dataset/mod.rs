//! Labelled image folders (torchvision's ImageFolder layout) and their stratified train/test split.
//!
//! `root/<class>/**/<file>`: one sub-folder per class, class index = position of the folder name in sorted
//! order. Entries are judged by `lookout_shared::image_io::examine_folder_entry`, the rule the edge's walker
//! follows too: files are recognised by their content, so `photo.jpg` holding WebP data is used and
//! `notes.txt` is ignored; what claims to be an image but is not (a broken link, an unreadable or empty file, a
//! directory named `x.jpg`) is reported as a bad file; other non-images are ignored quietly and only counted.
//!
//! A folder of the camera's empty scene (`--background DIR`, anywhere on disk) joins as one more class, last,
//! named [`BACKGROUND_LABEL`]: its samples keep their absolute paths (joining an absolute path to the data
//! directory gives it back), so every reader of the split lists finds them without knowing they are special.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use lookout_shared::image_io::{examine_folder_entry, FolderEntry};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

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
    /// The data directory has a class folder named like the background, and a background folder was given.
    #[error(
        "{} is a class folder named '{BACKGROUND_LABEL}', and --background was given too: rename the folder, or \
         leave it out and pass it as --background",
        path.display()
    )]
    BackgroundClash {
        /// The class folder.
        path: PathBuf,
    },
}

/// The label of the camera's empty scene, when a data set has one (`--background DIR`).
pub const BACKGROUND_LABEL: &str = "background";

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
    /// Entries meant to be images that are unusable (empty, unreadable, unknown content, a broken link, a
    /// directory named like an image), with the reason.
    pub bad_files: Vec<SkippedFile>,
    /// Other files that are not images, ignored.
    pub ignored_non_images: usize,
    /// The index of the background class (the camera's empty scene), when a background folder was given: always
    /// the last class.
    pub background: Option<u32>,
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

/// Every entry under `dir` that is not a directory, recursively, sorted, hidden entries skipped, each examined
/// by the one image-file rule (in parallel: sniffing reads the first bytes of every file).
fn walk_entries(dir: &Path, out: &mut Vec<(PathBuf, FolderEntry)>) -> Result<(), DataError> {
    let mut paths = std::fs::read_dir(dir)
        .map_err(io_err(dir))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(io_err(dir))?;
    paths.retain(|p| !is_hidden(p));
    paths.sort();
    // Symlinks are followed: data sets are often assembled from links.
    let examined: Vec<FolderEntry> = paths.par_iter().map(|p| examine_folder_entry(p)).collect();
    for (path, entry) in paths.into_iter().zip(examined) {
        match entry {
            FolderEntry::Directory => {
                // A sub-folder that cannot be listed loses its images, not the whole scan.
                if let Err(DataError::Io { source, .. }) = walk_entries(&path, out) {
                    out.push((
                        path,
                        FolderEntry::Bad(format!("cannot list the folder: {source}")),
                    ));
                }
            }
            other => out.push((path, other)),
        }
    }
    Ok(())
}

impl ImageFolder {
    /// Scans `root`: class folders, then every file in them, sniffed by content (in parallel).
    pub fn scan(root: &Path) -> Result<ImageFolder, DataError> {
        ImageFolder::scan_with_background(root, None)
    }

    /// [`ImageFolder::scan`], plus the images of `background` (the camera's empty scene, a folder anywhere) as
    /// one more class, last, named [`BACKGROUND_LABEL`].
    pub fn scan_with_background(
        root: &Path,
        background: Option<&Path>,
    ) -> Result<ImageFolder, DataError> {
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
        let mut folder = ImageFolder {
            root,
            classes: Vec::new(),
            samples: Vec::new(),
            bad_files: Vec::new(),
            ignored_non_images: 0,
            background: None,
        };
        for dir in &class_dirs {
            let name = dir
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            if background.is_some() && name == BACKGROUND_LABEL {
                return Err(DataError::BackgroundClash { path: dir.clone() });
            }
            folder.add_class(name, dir)?;
        }
        if let Some(dir) = background {
            let dir = std::fs::canonicalize(dir).map_err(io_err(dir))?;
            folder.background = Some(folder.classes.len() as u32);
            folder.add_class(BACKGROUND_LABEL.to_string(), &dir)?;
        }
        Ok(folder)
    }

    /// Adds the images under `dir` as class `name`, the next index. Paths under the data directory are kept
    /// relative to it, others (a background folder elsewhere) absolute.
    fn add_class(&mut self, name: String, dir: &Path) -> Result<(), DataError> {
        let class_index = self.classes.len() as u32;
        self.classes.push(name);
        let mut entries = Vec::new();
        walk_entries(dir, &mut entries)?;
        let before = self.samples.len();
        for (path, entry) in entries {
            let rel_path = path.strip_prefix(&self.root).unwrap_or(&path).to_path_buf();
            match entry {
                FolderEntry::Image { len, modified } => self.samples.push(Sample {
                    rel_path,
                    class_index,
                    size: len,
                    mtime_ns: modified
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_nanos()),
                }),
                FolderEntry::Bad(reason) => self.bad_files.push(SkippedFile {
                    path: rel_path,
                    reason,
                }),
                FolderEntry::Other | FolderEntry::Directory => self.ignored_non_images += 1,
            }
        }
        if self.samples.len() == before {
            return Err(DataError::EmptyClass {
                path: dir.to_path_buf(),
            });
        }
        Ok(())
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

/// A file that gave no features, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// Path relative to the data directory.
    pub path: PathBuf,
    /// Why it was skipped, in words.
    pub reason: String,
}

/// One entry of a split file list: path relative to the data directory, class index.
pub type SplitEntry = (PathBuf, u32);

/// The file lists of the two splits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SplitLists {
    /// Training images.
    pub train: Vec<SplitEntry>,
    /// Test images.
    pub test: Vec<SplitEntry>,
}

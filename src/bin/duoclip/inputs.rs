//! The images named on the command line: each file opened as a [`Source`], a volume or a
//! multi-frame file becoming one input per slice or frame.

use std::path::{Path, PathBuf};

use duoclip::source::{Part, ReadOptions, Source};
use duoclip::{Error, Result};

/// One image to score: a file, and which of its images.
pub struct Input {
    pub path: PathBuf,
    pub index: usize,
    /// The image's name within its file (`k=12`), for files of several and DICOM.
    pub label: Option<String>,
    /// Output names come from `label` alone (DICOM: a file name may carry the patient's).
    pub private: bool,
}

impl Input {
    /// `path`, or `path#label` for one image of several.
    pub fn name(&self) -> String {
        match &self.label {
            Some(label) => format!("{}#{label}", self.path.display()),
            None => self.path.display().to_string(),
        }
    }
}

/// Every image of `paths`, in order, and the `[start, end)` runs of inputs that came from one
/// file of several images (a volume's slices, a file's frames): they are scored as a set.
pub fn expand(paths: &[PathBuf], options: &ReadOptions) -> Result<(Vec<Input>, Vec<Run>)> {
    let mut inputs = Vec::new();
    let mut runs: Vec<Run> = Vec::new();
    for path in paths {
        let source = open(path, options)?;
        let start = inputs.len();
        inputs.extend((0..source.len()).map(|index| Input {
            path: path.clone(),
            index,
            label: source.label(index),
            private: source.is_private(),
        }));
        let run = Run {
            start,
            end: inputs.len(),
            one_file: source.len() > 1,
        };
        // Single images next to each other form one run, grouped as before volumes existed.
        match runs.last_mut() {
            Some(last) if !last.one_file && !run.one_file => last.end = run.end,
            _ => runs.push(run),
        }
    }
    Ok((inputs, runs))
}

/// Consecutive inputs grouped by the detector's rule among themselves.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub start: usize,
    pub end: usize,
    /// The images of one file: they reference each other as a set.
    pub one_file: bool,
}

/// Opens files as their images are asked for, keeping the last one open: a volume's slices
/// are asked for in order, so it is read once per group, not once per slice.
pub struct Sources {
    options: ReadOptions,
    open: Option<(PathBuf, Source)>,
}

impl Sources {
    pub fn new(options: ReadOptions) -> Self {
        Sources {
            options,
            open: None,
        }
    }

    /// The image `input` names.
    pub fn part(&mut self, input: &Input) -> Result<Part> {
        let reuse = matches!(&self.open, Some((path, _)) if *path == input.path);
        if !reuse {
            self.open = Some((input.path.clone(), open(&input.path, &self.options)?));
        }
        let (_, source) = self.open.as_ref().expect("opened above");
        source.image(input.index)
    }
}

fn open(path: &Path, options: &ReadOptions) -> Result<Source> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(&name, e))?;
    Source::open(bytes, &name, options)
}

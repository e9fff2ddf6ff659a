//! The images named on the command line: each file opened as a [`Source`], a volume or a
//! multi-frame file becoming one input per slice or frame.

use std::path::{Path, PathBuf};

use duoclip::detect::plan::FileShape;
use duoclip::image::RgbImage;
use duoclip::source::{DomainHint, Part, ReadOptions, Source};
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

/// The files named on the command line, opened.
pub struct Opened {
    /// Every image, in order.
    pub inputs: Vec<Input>,
    /// Each file's shape: how many images it holds and the DICOM series it belongs to, which
    /// decide the images scored together ([`duoclip::detect::plan::groups`]).
    pub shapes: Vec<FileShape>,
    /// The prompt domains the files point to, for those that point to one.
    pub hints: Vec<DomainHint>,
}

/// Opens every file of `paths`.
pub fn expand(paths: &[PathBuf], options: &ReadOptions) -> Result<Opened> {
    let mut opened = Opened {
        inputs: Vec::new(),
        shapes: Vec::new(),
        hints: Vec::new(),
    };
    for path in paths {
        let source = open(path, options)?;
        opened.inputs.extend((0..source.len()).map(|index| Input {
            path: path.clone(),
            index,
            label: source.label(index),
            private: source.is_private(),
        }));
        opened.shapes.push(source.shape());
        opened.hints.extend(source.suggested_domain());
    }
    Ok(opened)
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
        self.source(&input.path)?.image(input.index)
    }

    /// The file at `path`, opened.
    pub fn source(&mut self, path: &Path) -> Result<&Source> {
        let reuse = matches!(&self.open, Some((open, _)) if open == path);
        if !reuse {
            self.open = Some((path.to_path_buf(), open(path, &self.options)?));
        }
        Ok(&self.open.as_ref().expect("opened above").1)
    }
}

/// The one image of the file at `path`: `eval`'s datasets pair each file with one mask.
pub fn single_image(path: &Path, options: &ReadOptions) -> Result<RgbImage> {
    let source = open(path, options)?;
    if source.len() != 1 {
        return Err(Error::Image {
            path: path.display().to_string(),
            message: format!(
                "holds {} images (a volume's slices or a file's frames); eval takes one image \
                 per file, each with its own mask: split it first, e.g. a volume into one \
                 file per slice",
                source.len()
            ),
        });
    }
    Ok(source.image(0)?.image)
}

fn open(path: &Path, options: &ReadOptions) -> Result<Source> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(&name, e))?;
    Source::open(bytes, &name, options)
}

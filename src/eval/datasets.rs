//! The benchmark layouts of METHOD.md §8, read into one shape: classes ("categories") of
//! test images, each with its label and, where the set has them, its ground-truth mask.
//!
//! - `mvtec`: `<class>/test/<defect>/*.png`, masks `<class>/ground_truth/<defect>/<stem>_mask.png`.
//! - `visa`: `split_csv/1cls.csv` (columns object,split,label,image,mask; paths relative to
//!   the root) when present, else folders `<class>/test/{good,bad}/*`, masks
//!   `<class>/ground_truth/bad/<stem>.png`.
//! - `bmad`: `<set>/<split>/{good,Ungood}/img/*.png` with masks in `Ungood/label/` or
//!   `Ungood/anomaly_mask/` (same file names), or image-label-only sets with the PNGs directly
//!   in `<split>/good/` and `<split>/Ungood/`.
//! - `folder`: `<class>/good/*` and any other folders of defective images; optional masks in
//!   `<class>/masks/<defect>/` (or `ground_truth/`) named `<stem>.png` or `<stem>_mask.png`.
//!
//! The root may also be one class folder itself. Problems with single files (a file that is
//! not an image, a missing mask, a mask of another size than its image, an empty class) are
//! collected in [`Dataset::skipped`] with the file named; the rest of the set is still used.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::source::{ReadOptions, Source};
use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Mvtec,
    Visa,
    Bmad,
    Folder,
}

impl Layout {
    /// The `--layout` value.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Mvtec => "mvtec",
            Layout::Visa => "visa",
            Layout::Bmad => "bmad",
            Layout::Folder => "folder",
        }
    }
}

impl FromStr for Layout {
    type Err = Error;
    fn from_str(s: &str) -> Result<Layout> {
        match s {
            "mvtec" => Ok(Layout::Mvtec),
            "visa" => Ok(Layout::Visa),
            "bmad" => Ok(Layout::Bmad),
            "folder" => Ok(Layout::Folder),
            _ => Err(Error::Option {
                option: "layout".into(),
                message: format!("`{s}` is not accepted; use one of bmad, mvtec, visa, folder"),
            }),
        }
    }
}

/// Where a test image's ground truth comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mask {
    /// A normal image: every pixel normal.
    Normal,
    File(PathBuf),
    /// The class has image labels only.
    None,
}

#[derive(Debug, Clone)]
pub struct Sample {
    pub image: PathBuf,
    /// The folder the image came from ("good", a defect name, "Ungood", "bad").
    pub defect: String,
    pub stem: String,
    pub anomalous: bool,
    pub mask: Mask,
}

#[derive(Debug, Clone)]
pub struct Category {
    pub name: String,
    /// The class's folder (VisA's CSV split: the dataset root, which its paths start from).
    pub dir: PathBuf,
    /// Whether the class has ground-truth masks (pixel metrics).
    pub pixel_level: bool,
    pub samples: Vec<Sample>,
}

/// A file or class left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub file: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Dataset {
    pub split: String,
    pub categories: Vec<Category>,
    pub skipped: Vec<Skipped>,
}

impl Sample {
    /// Where this image's map lives below a maps folder: `<class>/<split>/<defect>/<stem>.npy`.
    pub fn map_path(&self, category: &str, split: &str) -> PathBuf {
        Path::new(category)
            .join(split)
            .join(&self.defect)
            .join(format!("{}.npy", self.stem))
    }
}

/// Reads the layout under `root`: the `split` ("test"; BMAD also "valid") of the classes
/// named in `only` (all when empty).
pub fn open(root: &Path, layout: Layout, split: &str, only: &[String]) -> Result<Dataset> {
    if !root.is_dir() {
        return Err(Error::Option {
            option: "data".into(),
            message: format!("{} is not a folder", root.display()),
        });
    }
    check_split(layout, split)?;
    let mut skipped = Vec::new();
    let mut categories = read_categories(root, layout, split, &mut skipped)?;
    select(&mut categories, only, root)?;
    for c in &mut categories {
        check_masks(c, &mut skipped);
    }
    drop_empty_classes(&mut categories, &mut skipped);
    if categories.is_empty() {
        return Err(Error::Option {
            option: "data".into(),
            message: format!(
                "{} has no {} images in the {} layout{}",
                root.display(),
                split,
                layout.name(),
                describe_skipped(&skipped)
            ),
        });
    }
    Ok(Dataset {
        split: split.into(),
        categories,
        skipped,
    })
}

/// Every class of the layout: VisA's CSV split when the set has one, else the class folders.
fn read_categories(
    root: &Path,
    layout: Layout,
    split: &str,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Category>> {
    if layout == Layout::Visa && root.join("split_csv/1cls.csv").is_file() {
        return visa_csv(root, split, skipped);
    }
    let marker = match layout {
        Layout::Mvtec | Layout::Visa => "test".to_string(),
        Layout::Bmad => format!("{split}/good"),
        Layout::Folder => "good".to_string(),
    };
    class_dirs(root, &marker)?
        .into_iter()
        .map(|(name, dir)| read_class(&dir, name, layout, split, skipped))
        .collect()
}

/// A class without images has no metrics; it is reported rather than averaged in as zero.
fn drop_empty_classes(categories: &mut Vec<Category>, skipped: &mut Vec<Skipped>) {
    categories.retain(|c| {
        let keep = !c.samples.is_empty();
        if !keep {
            skipped.push(Skipped {
                file: c.name.clone(),
                reason: "class has no usable test images; left out of the mean".into(),
            });
        }
        keep
    });
}

fn describe_skipped(skipped: &[Skipped]) -> String {
    match skipped.first() {
        None => String::new(),
        Some(s) => format!(
            " (skipped {} files, e.g. {}: {})",
            skipped.len(),
            s.file,
            s.reason
        ),
    }
}

fn check_split(layout: Layout, split: &str) -> Result<()> {
    match (layout, split) {
        (_, "test") | (Layout::Bmad, "valid") => Ok(()),
        _ => Err(Error::Option {
            option: "split".into(),
            message: format!(
                "`{split}` is not accepted for the {} layout; use test{}",
                layout.name(),
                if layout == Layout::Bmad {
                    " or valid"
                } else {
                    " (valid exists in the bmad layout only)"
                }
            ),
        }),
    }
}

/// The classes below `root` (folders holding `marker`), or `root` itself if it holds it.
fn class_dirs(root: &Path, marker: &str) -> Result<Vec<(String, PathBuf)>> {
    let name_of = |p: &Path| {
        p.file_name()
            .map(|n| n.to_string_lossy().to_string())
            .unwrap_or_else(|| "data".into())
    };
    if root.join(marker).is_dir() {
        let abs = root
            .canonicalize()
            .map_err(|e| Error::io(root.display(), e))?;
        return Ok(vec![(name_of(&abs), root.to_path_buf())]);
    }
    Ok(subdirs(root)?
        .into_iter()
        .filter(|d| d.join(marker).is_dir())
        .map(|d| (name_of(&d), d))
        .collect())
}

/// Sorted subfolders, hidden ones left out.
fn subdirs(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(entries(dir)?.into_iter().filter(|p| p.is_dir()).collect())
}

fn entries(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir.display(), e))? {
        let path = entry.map_err(|e| Error::io(dir.display(), e))?.path();
        if !path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn read_class(
    dir: &Path,
    name: String,
    layout: Layout,
    split: &str,
    skipped: &mut Vec<Skipped>,
) -> Result<Category> {
    let (samples, pixel_level) = match layout {
        Layout::Mvtec | Layout::Visa => (mvtec_class_samples(dir, layout, skipped)?, true),
        Layout::Bmad => bmad_class_samples(dir, split, skipped)?,
        Layout::Folder => folder_class_samples(dir, skipped)?,
    };
    Ok(Category {
        name,
        dir: dir.to_path_buf(),
        pixel_level,
        samples,
    })
}

/// MVTec AD and VisA folders: `test/<defect>/`, masks in `ground_truth/<defect>/`, which MVTec
/// names `<stem>_mask.png` and VisA `<stem>.png`.
fn mvtec_class_samples(
    dir: &Path,
    layout: Layout,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Sample>> {
    let suffix = if layout == Layout::Mvtec { "_mask" } else { "" };
    let mut samples = Vec::new();
    for defect_dir in subdirs(&dir.join("test"))? {
        let defect = file_name(&defect_dir);
        let masks = dir.join("ground_truth").join(&defect);
        let mask_of = |_: &Path, stem: &str| {
            if defect == "good" {
                Mask::Normal
            } else {
                Mask::File(masks.join(format!("{stem}{suffix}.png")))
            }
        };
        samples.extend(defect_samples(&defect_dir, &defect, mask_of, skipped)?);
    }
    Ok(samples)
}

/// BMAD's `<split>/{good,Ungood}/`: sets with pixel labels keep the images in `img/` beside
/// their masks, image-label-only sets keep them directly in the folder. Also says which it is.
fn bmad_class_samples(
    dir: &Path,
    split: &str,
    skipped: &mut Vec<Skipped>,
) -> Result<(Vec<Sample>, bool)> {
    let base = dir.join(split);
    let pixel_level = base.join("good/img").is_dir();
    let mut samples = Vec::new();
    for defect in ["good", "Ungood"] {
        let folder = if pixel_level {
            base.join(defect).join("img")
        } else {
            base.join(defect)
        };
        if !folder.is_dir() {
            continue;
        }
        let masks = bmad_mask_dir(&base.join(defect));
        let mask_of = |image: &Path, _: &str| match (pixel_level, defect) {
            (false, _) => Mask::None,
            (true, "good") => Mask::Normal,
            (true, _) => Mask::File(masks.join(file_name(image))),
        };
        samples.extend(defect_samples(&folder, defect, mask_of, skipped)?);
    }
    Ok((samples, pixel_level))
}

/// BMAD sets call their mask folder `label` or `anomaly_mask`; `label` is the one named when
/// neither exists.
fn bmad_mask_dir(defect_dir: &Path) -> PathBuf {
    ["label", "anomaly_mask"]
        .map(|m| defect_dir.join(m))
        .into_iter()
        .find(|m| m.is_dir())
        .unwrap_or_else(|| defect_dir.join("label"))
}

/// The generic layout: `good/` plus any defect folders; masks only where the class has a
/// `masks/` (or `ground_truth/`) folder, which is then not a defect, nor is `train/` (the
/// known-good images of [`train_good`]). Also says which it is.
fn folder_class_samples(dir: &Path, skipped: &mut Vec<Skipped>) -> Result<(Vec<Sample>, bool)> {
    let mask_root = ["masks", "ground_truth"]
        .map(|m| dir.join(m))
        .into_iter()
        .find(|m| m.is_dir());
    let mut samples = Vec::new();
    for defect_dir in subdirs(dir)? {
        let defect = file_name(&defect_dir);
        if ["masks", "ground_truth", TRAIN].contains(&defect.as_str()) {
            continue;
        }
        let mask_of = |_: &Path, stem: &str| match (&mask_root, defect.as_str()) {
            (None, _) => Mask::None,
            (Some(_), "good") => Mask::Normal,
            (Some(m), _) => Mask::File(folder_mask(&m.join(&defect), stem)),
        };
        samples.extend(defect_samples(&defect_dir, &defect, mask_of, skipped)?);
    }
    Ok((samples, mask_root.is_some()))
}

/// The images of one defect folder, each paired with the ground truth `mask_of(image, stem)`
/// gives; the layouts differ only in where that is.
fn defect_samples(
    folder: &Path,
    defect: &str,
    mask_of: impl Fn(&Path, &str) -> Mask,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<Sample>> {
    Ok(images_in(folder, skipped)?
        .into_iter()
        .map(|(image, stem)| {
            let mask = mask_of(&image, &stem);
            sample(image, defect, stem, mask)
        })
        .collect())
}

/// `<stem>.png` if it exists, else `<stem>_mask.png` (the name reported when neither does).
fn folder_mask(dir: &Path, stem: &str) -> PathBuf {
    let plain = dir.join(format!("{stem}.png"));
    if plain.is_file() {
        plain
    } else {
        dir.join(format!("{stem}_mask.png"))
    }
}

fn sample(image: PathBuf, defect: &str, stem: String, mask: Mask) -> Sample {
    Sample {
        image,
        anomalous: defect != "good",
        defect: defect.into(),
        stem,
        mask,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default()
}

/// The folder of a class's training images in every folder layout (`train/good/`).
const TRAIN: &str = "train";

/// A class's known-good training images, the ones `eval --decide` calibrates on: the files of
/// `train/good/` by name (BMAD: `train/good/img/` where the set keeps its images there), or
/// VisA's CSV rows of the `train` split labelled normal, in file order. Files that are not
/// images are reported in `skipped`; a class with none is an error naming where they were
/// looked for.
pub fn train_good(
    layout: Layout,
    category: &Category,
    skipped: &mut Vec<Skipped>,
) -> Result<Vec<PathBuf>> {
    let csv = category.dir.join("split_csv/1cls.csv");
    let (images, place) = if layout == Layout::Visa && csv.is_file() {
        let text = std::fs::read_to_string(&csv).map_err(|e| Error::io(csv.display(), e))?;
        let images = text
            .lines()
            .filter_map(|line| parse_visa_row(line, &category.dir, TRAIN).ok().flatten())
            .filter(|(object, s)| *object == category.name && !s.anomalous)
            .map(|(_, s)| s.image)
            .filter(|image| image.is_file())
            .collect();
        let place = format!("{} (normal rows of the train split)", csv.display());
        (images, place)
    } else {
        let good = category.dir.join(TRAIN).join("good");
        let folder = match good.join("img") {
            img if layout == Layout::Bmad && img.is_dir() => img,
            _ => good,
        };
        let images = if folder.is_dir() {
            images_in(&folder, skipped)?
                .into_iter()
                .map(|(p, _)| p)
                .collect()
        } else {
            Vec::new()
        };
        (images, format!("{}/", folder.display()))
    };
    if images.is_empty() {
        return Err(Error::Option {
            option: "decide".into(),
            message: format!(
                "class `{}` has no known-good training images to calibrate on: expected them \
                 in {place}; add some there, or leave out --decide",
                category.name
            ),
        });
    }
    Ok(images)
}

/// The extensions of the image files read (`duoclip::source`), `.nii.gz` as `gz`.
const IMAGE_EXTENSIONS: [&str; 10] = [
    "png", "jpg", "jpeg", "tif", "tiff", "webp", "bmp", "dcm", "nii", "gz",
];

/// The image files of a folder with their stems (`scan.nii.gz` → `scan`); anything else is
/// reported and skipped.
fn images_in(dir: &Path, skipped: &mut Vec<Skipped>) -> Result<Vec<(PathBuf, String)>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for path in entries(dir)? {
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase());
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let gz = ext.as_deref() == Some("gz");
        let stem = if gz {
            stem.strip_suffix(".nii").unwrap_or(&stem).to_string()
        } else {
            stem
        };
        let known = ext
            .as_deref()
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e));
        let reason = if path.is_dir() {
            Some("a folder where images were expected".to_string())
        } else if !known || (gz && !file_name(&path).to_ascii_lowercase().ends_with(".nii.gz")) {
            Some(
                "not an image file duoclip reads (by its extension: PNG, JPEG, TIFF, WebP, \
                 BMP, DICOM .dcm, NIfTI .nii/.nii.gz)"
                    .to_string(),
            )
        } else if !seen.insert(stem.clone()) {
            Some(format!(
                "another image in this folder has the same name `{stem}`"
            ))
        } else {
            None
        };
        match reason {
            Some(reason) => skipped.push(Skipped {
                file: path.display().to_string(),
                reason,
            }),
            None => out.push((path, stem)),
        }
    }
    Ok(out)
}

/// VisA's CSV split: rows `object,split,label,image,mask`.
fn visa_csv(root: &Path, split: &str, skipped: &mut Vec<Skipped>) -> Result<Vec<Category>> {
    let csv = root.join("split_csv/1cls.csv");
    let text = std::fs::read_to_string(&csv).map_err(|e| Error::io(csv.display(), e))?;
    let rows = visa_rows(&text, &csv, root, split, skipped);
    Ok(group_into_classes(rows, root))
}

/// The usable rows of `split` as (class, sample), in file order. Every unusable row is
/// reported in `skipped` as it is met, so the reports follow the file too.
fn visa_rows<'a>(
    text: &'a str,
    csv: &Path,
    root: &Path,
    split: &str,
    skipped: &mut Vec<Skipped>,
) -> Vec<(&'a str, Sample)> {
    let mut rows = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        let (object, sample) = match parse_visa_row(line, root, split) {
            Ok(Some(row)) => row,
            Ok(None) => continue,
            Err(reason) => {
                skipped.push(Skipped {
                    file: format!("{}:{}", csv.display(), n + 1),
                    reason,
                });
                continue;
            }
        };
        if listed_image_exists(&sample, csv, skipped) {
            rows.push((object, sample));
        }
    }
    rows
}

/// One CSV line as (class, sample); `None` for a blank line or a row of another split, `Err`
/// with the reason for a row that cannot be used.
fn parse_visa_row<'a>(
    line: &'a str,
    root: &Path,
    split: &str,
) -> std::result::Result<Option<(&'a str, Sample)>, String> {
    let fields: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
    let [object, row_split, label, image, mask] = fields[..] else {
        if line.trim().is_empty() {
            return Ok(None);
        }
        return Err("expected 5 columns: object,split,label,image,mask".into());
    };
    if row_split != split {
        return Ok(None);
    }
    // The class name becomes a folder of the output (maps/<class>/...): a CSV that says
    // `../x` must not make eval write outside --out.
    if !is_plain_name(object) {
        return Err(format!(
            "class `{}` is not a plain folder name (it has a path separator or is `.`/`..`)",
            object.escape_debug()
        ));
    }
    let image = root.join(image);
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    let (defect, mask) = visa_ground_truth(label, mask, root)?;
    Ok(Some((object, sample(image, defect, stem, mask))))
}

/// The defect folder and mask a row's label calls for: an anomaly is only usable with its mask.
fn visa_ground_truth(
    label: &str,
    mask: &str,
    root: &Path,
) -> std::result::Result<(&'static str, Mask), String> {
    match label {
        "normal" => Ok(("good", Mask::Normal)),
        "anomaly" if mask.is_empty() => Err("an anomalous image without a mask path".into()),
        "anomaly" => Ok(("bad", Mask::File(root.join(mask)))),
        other => Err(format!("label `{other}` is neither normal nor anomaly")),
    }
}

/// A row whose image is not there is reported under the image's own name, not the CSV line.
fn listed_image_exists(sample: &Sample, csv: &Path, skipped: &mut Vec<Skipped>) -> bool {
    let exists = sample.image.is_file();
    if !exists {
        skipped.push(Skipped {
            file: sample.image.display().to_string(),
            reason: format!("listed in {} but missing", csv.display()),
        });
    }
    exists
}

/// Rows grouped by their class, classes in name order (as the folder layouts list them), each
/// keeping its images in CSV order.
fn group_into_classes(rows: Vec<(&str, Sample)>, root: &Path) -> Vec<Category> {
    let mut categories: Vec<Category> = Vec::new();
    for (object, sample) in rows {
        match categories.iter_mut().find(|c| c.name == object) {
            Some(category) => category.samples.push(sample),
            None => categories.push(Category {
                name: object.into(),
                dir: root.to_path_buf(),
                pixel_level: true,
                samples: vec![sample],
            }),
        }
    }
    categories.sort_by(|a, b| a.name.cmp(&b.name));
    categories
}

/// One path component that stays where it is joined: no separator, not `.` or `..`.
fn is_plain_name(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\\', '\0', ':'])
}

fn select(categories: &mut Vec<Category>, only: &[String], root: &Path) -> Result<()> {
    if only.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = categories.iter().map(|c| c.name.clone()).collect();
    if let Some(unknown) = only.iter().find(|o| !names.contains(o)) {
        return Err(Error::Option {
            option: "category".into(),
            message: format!(
                "`{unknown}` is not a class of {}; found: {}",
                root.display(),
                if names.is_empty() {
                    "none".into()
                } else {
                    names.join(", ")
                }
            ),
        });
    }
    categories.retain(|c| only.contains(&c.name));
    Ok(())
}

/// Leaves out anomalous images whose mask is missing or of another size than the image.
fn check_masks(category: &mut Category, skipped: &mut Vec<Skipped>) {
    category.samples.retain(|s| {
        let problem = match &s.mask {
            Mask::File(mask) if !mask.is_file() => {
                Some(format!("no ground-truth mask: expected {}", mask.display()))
            }
            Mask::File(mask) => match (dimensions(&s.image), dimensions(mask)) {
                (Err(e), _) | (_, Err(e)) => Some(e),
                (Ok(a), Ok(b)) if a != b => Some(format!(
                    "its mask {} is {}×{} but the image is {}×{}",
                    mask.display(),
                    b.0,
                    b.1,
                    a.0,
                    a.1
                )),
                _ => None,
            },
            _ => None,
        };
        if let Some(reason) = &problem {
            skipped.push(Skipped {
                file: s.image.display().to_string(),
                reason: reason.clone(),
            });
        }
        problem.is_none()
    });
}

/// Width and height: from a raster file's header, else (DICOM, NIfTI: formats the `image`
/// crate does not know) from the one image `duoclip::source` reads in it.
fn dimensions(path: &Path) -> std::result::Result<(u32, u32), String> {
    let reader = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if reader.format().is_some() {
        return reader
            .into_dimensions()
            .map_err(|e| format!("{}: cannot read the image header: {e}", path.display()));
    }
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| format!("{name}: {e}"))?;
    let image = Source::open(bytes, &name, &ReadOptions::default())
        .and_then(|source| source.image(0))
        .map_err(|e| e.to_string())?
        .image;
    Ok((image.width, image.height))
}

/// A ground-truth mask: any non-zero pixel is anomalous (VisA stores class indices 1..n,
/// MVTec and BMAD 255). Returns (pixels, width, height).
pub fn load_mask(path: &Path) -> Result<(Vec<bool>, usize, usize)> {
    let img = image::ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| Error::io(path.display(), e))?
        .decode()
        .map_err(|e| Error::Image {
            path: path.display().to_string(),
            message: format!("cannot decode the mask: {e}"),
        })?
        .to_luma8();
    let (w, h) = img.dimensions();
    Ok((
        img.into_raw().into_iter().map(|v| v > 0).collect(),
        w as usize,
        h as usize,
    ))
}

/// MVTec AD's texture classes (METHOD.md §3: texture prompts).
const TEXTURES: [&str; 5] = ["carpet", "grid", "leather", "tile", "wood"];

/// The prompt domain a class of a benchmark calls for: texture for MVTec's textures, the
/// modality of a BMAD set (recognised by its folder name: Brain, Liver, RESC, OCT2017, Chest,
/// Histopathology, or the source names BraTS, RSNA, Camelyon), object otherwise. `None` for
/// a BMAD folder whose modality is not recognised.
pub fn default_domain(layout: Layout, class: &str) -> Option<crate::prompts::Domain> {
    use crate::prompts::Domain;
    let lower = class.to_ascii_lowercase();
    match layout {
        Layout::Bmad => [
            ("brain", Domain::BrainMri),
            ("brats", Domain::BrainMri),
            ("liver", Domain::LiverCt),
            ("resc", Domain::RetinalOct),
            ("oct", Domain::RetinalOct),
            ("retina", Domain::RetinalOct),
            ("chest", Domain::ChestXray),
            ("rsna", Domain::ChestXray),
            ("histo", Domain::Histopathology),
            ("camelyon", Domain::Histopathology),
        ]
        .into_iter()
        .find(|(key, _)| lower.contains(key))
        .map(|(_, d)| d),
        Layout::Mvtec if TEXTURES.contains(&class) => Some(Domain::Texture),
        _ => Some(Domain::Object),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompts::Domain;

    #[test]
    fn benchmark_classes_get_their_domain() {
        let bmad = |name| default_domain(Layout::Bmad, name);
        assert_eq!(bmad("Brain_AD"), Some(Domain::BrainMri));
        assert_eq!(bmad("RetinaOCT2017_AD"), Some(Domain::RetinalOct));
        assert_eq!(bmad("RetinaRESC_AD"), Some(Domain::RetinalOct));
        assert_eq!(bmad("camelyon16"), Some(Domain::Histopathology));
        assert_eq!(bmad("Chest_AD"), Some(Domain::ChestXray));
        assert_eq!(bmad("Knee_AD"), None);
        assert_eq!(default_domain(Layout::Mvtec, "wood"), Some(Domain::Texture));
        assert_eq!(default_domain(Layout::Mvtec, "screw"), Some(Domain::Object));
        assert_eq!(default_domain(Layout::Visa, "pcb1"), Some(Domain::Object));
    }
}

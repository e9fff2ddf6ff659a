//! Which images are scored together, for the command line and the browser alike.
//!
//! Images that belong together reference each other as a set: the slices of a volume, the
//! frames of a file, and the files of one DICOM series (a CT or MR series is often handed
//! over as one file per slice). Single images next to each other are grouped by the
//! detector's rule (pairs, or one set for an odd count). Images are numbered across the
//! files in order, the first file's images first.

use std::collections::HashMap;

use crate::detect::Detector;
use crate::detect::config::Pairing;
use crate::error::{Error, Result};

/// The DICOM series a file belongs to and its place in it. The SeriesInstanceUID identifies
/// a study (PS3.15), so it is held for comparison only and never shown, not even by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct SeriesKey {
    uid: String,
    instance: i64,
}

impl SeriesKey {
    /// The series `uid` (SeriesInstanceUID) and the file's InstanceNumber in it.
    pub fn new(uid: String, instance: i64) -> Self {
        SeriesKey { uid, instance }
    }

    /// The file's InstanceNumber: its place in the series.
    pub fn instance(&self) -> i64 {
        self.instance
    }

    /// Whether `other` is a file of the same series.
    pub fn same_series(&self, other: &SeriesKey) -> bool {
        self.uid == other.uid
    }
}

impl std::fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeriesKey")
            .field("instance", &self.instance)
            .finish_non_exhaustive()
    }
}

/// What grouping needs to know about one opened file.
#[derive(Debug, Clone, PartialEq)]
pub struct FileShape {
    /// How many images the file holds (slices, frames; 1 for a plain image).
    pub images: usize,
    /// The DICOM series of the file, where it names one.
    pub series: Option<SeriesKey>,
}

/// The groups of images scored together, as image indices (flattened in file order):
/// `pairing` (`None`: the detector's default) within each run of images that belong
/// together, in consecutive parts of `set_size` images where given; a run of one image
/// beside others is scored alone. Known-good `references` score every image alone.
pub fn groups(
    det: &Detector,
    files: &[FileShape],
    references: usize,
    pairing: Option<Pairing>,
    set_size: Option<usize>,
) -> Result<Vec<Vec<usize>>> {
    groups_by(files, pairing, set_size, &|n, pairing| {
        det.groups(n, references, pairing)
    })
}

/// Checks `set_size` against `pairing` before anything is opened or loaded.
pub fn check_set_size(set_size: Option<usize>, pairing: Option<Pairing>) -> Result<()> {
    let Some(size) = set_size else {
        return Ok(());
    };
    let message = if pairing != Some(Pairing::Set) {
        "applies to ‹pairing› set; give that too"
    } else if size < 2 {
        "a set needs at least 2 images"
    } else {
        return Ok(());
    };
    Err(Error::Option {
        option: "set_size".into(),
        message: format!("{size}: {message}"),
    })
}

/// How `n` images are grouped under a pairing: the detector's rule, apart from a model.
type Rule<'a> = &'a dyn Fn(usize, Option<Pairing>) -> Result<Vec<Vec<usize>>>;

fn groups_by(
    files: &[FileShape],
    pairing: Option<Pairing>,
    set_size: Option<usize>,
    rule: Rule,
) -> Result<Vec<Vec<usize>>> {
    check_set_size(set_size, pairing)?;
    let mut groups = Vec::new();
    let runs = runs(files);
    let several = runs.len() > 1;
    for run in runs {
        let n = run.members.len();
        let pairing = match pairing {
            // One plain image beside volumes or series (an X-ray dropped with a CT) has no
            // partner of its kind: it is scored alone, as one image given alone is, rather
            // than the whole call refused.
            _ if n == 1 && several => None,
            None if run.as_set => Some(Pairing::Set),
            chosen => chosen,
        };
        let parts = match set_size {
            Some(size) => chunks(n, size),
            None => vec![(0, n)],
        };
        for (start, end) in parts {
            groups.extend(
                rule(end - start, pairing)?
                    .into_iter()
                    .map(|g| g.into_iter().map(|i| run.members[start + i]).collect()),
            );
        }
    }
    Ok(groups)
}

/// Images grouped by the detector's rule among themselves.
#[derive(Debug, PartialEq)]
struct Run {
    /// Image indices, in the order they are grouped.
    members: Vec<usize>,
    /// The images of one file or one series: they reference each other as a set.
    as_set: bool,
}

/// The runs of `files`: each file of several images; each series of several single-image
/// files, ordered by InstanceNumber (ties in file order); and the other single images,
/// those next to each other together (a series' files in between do not part them).
fn runs(files: &[FileShape]) -> Vec<Run> {
    let mut per_series: HashMap<&str, usize> = HashMap::new();
    for file in files.iter().filter(|f| f.images == 1) {
        if let Some(key) = &file.series {
            *per_series.entry(key.uid.as_str()).or_default() += 1;
        }
    }
    let mut runs: Vec<Run> = Vec::new();
    // The run of each series of several files, with each member's InstanceNumber.
    let mut series_runs: HashMap<&str, usize> = HashMap::new();
    let mut instances: HashMap<usize, Vec<(i64, usize)>> = HashMap::new();
    let mut singles: Option<usize> = None;
    let mut first = 0;
    for file in files {
        let start = first;
        first += file.images;
        let series = file
            .series
            .as_ref()
            .filter(|key| file.images == 1 && per_series[key.uid.as_str()] > 1);
        if let Some(key) = series {
            let run = *series_runs.entry(key.uid.as_str()).or_insert_with(|| {
                runs.push(Run {
                    members: Vec::new(),
                    as_set: true,
                });
                runs.len() - 1
            });
            instances
                .entry(run)
                .or_default()
                .push((key.instance, start));
        } else if file.images == 1 {
            match singles {
                Some(run) => runs[run].members.push(start),
                None => {
                    runs.push(Run {
                        members: vec![start],
                        as_set: false,
                    });
                    singles = Some(runs.len() - 1);
                }
            }
        } else if file.images > 1 {
            runs.push(Run {
                members: (start..first).collect(),
                as_set: true,
            });
            singles = None;
        }
    }
    for (run, mut members) in instances {
        // A stable sort: files of one InstanceNumber stay in the order given.
        members.sort_by_key(|&(instance, _)| instance);
        runs[run].members = members.into_iter().map(|(_, image)| image).collect();
    }
    runs
}

/// `[start, end)` runs of `size` (≥ 2) covering `0..n`; a last lone index joins the run
/// before it, since a set of one has nothing to compare with.
fn chunks(n: usize, size: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = (0..n)
        .step_by(size)
        .map(|s| (s, (s + size).min(n)))
        .collect();
    if runs.len() > 1 && runs.last().is_some_and(|(s, e)| e - s == 1) {
        let (_, end) = runs.pop().expect("checked");
        runs.last_mut().expect("checked").1 = end;
    }
    runs
}

/// Images a viewer steps through together: a volume's slices, a file's frames, or the files
/// of one DICOM series (in InstanceNumber order, then as given). `id` is the stack's first
/// file (a file's own index where it stands alone); `first` is the file's first slice in it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stack {
    pub id: usize,
    pub first: usize,
}

pub fn stacks(shapes: &[FileShape]) -> Vec<Stack> {
    (0..shapes.len())
        .map(|f| {
            let Some(key) = &shapes[f].series else {
                return Stack { id: f, first: 0 };
            };
            let mut members: Vec<usize> = (0..shapes.len())
                .filter(|&g| {
                    shapes[g]
                        .series
                        .as_ref()
                        .is_some_and(|k| k.same_series(key))
                })
                .collect();
            let id = members[0];
            members.sort_by_key(|&g| (shapes[g].series.as_ref().map(|k| k.instance()), g));
            let before = members.iter().take_while(|&&g| g != f);
            Stack {
                id,
                first: before.map(|&g| shapes[g].images).sum(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn single() -> FileShape {
        FileShape {
            images: 1,
            series: None,
        }
    }

    fn volume(images: usize) -> FileShape {
        FileShape {
            images,
            series: None,
        }
    }

    fn slice_file(uid: &str, instance: i64) -> FileShape {
        FileShape {
            images: 1,
            series: Some(SeriesKey::new(uid.into(), instance)),
        }
    }

    /// A stand-in for the detector's rule that shows what it was given: one set under
    /// `Set` (refused for one image, as the detector refuses it), else consecutive pairs (a
    /// last odd image alone).
    fn rule(n: usize, pairing: Option<Pairing>) -> Result<Vec<Vec<usize>>> {
        let all: Vec<usize> = (0..n).collect();
        Ok(match pairing {
            Some(Pairing::Set) if n < 2 => {
                return Err(Error::Option {
                    option: "pairing".into(),
                    message: "a set of one".into(),
                });
            }
            Some(Pairing::Set) => vec![all],
            _ => all.chunks(2).map(<[usize]>::to_vec).collect(),
        })
    }

    fn grouped(
        files: &[FileShape],
        pairing: Option<Pairing>,
        size: Option<usize>,
    ) -> Vec<Vec<usize>> {
        groups_by(files, pairing, size, &rule).unwrap()
    }

    #[test]
    fn neighbouring_single_images_form_one_run_and_a_volume_is_one_set() {
        let files = [single(), single(), single(), volume(3), single(), single()];
        assert_eq!(
            grouped(&files, None, None),
            vec![vec![0, 1], vec![2], vec![3, 4, 5], vec![6, 7]]
        );
        // `pairs` overrides the volume's set.
        assert_eq!(
            grouped(&files, Some(Pairing::Pairs), None)[2..4],
            [vec![3, 4], vec![5]]
        );
    }

    #[test]
    fn a_series_of_single_image_files_is_one_set_in_instance_order() {
        let files = [
            slice_file("1.2.3", 3),
            single(),
            slice_file("1.2.3", 1),
            slice_file("9.9", 5),
            single(),
            slice_file("1.2.3", 2),
            slice_file("1.2.3", 1),
        ];
        // Series 1.2.3: instances 3, 1, 2, 1 at images 0, 2, 5, 6 → 1 (image 2), 1 (image 6,
        // later in the files), 2, 3. Series 9.9 has one file: a single image like any other.
        assert_eq!(
            grouped(&files, None, None),
            vec![vec![2, 6, 5, 0], vec![1, 3], vec![4]]
        );
    }

    #[test]
    fn set_size_chunks_every_run_and_a_lone_last_image_joins_the_part_before() {
        let files = [volume(5), slice_file("s", 2), slice_file("s", 1)];
        assert_eq!(
            grouped(&files, Some(Pairing::Set), Some(2)),
            vec![vec![0, 1], vec![2, 3, 4], vec![6, 5]]
        );
        assert_eq!(chunks(10, 4), vec![(0, 4), (4, 8), (8, 10)]);
        assert_eq!(chunks(9, 4), vec![(0, 4), (4, 9)]);
        assert_eq!(chunks(3, 4), vec![(0, 3)]);
    }

    #[test]
    fn set_size_needs_pairing_set_and_two_images() {
        let message = |size, pairing| match check_set_size(Some(size), pairing) {
            Err(Error::Option { message, .. }) => message,
            other => panic!("{other:?}"),
        };
        assert!(message(4, None).contains("set"));
        assert!(message(1, Some(Pairing::Set)).contains("at least 2"));
        assert!(check_set_size(Some(2), Some(Pairing::Set)).is_ok());
    }

    #[test]
    fn a_series_key_never_shows_its_uid() {
        let key = SeriesKey::new("1.2.840.99.12345".into(), 7);
        let shown = format!("{key:?} {:?}", slice_file("1.2.840.99.12345", 7));
        assert!(!shown.contains("12345"), "{shown}");
        assert!(shown.contains("instance: 7"), "{shown}");
    }

    #[test]
    fn a_series_given_shuffled_is_one_stack_in_instance_order() {
        let two_frames = FileShape {
            images: 2,
            series: Some(SeriesKey::new("9.9".into(), 1)),
        };
        let shapes = [
            slice_file("1.2.3", 3),
            volume(5),
            slice_file("1.2.3", 1),
            two_frames,
            slice_file("1.2.3", 2),
        ];
        let got: Vec<(usize, usize)> = stacks(&shapes).iter().map(|s| (s.id, s.first)).collect();
        assert_eq!(got, [(0, 2), (1, 0), (0, 0), (3, 0), (0, 1)]);
    }

    #[test]
    fn a_lone_image_beside_a_volume_is_scored_alone_not_refused() {
        let files = [volume(3), single()];
        assert_eq!(
            grouped(&files, Some(Pairing::Set), None),
            vec![vec![0, 1, 2], vec![3]]
        );
    }
}

//! Domain-aware contrastive state prompts (METHOD.md §3) and their text embeddings.
//!
//! A prompt is a sentence form (`FORMS`) filled with a domain phrase (`Domain::phrases`), its
//! article and a state-filled object (`NORMAL_STATES` / `ABNORMAL_STATES`). Each side's text
//! anchor is the normalized mean of its prompts' embeddings; the embeddings are the same for
//! every image, so `AnchorCache` keeps them per (model, domain, object), in memory and on disk.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Tensor;

use crate::{Error, Result};

mod anchors;
mod bundled;
mod cache;

pub use anchors::{text_anchors, text_anchors_async};
pub use bundled::read_anchors;
#[cfg(not(target_arch = "wasm32"))]
pub use cache::model_id;
pub use cache::{AnchorCache, StoredAnchors};

/// The text side of the detector for one (model, domain, object).
#[derive(Debug, Clone)]
pub struct TextAnchors {
    /// `[2, D]`: row 0 `t_n`, row 1 `t_a` — each the normalized mean of its side's
    /// UNnormalized prompt embeddings.
    pub states: Tensor<2>,
    /// `[2·P, D]`: every prompt's unit embedding, the normal block first (E of the TTA
    /// adapter); order inside a block: domain phrase, then form, then state innermost.
    pub prompts: Tensor<2>,
}

/// Normal states; `{}` is the object name.
pub const NORMAL_STATES: [&str; 7] = [
    "normal {}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
];

/// Abnormal states, pairwise opposite to `NORMAL_STATES`; `{}` is the object name.
pub const ABNORMAL_STATES: [&str; 7] = [
    "damaged {}",
    "abnormal {}",
    "imperfect {}",
    "blemished {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
];

/// The 22 sentence forms. Placeholders are whole words: `D` the domain phrase, `ART` its
/// article (see [`article`]), `{}` the state-filled object.
pub const FORMS: [&str; 22] = [
    "a cropped D of the {}",
    "a cropped D of a {}",
    "a close-up D of a {}",
    "a close-up D of the {}",
    "a bright D of a {}",
    "a bright D of the {}",
    "a dark D of the {}",
    "a dark D of a {}",
    "a jpeg corrupted D of a {}",
    "a jpeg corrupted D of the {}",
    "a blurry D of the {}",
    "a blurry D of a {}",
    "ART D of a {}",
    "ART D of the {}",
    "ART D of a small {}",
    "ART D of the small {}",
    "ART D of a large {}",
    "ART D of the large {}",
    "ART D of the {} for visual inspection",
    "ART D of a {} for visual inspection",
    "ART D of the {} for anomaly detection",
    "ART D of a {} for anomaly detection",
];

/// Most phrases a custom domain may have (8 phrases → 8·22·7 = 1232 prompts per side).
pub const MAX_CUSTOM_PHRASES: usize = 8;

/// What the images show; decides the domain phrases of the prompts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Domain {
    /// Industrial objects (MVTec AD objects, VisA).
    Object,
    /// Industrial textures (carpet, grid, leather, tile, wood).
    Texture,
    BrainMri,
    LiverCt,
    RetinalOct,
    ChestXray,
    Histopathology,
    /// The user's own phrases, 1 to [`MAX_CUSTOM_PHRASES`], e.g. `["ultrasound image"]`.
    Custom(Vec<String>),
}

/// The built-in domains with their names, in the order the help lists them.
const BUILT_IN: [(&str, Domain); 7] = [
    ("object", Domain::Object),
    ("texture", Domain::Texture),
    ("brain-mri", Domain::BrainMri),
    ("liver-ct", Domain::LiverCt),
    ("retinal-oct", Domain::RetinalOct),
    ("chest-xray", Domain::ChestXray),
    ("histopathology", Domain::Histopathology),
];

/// How a custom domain is written as one `--domain` value.
const CUSTOM_PREFIX: &str = "custom:";

impl Domain {
    /// Builds a custom domain from the user's phrases (trimmed), checking them.
    pub fn custom<S: AsRef<str>>(phrases: &[S]) -> Result<Domain> {
        let phrases: Vec<String> = phrases
            .iter()
            .map(|p| p.as_ref().trim().to_string())
            .collect();
        check_custom(&phrases)?;
        Ok(Domain::Custom(phrases))
    }

    /// The domain phrases, in prompt order (METHOD.md §3). Custom phrases come back trimmed.
    pub fn phrases(&self) -> Vec<String> {
        let fixed: &[&str] = match self {
            Domain::Object => &[
                "industrial photo",
                "industrial image",
                "manufacturing image",
            ],
            Domain::Texture => &["industrial photo", "textural photo", "surface picture"],
            Domain::BrainMri => &["brain MRI scan", "MRI image", "medical image"],
            Domain::LiverCt => &["liver CT scan", "CT image", "medical image"],
            Domain::RetinalOct => &["retinal OCT scan", "OCT image", "medical image"],
            Domain::ChestXray => &["chest X-ray", "radiograph", "medical image"],
            Domain::Histopathology => {
                &["histopathology slide", "microscopy image", "medical image"]
            }
            Domain::Custom(phrases) => {
                return phrases.iter().map(|p| p.trim().to_string()).collect();
            }
        };
        fixed.iter().map(|p| p.to_string()).collect()
    }

    /// The name `FromStr` reads back: `brain-mri`, or `custom:PHRASE,PHRASE` for custom
    /// phrases. Used in cache keys and configs.
    pub fn name(&self) -> String {
        match self {
            Domain::Custom(_) => format!("{CUSTOM_PREFIX}{}", self.phrases().join(",")),
            built_in => BUILT_IN
                .iter()
                .find(|(_, d)| d == built_in)
                .map(|(name, _)| name.to_string())
                .expect("every built-in domain has a name"),
        }
    }

    /// The object name BMAD's medical sets use; `None` for industrial and custom domains,
    /// whose object is the class folder name.
    pub fn default_object(&self) -> Option<&str> {
        match self {
            Domain::BrainMri => Some("brain"),
            Domain::LiverCt => Some("liver"),
            Domain::RetinalOct => Some("retina"),
            Domain::ChestXray => Some("chest"),
            Domain::Histopathology => Some("tissue"),
            Domain::Object | Domain::Texture | Domain::Custom(_) => None,
        }
    }

    /// Errors on custom phrases that cannot make prompts.
    fn check(&self) -> Result<()> {
        match self {
            Domain::Custom(_) => check_custom(&self.phrases()),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

impl FromStr for Domain {
    type Err = Error;

    /// A built-in name (ASCII case ignored) or `custom:PHRASE,PHRASE,...`.
    fn from_str(s: &str) -> Result<Domain> {
        let s = s.trim();
        if let Some(list) = s
            .get(..CUSTOM_PREFIX.len())
            .filter(|p| p.eq_ignore_ascii_case(CUSTOM_PREFIX))
            .map(|_| &s[CUSTOM_PREFIX.len()..])
        {
            return Domain::custom(&list.split(',').collect::<Vec<_>>());
        }
        BUILT_IN
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s))
            .map(|(_, d)| d.clone())
            .ok_or_else(|| domain_error(format!("unknown domain `{s}`")))
    }
}

fn domain_error(what: String) -> Error {
    let names: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
    Error::Option {
        option: "domain".into(),
        message: format!(
            "{what}; accepted: {}, or your own 1 to {MAX_CUSTOM_PHRASES} domain phrases as \
             `custom:PHRASE,PHRASE,...` (e.g. ‹domain› \"custom:ultrasound image,sonogram\"; \
             each phrase fills `a close-up PHRASE of a damaged OBJECT`)",
            names.join(", ")
        ),
    }
}

fn check_custom(phrases: &[String]) -> Result<()> {
    if phrases.is_empty() || phrases.len() > MAX_CUSTOM_PHRASES {
        return Err(domain_error(format!(
            "a custom domain has {} phrases; it needs 1 to {MAX_CUSTOM_PHRASES}",
            phrases.len()
        )));
    }
    for (i, p) in phrases.iter().enumerate() {
        if p.trim().is_empty() {
            return Err(domain_error(format!(
                "custom domain phrase {} is empty",
                i + 1
            )));
        }
        // `name()` joins the phrases with commas and FromStr splits them there again.
        if p.contains(',') {
            return Err(domain_error(format!(
                "custom domain phrase `{p}` contains a comma, which separates phrases"
            )));
        }
    }
    Ok(())
}

/// The domain and object a user chose: `domain` is a name (`brain-mri`, `custom:…`) or
/// `custom` with `phrases`; `object` defaults to the domain's (medical domains).
pub fn choose(domain: &str, phrases: &[String], object: Option<&str>) -> Result<(Domain, String)> {
    let domain = choose_domain(domain, phrases)?;
    let object = choose_object(&domain, object)?;
    Ok((domain, object))
}

/// The prompt domain a user named: a built-in name, or `custom` with its `phrases`.
pub fn choose_domain(domain: &str, phrases: &[String]) -> Result<Domain> {
    match (domain, phrases.is_empty()) {
        ("custom", false) => Domain::custom(phrases),
        ("custom", true) => Err(Error::Option {
            option: "domain".into(),
            message:
                "‹domain› custom needs ‹domain_phrases›, e.g. ‹domain_phrases› \"x-ray,radiograph,medical image\""
                    .into(),
        }),
        (name, true) => name.parse(),
        (_, false) => Err(Error::Option {
            option: "domain_phrases".into(),
            message: "is only used with ‹domain› custom".into(),
        }),
    }
}

/// The object of the prompts: the user's, else the domain's default (medical domains).
pub fn choose_object(domain: &Domain, object: Option<&str>) -> Result<String> {
    match (object, domain.default_object()) {
        (Some(o), _) => object_name(o),
        (None, Some(o)) => Ok(o.to_string()),
        (None, None) => Err(Error::Option {
            option: "object".into(),
            message: format!(
                "domain `{}` has no default object: say what the images show, e.g. ‹object› \
                 metal_nut",
                domain.name()
            ),
        }),
    }
}

/// The object name of a class folder: the name as is (underscores kept: `metal_nut`), except
/// VisA's `macaroni1` / `macaroni2`, which are both `macaroni`.
pub fn object_name(class_folder: &str) -> Result<String> {
    check_object(class_folder)?;
    Ok(match class_folder {
        "macaroni1" | "macaroni2" => "macaroni".into(),
        name => name.to_string(),
    })
}

fn check_object(object: &str) -> Result<()> {
    if object.trim().is_empty() {
        return Err(Error::Option {
            option: "object".into(),
            message: "the object name is empty; name what the images show, e.g. \
                      ‹object› metal_nut (MVTec/VisA: the class folder name)"
                .into(),
        });
    }
    Ok(())
}

/// `"an"` before a phrase that starts with a vowel sound, else `"a"`.
///
/// ASSUMPTION (METHOD.md §3 says only "before a vowel sound"): decided by the first word.
/// - A word of capitals (an initialism, `MRI`, `OCT`, `CT`) or a single letter before a hyphen
///   (`X-ray`) is read letter by letter: `an` when the first letter's name starts with a vowel
///   sound (A E F H I L M N O R S X), so "an MRI image", "a CT image", "an X-ray";
///   except acronyms read as words (`SPECT`, `STEM`, `LASER`, `LIDAR`, `RADAR`, `SONAR`, `NASA`).
/// - A number: `an` for 8…, 11 and 18 ("an 8-bit image").
/// - Otherwise a vowel letter gives `an`, except words sounding "you"/"w" (`uni…`, `use…`,
///   `usu…`, `uti…`, `uro…`, `ure…`, `eu…`, `ewe…`, `one…`, `once…`), and a silent h gives `an`
///   (`hour…`, `honest…`, `honor…`, `honour…`, `heir…`).
pub fn article(phrase: &str) -> &'static str {
    const LETTER_NAMES_WITH_VOWEL_SOUND: &str = "AEFHILMNORSX";
    const ACRONYMS_READ_AS_WORDS: [&str; 7] =
        ["SPECT", "STEM", "LASER", "LIDAR", "RADAR", "SONAR", "NASA"];
    const CONSONANT_SOUND: [&str; 10] = [
        "uni", "use", "usu", "uti", "uro", "ure", "eu", "ewe", "one", "once",
    ];
    const SILENT_H: [&str; 5] = ["hour", "honest", "honor", "honour", "heir"];

    let word = phrase.split_whitespace().next().unwrap_or("");
    let head: String = word
        .chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect();
    let Some(first) = head.chars().next() else {
        return "a";
    };
    let an = |yes: bool| if yes { "an" } else { "a" };
    if first.is_ascii_digit() {
        let number: String = head.chars().take_while(char::is_ascii_digit).collect();
        return an(number.starts_with('8') || number == "11" || number == "18");
    }
    let single_letter = head.len() == 1;
    let initialism = head.len() >= 2
        && first.is_ascii_uppercase()
        && head
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit());
    if (single_letter || initialism) && !ACRONYMS_READ_AS_WORDS.contains(&head.as_str()) {
        return an(LETTER_NAMES_WITH_VOWEL_SOUND.contains(first.to_ascii_uppercase()));
    }
    let lower = word.to_lowercase();
    if SILENT_H.iter().any(|w| lower.starts_with(w)) {
        return "an";
    }
    an("aeiou".contains(first.to_ascii_lowercase())
        && !CONSONANT_SOUND.iter().any(|w| lower.starts_with(w)))
}

/// Replaces whole-word placeholders; substituted text is not scanned again, so a phrase or
/// object that happens to contain `D`, `ART` or `{}` stays as given.
fn fill(template: &str, with: &[(&str, &str)]) -> String {
    template
        .split(' ')
        .map(|w| with.iter().find(|(k, _)| *k == w).map_or(w, |(_, v)| *v))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The normal and the abnormal prompts: per side, for each domain phrase (outermost), each of
/// the 22 forms, each of the 7 states (innermost) — 462 per side for a built-in domain.
pub fn prompts(domain: &Domain, object: &str) -> Result<[Vec<String>; 2]> {
    domain.check()?;
    check_object(object)?;
    let side = |states: &[&str; 7]| -> Vec<String> {
        let mut out = Vec::with_capacity(domain.phrases().len() * FORMS.len() * states.len());
        for phrase in domain.phrases() {
            let art = article(&phrase);
            for form in FORMS {
                for state in states {
                    let thing = fill(state, &[("{}", object)]);
                    out.push(fill(form, &[("ART", art), ("D", &phrase), ("{}", &thing)]));
                }
            }
        }
        out
    };
    Ok([side(&NORMAL_STATES), side(&ABNORMAL_STATES)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_domains_make_462_prompts_per_side() {
        for (name, domain) in BUILT_IN {
            let [n, a] = prompts(&domain, "metal_nut").unwrap();
            assert_eq!((n.len(), a.len()), (462, 462), "{name}");
            assert_eq!(domain.phrases().len(), 3);
            assert_eq!(name.parse::<Domain>().unwrap(), domain);
            assert_eq!(domain.name(), name);
        }
    }

    #[test]
    fn prompt_order_is_phrase_then_form_then_state() {
        let [n, a] = prompts(&Domain::Object, "metal_nut").unwrap();
        assert_eq!(
            &n[..8],
            [
                "a cropped industrial photo of the normal metal_nut",
                "a cropped industrial photo of the flawless metal_nut",
                "a cropped industrial photo of the perfect metal_nut",
                "a cropped industrial photo of the unblemished metal_nut",
                "a cropped industrial photo of the metal_nut without flaw",
                "a cropped industrial photo of the metal_nut without defect",
                "a cropped industrial photo of the metal_nut without damage",
                "a cropped industrial photo of a normal metal_nut",
            ]
        );
        assert_eq!(
            &n[n.len() - 2..],
            [
                "a manufacturing image of a metal_nut without defect for anomaly detection",
                "a manufacturing image of a metal_nut without damage for anomaly detection",
            ]
        );
        assert_eq!(a[0], "a cropped industrial photo of the damaged metal_nut");
        assert_eq!(
            a[461],
            "a manufacturing image of a metal_nut with damage for anomaly detection"
        );
        // Second phrase starts at 22·7; form 13 ("ART D of a {}") is index 12.
        assert_eq!(
            a[154],
            "a cropped industrial image of the damaged metal_nut"
        );
        assert_eq!(a[12 * 7], "an industrial photo of a damaged metal_nut");
        assert!(n.iter().chain(&a).all(|p| !p.ends_with('.')));
    }

    #[test]
    fn article_follows_the_sound() {
        let cases = [
            ("industrial photo", "an"),
            ("industrial image", "an"),
            ("manufacturing image", "a"),
            ("textural photo", "a"),
            ("surface picture", "a"),
            ("brain MRI scan", "a"),
            ("MRI image", "an"),
            ("medical image", "a"),
            ("CT image", "a"),
            ("OCT image", "an"),
            ("retinal OCT scan", "a"),
            ("chest X-ray", "a"),
            ("X-ray image", "an"),
            ("radiograph", "a"),
            ("histopathology slide", "a"),
            ("microscopy image", "a"),
            ("ultrasound image", "an"),
            ("unit photo", "a"),
            ("USB camera photo", "a"),
            ("SEM image", "an"),
            ("SPECT image", "a"),
            ("hour-long exposure", "an"),
            ("8-bit image", "an"),
            ("3D scan", "a"),
            ("euclidean render", "a"),
            ("", "a"),
        ];
        for (phrase, want) in cases {
            assert_eq!(article(phrase), want, "{phrase}");
        }
        let [n, _] = prompts(&Domain::BrainMri, "brain").unwrap();
        assert!(n.contains(&"an MRI image of the small perfect brain".to_string()));
        assert!(n.contains(&"a brain MRI scan of a brain without flaw".to_string()));
    }

    #[test]
    fn object_names_come_from_class_folders() {
        assert_eq!(object_name("metal_nut").unwrap(), "metal_nut");
        assert_eq!(object_name("macaroni1").unwrap(), "macaroni");
        assert_eq!(object_name("macaroni2").unwrap(), "macaroni");
        assert_eq!(object_name("pcb1").unwrap(), "pcb1");
        for bad in ["", "  ", "\t"] {
            let e = object_name(bad).unwrap_err().to_string();
            assert!(e.contains("`object`"), "{e}");
        }
        assert!(prompts(&Domain::Object, " ").is_err());
    }

    #[test]
    fn medical_domains_have_default_objects() {
        let objects: Vec<_> = BUILT_IN.iter().map(|(_, d)| d.default_object()).collect();
        assert_eq!(
            objects,
            [
                None,
                None,
                Some("brain"),
                Some("liver"),
                Some("retina"),
                Some("chest"),
                Some("tissue")
            ]
        );
    }

    #[test]
    fn custom_domains_are_checked() {
        let d: Domain = "custom: ultrasound image , sonogram".parse().unwrap();
        assert_eq!(
            d,
            Domain::Custom(vec!["ultrasound image".into(), "sonogram".into()])
        );
        assert_eq!(d.name(), "custom:ultrasound image,sonogram");
        assert_eq!(d.name().parse::<Domain>().unwrap(), d);
        let [n, a] = prompts(&d, "kidney").unwrap();
        assert_eq!((n.len(), a.len()), (2 * 22 * 7, 2 * 22 * 7));
        assert_eq!(n[12 * 7], "an ultrasound image of a normal kidney");
        assert_eq!(Domain::custom(&["a"; 8]).unwrap().phrases().len(), 8);
        for bad in ["custom:", "custom:x,,y", "custom:a,b,c,d,e,f,g,h,i"] {
            let e = bad.parse::<Domain>().unwrap_err().to_string();
            assert!(
                e.contains("`domain`") && e.contains("custom:"),
                "{bad}: {e}"
            );
        }
        assert!(Domain::custom::<&str>(&[]).is_err());
        assert!(prompts(&Domain::Custom(vec!["ok".into(), " ".into()]), "x").is_err());
        assert!(prompts(&Domain::Custom(vec!["a,b".into()]), "x").is_err());
        let e = "xray".parse::<Domain>().unwrap_err().to_string();
        for name in [
            "object",
            "texture",
            "brain-mri",
            "liver-ct",
            "retinal-oct",
            "chest-xray",
        ] {
            assert!(e.contains(name), "{e}");
        }
        assert!(e.contains("histopathology") && e.contains("custom:"), "{e}");
    }

    #[test]
    fn placeholders_inside_substituted_text_are_kept() {
        let d = Domain::custom(&["ART D photo"]).unwrap();
        let [n, _] = prompts(&d, "{}").unwrap();
        assert_eq!(n[0], "a cropped ART D photo of the normal {}");
    }
}

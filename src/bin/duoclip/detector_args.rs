//! The detector options shared by `score` and `eval`, and what turns them into a detector:
//! its configuration, the prompt domain and object, and the cached text anchors.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Args;
use duoclip::clip::Clip;
use duoclip::detect::config::{AdapterKind, DetectorConfig, Pairing, Preset, TtaMode};
use duoclip::image::{ImageLimits, RgbImage, decode};
use duoclip::prompts::{AnchorCache, Domain, TextAnchors, object_name, text_anchors};
use duoclip::{Error, Result};

#[derive(Args)]
pub struct DetectorArgs {
    /// anovl (AnoVL's official computation, text map only) or product (adds visual references).
    #[arg(long, default_value = "product", value_parser = parse_preset)]
    pub preset: Preset,
    /// Prompt domain: object, texture, brain-mri, liver-ct, retinal-oct, chest-xray,
    /// histopathology, or custom (with --domain-phrases). Default: object (`eval`: by class —
    /// texture for MVTec's textures, the modality of each BMAD set).
    #[arg(long)]
    pub domain: Option<String>,
    /// Your own domain phrases for `--domain custom`, comma-separated (e.g. "x-ray,radiograph").
    #[arg(long, value_delimiter = ',')]
    pub domain_phrases: Vec<String>,
    /// What the images show, as in the prompts ("metal_nut", "brain"). Medical domains have a
    /// default; `eval` uses the class folder name.
    #[arg(long)]
    pub object: Option<String>,
    /// pairs: consecutive images reference each other; set: every other image of the batch is
    /// a reference. Default: pairs for an even count, set for an odd count ≥ 3 (`eval`: per
    /// class in a seeded random order, an odd count ending in one triple).
    #[arg(long, value_parser = parse_pairing)]
    pub pairing: Option<Pairing>,
    /// Known-good images: every image is compared with these instead of with the batch.
    #[arg(long = "reference")]
    pub references: Vec<PathBuf>,
    /// Views for the image score: 1 (fast) or 22 (AnoVL's).
    #[arg(long, default_value_t = 1)]
    pub views: usize,
    /// Test-time adaptation: off, anovl or synth.
    #[arg(long, default_value = "off", value_parser = parse_tta)]
    pub tta: TtaMode,
    /// AnoVL TTA adapter: tanh (objects, MVTec) or linear (VisA).
    #[arg(long, default_value = "tanh", value_parser = parse_adapter)]
    pub adapter: AdapterKind,
    /// Keep the TTA optimizer state across the images of the run (AnoVL's quirk; `eval`:
    /// across the images of each class).
    #[arg(long)]
    pub tta_keep_optimizer: bool,
    /// Weight of the visual map in the fused map (0..=1; default 0.5 for product).
    #[arg(long)]
    pub lambda: Option<f32>,
    /// 0-based blocks whose ordinary-stream tokens join the V-V tokens for matching
    /// (default: ¼, ½, ¾ of the depth).
    #[arg(long, value_delimiter = ',')]
    pub ref_layers: Option<Vec<usize>>,
    /// Neighbourhood averaging of tokens before matching: 1 or 3.
    #[arg(long, default_value_t = 1)]
    pub neighbourhood: usize,
    /// Seed of every random draw (TTA init, noise, synthesized anomalies; `eval`: also the
    /// order in which a class's images are paired).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

fn parse_preset(s: &str) -> Result<Preset> {
    match s {
        "anovl" => Ok(Preset::Anovl),
        "product" => Ok(Preset::Product),
        _ => Err(bad("--preset", s, "anovl, product")),
    }
}

fn parse_pairing(s: &str) -> Result<Pairing> {
    match s {
        "pairs" => Ok(Pairing::Pairs),
        "set" => Ok(Pairing::Set),
        _ => Err(bad("--pairing", s, "pairs, set")),
    }
}

fn parse_tta(s: &str) -> Result<TtaMode> {
    match s {
        "off" => Ok(TtaMode::Off),
        "anovl" => Ok(TtaMode::Anovl),
        "synth" => Ok(TtaMode::Synth),
        _ => Err(bad("--tta", s, "off, anovl, synth")),
    }
}

fn parse_adapter(s: &str) -> Result<AdapterKind> {
    match s {
        "tanh" => Ok(AdapterKind::Tanh),
        "linear" => Ok(AdapterKind::Linear),
        _ => Err(bad("--adapter", s, "tanh, linear")),
    }
}

pub fn bad(option: &str, value: &str, accepted: &str) -> Error {
    Error::Option {
        option: option.into(),
        message: format!("`{value}` is not accepted; use one of {accepted}"),
    }
}

impl DetectorArgs {
    /// The prompt domain: `--domain` (with `--domain-phrases` for custom), else `default`.
    pub fn domain(&self, default: Option<Domain>) -> Result<Domain> {
        match (self.domain.as_deref(), self.domain_phrases.is_empty()) {
            (Some("custom"), false) => Domain::custom(&self.domain_phrases),
            (Some("custom"), true) => Err(Error::Option {
                option: "--domain custom".into(),
                message:
                    "needs --domain-phrases, e.g. --domain-phrases \"x-ray,radiograph,medical image\""
                        .into(),
            }),
            (Some(name), true) => name.parse(),
            (None, true) => Ok(default.unwrap_or(Domain::Object)),
            (_, false) => Err(Error::Option {
                option: "--domain-phrases".into(),
                message: "is only used with --domain custom".into(),
            }),
        }
    }

    /// The object of the prompts: `--object`, else the domain's, else `class_folder`'s name.
    pub fn object(&self, domain: &Domain, class_folder: Option<&str>) -> Result<String> {
        match (&self.object, domain.default_object(), class_folder) {
            (Some(o), _, _) => object_name(o),
            (None, Some(o), _) => Ok(o.to_string()),
            (None, None, Some(folder)) => object_name(folder),
            (None, None, None) => Err(Error::Option {
                option: "--object".into(),
                message: format!(
                    "domain `{}` has no default object: say what the images show, e.g. --object metal_nut",
                    domain.name()
                ),
            }),
        }
    }

    /// The detector settings for a model of `depth` blocks.
    pub fn config(&self, depth: usize) -> DetectorConfig {
        let mut config = match self.preset {
            Preset::Anovl => DetectorConfig::anovl(),
            Preset::Product => DetectorConfig::product(depth),
        };
        config.views = self.views;
        config.pairing = self.pairing.unwrap_or(Pairing::Pairs);
        config.lambda = self.lambda.unwrap_or(config.lambda);
        if let Some(layers) = &self.ref_layers {
            config.ref_layers = layers.clone();
        }
        config.neighbourhood = self.neighbourhood;
        config.tta.mode = self.tta;
        config.tta.adapter = self.adapter;
        config.tta.keep_optimizer = self.tta_keep_optimizer;
        config.seed = self.seed;
        config
    }
}

/// Text anchors per (domain, object), cached next to the downloaded models (in memory only
/// without a cache folder).
pub struct Anchors {
    cache: AnchorCache,
    model_id: String,
    /// Cache warnings already shown.
    shown: usize,
}

impl Anchors {
    pub fn new(model_path: &Path) -> Result<Self> {
        let dir = duoclip::download::cache_root()
            .ok()
            .map(|root| root.join("anchors"));
        let mut cache = AnchorCache::new(dir);
        let model_id = cache.model_id(model_path)?;
        Ok(Anchors {
            cache,
            model_id,
            shown: 0,
        })
    }

    pub fn get(
        &mut self,
        clip: &Clip,
        device: &Device,
        domain: &Domain,
        object: &str,
    ) -> Result<TextAnchors> {
        let tokenizer = duoclip::clip::Tokenizer::new();
        let anchors = self
            .cache
            .get_or_compute(&self.model_id, domain, object, device, || {
                text_anchors(clip, &tokenizer, domain, object)
            })?;
        for warning in &self.cache.warnings()[self.shown..] {
            eprintln!("duoclip: warning: {warning}");
        }
        self.shown = self.cache.warnings().len();
        Ok(anchors)
    }
}

pub fn decode_file(path: &Path) -> Result<RgbImage> {
    let name = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| Error::io(&name, e))?;
    decode(&bytes, &name, &ImageLimits::default())
}

pub fn decode_all(paths: &[PathBuf]) -> Result<Vec<RgbImage>> {
    paths.iter().map(|p| decode_file(p)).collect()
}

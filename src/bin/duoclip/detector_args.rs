//! The detector options shared by `score` and `eval`, and what turns them into a detector:
//! its configuration, the prompt domain and object, and the cached text anchors.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Args;
use duoclip::Result;
use duoclip::clip::Clip;
use duoclip::detect::config::{AdapterKind, DetectorConfig, Pairing, Preset, TtaMode};
use duoclip::detect::presets::Choices;
use duoclip::image::ImageLimits;
use duoclip::prompts::{
    AnchorCache, Domain, TextAnchors, choose_domain, choose_object, object_name, text_anchors,
};
use duoclip::source::{ReadOptions, SliceAxis};
use duoclip::window::WindowChoice;

#[derive(Args)]
pub struct DetectorArgs {
    /// anovl (AnoVL's official computation, text map only) or product (adds visual references).
    #[arg(long, default_value = "product")]
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
    #[arg(long)]
    pub pairing: Option<Pairing>,
    /// Known-good images: every image is compared with these instead of with the batch.
    #[arg(long = "reference")]
    pub references: Vec<PathBuf>,
    /// Views for the image score: 1 (fast) or 22 (AnoVL's).
    #[arg(long, default_value_t = 1)]
    pub views: usize,
    /// Test-time adaptation: off, anovl or synth.
    #[arg(long, default_value = "off")]
    pub tta: TtaMode,
    /// AnoVL TTA adapter: tanh (objects, MVTec) or linear (VisA).
    #[arg(long, default_value = "tanh")]
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
    /// Largest image accepted, in pixels (width × height); larger files are refused from
    /// their header, before any pixel is decoded. Decoding needs up to 8 bytes per pixel.
    #[arg(long, default_value_t = ImageLimits::default().max_pixels)]
    pub max_pixels: u64,
    /// Longest image side accepted, in pixels.
    #[arg(long, default_value_t = ImageLimits::default().max_width)]
    pub max_side: u32,
    /// Intensity window for values wider than 8 bits (16-bit TIFF/PNG, DICOM, NIfTI): auto
    /// (a DICOM file's first window, else the 0.5th–99.5th percentile), percentile, file:N
    /// (a DICOM file's N-th window), a CT preset (brain, lung, abdomen, bone) or CENTRE,WIDTH.
    #[arg(long, default_value = "auto")]
    pub window: String,
    /// The axis NIfTI volumes are sliced along: axial, coronal or sagittal (by the file's
    /// affine), or a voxel axis i, j or k.
    #[arg(long, default_value = "axial")]
    pub slice_axis: String,
    /// Keep every N-th slice of a volume.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub slice_stride: u32,
}

impl DetectorArgs {
    /// The prompt domain: `--domain` (with `--domain-phrases` for custom), else `default`.
    pub fn domain(&self, default: Option<Domain>) -> Result<Domain> {
        match (&self.domain, default) {
            (None, Some(d)) if self.domain_phrases.is_empty() => Ok(d),
            (name, _) => choose_domain(name.as_deref().unwrap_or("object"), &self.domain_phrases),
        }
    }

    /// The domain `--domain` (with `--domain-phrases`) names, or `None` where not given.
    pub fn given_domain(&self) -> Result<Option<Domain>> {
        if self.domain.is_none() && self.domain_phrases.is_empty() {
            return Ok(None);
        }
        self.domain(None).map(Some)
    }

    /// The object of the prompts: `--object`, else the domain's, else `class_folder`'s name.
    pub fn object(&self, domain: &Domain, class_folder: Option<&str>) -> Result<String> {
        match (&self.object, class_folder) {
            (None, Some(folder)) if domain.default_object().is_none() => object_name(folder),
            (object, _) => choose_object(domain, object.as_deref()),
        }
    }

    /// The image sizes `--max-pixels` and `--max-side` accept.
    pub fn image_limits(&self) -> ImageLimits {
        ImageLimits {
            max_width: self.max_side,
            max_height: self.max_side,
            max_pixels: self.max_pixels,
            ..ImageLimits::default()
        }
    }

    /// How files are read: `--max-pixels`, `--max-side`, `--window` and the slicing.
    pub fn read_options(&self) -> Result<ReadOptions> {
        Ok(ReadOptions {
            limits: self.image_limits(),
            window: WindowChoice::parse(&self.window)?,
            axis: SliceAxis::parse(&self.slice_axis)?,
            stride: self.slice_stride as usize,
        })
    }

    /// The detector settings for a model of `depth` blocks.
    pub fn config(&self, depth: usize) -> DetectorConfig {
        let choices = Choices {
            preset: Some(self.preset),
            views: Some(self.views),
            pairing: self.pairing,
            lambda: self.lambda,
            ref_layers: self.ref_layers.clone(),
            neighbourhood: Some(self.neighbourhood),
            tta: Some(self.tta),
            adapter: Some(self.adapter),
            keep_optimizer: self.tta_keep_optimizer,
            seed: Some(self.seed),
        };
        DetectorConfig::choose(depth, &choices)
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
        let dir = duoclip::models::download::cache_root()
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

    /// The sha256 of the model's weights file.
    pub fn model_sha256(&self) -> &str {
        &self.model_id
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

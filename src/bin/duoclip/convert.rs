//! `duoclip convert`: a web bundle (manifest.json, model.safetensors, anchors.safetensors)
//! from any model `duoclip score` reads.

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use clap::Args;
use duoclip::clip::weights::export::{NamedTensor, openclip_tensors};
use duoclip::clip::weights::random::random_checkpoint;
use duoclip::clip::{ArchOverrides, Checkpoint, Clip, ClipConfig, Tokenizer};
use duoclip::models::bundle::{
    ANCHORS_FILE, AnchorSet, AnchorsFile, Architecture, Dtype, FORMAT, MANIFEST_FILE, Manifest,
    Source, TextTower, VERSION, WEIGHTS_FILE, WeightsFile, anchor_keys,
};
use duoclip::models::registry::{Registry, sha256_hex};
use duoclip::prompts::{Domain, TextAnchors, choose, model_id, text_anchors};
use duoclip::{Error, Result, backend};
use safetensors::tensor::{Dtype as StDtype, TensorView};

use crate::bench::random_anchors;
use crate::model_args::ModelArgs;
use crate::output::write_atomic;

#[derive(Args)]
pub struct ConvertArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Output folder (created): manifest.json, model.safetensors, anchors.safetensors.
    #[arg(long)]
    out: PathBuf,
    /// Store the weights as float16 (half the download; maps move by ~1e-3).
    #[arg(long)]
    fp16: bool,
    /// none: image tower only, the browser uses the precomputed anchors; full: the text tower
    /// too, so the browser can embed other domains and objects.
    #[arg(long, default_value = "none")]
    text: TextTower,
    /// Domains whose text anchors are precomputed, comma-separated: a medical domain
    /// (brain-mri, liver-ct, retinal-oct, chest-xray, histopathology) uses its default object;
    /// object and texture need one, as `object:bottle`, `texture:carpet`.
    #[arg(long, value_delimiter = ',', required = true)]
    domains: Vec<String>,
    /// Bundle name shown in the page (default: the output folder's name).
    #[arg(long)]
    name: Option<String>,
    /// Licence of the weights (default: the registry entry's, else "unknown").
    #[arg(long)]
    license: Option<String>,
    /// Mark the bundle as random test weights (the page says its maps are meaningless).
    #[arg(long)]
    test_model: bool,
    /// Instead of --model: seeded random weights and random anchors of this architecture
    /// (vit-b-16-plus-240), for benchmarks: the cost is real, the maps are meaningless.
    #[arg(long, value_name = "ARCH", conflicts_with = "model")]
    random: Option<String>,
}

pub fn convert(args: ConvertArgs) -> Result<()> {
    let sets = anchor_sets(&args.domains)?;
    let source = load_source(&args)?;
    let clip = &source.clip;
    let architecture = architecture(clip, args.text)?;
    let dtype = if args.fp16 { Dtype::F16 } else { Dtype::F32 };
    let mut tensors = openclip_tensors(clip, true)?;
    if dtype == Dtype::F16 {
        tensors.iter_mut().for_each(round_to_f16);
    }
    let anchors = match source.sha256 {
        None => random_anchor_sets(sets.len(), clip.config.vision.embed_dim, &source.device),
        Some(_) => computed_anchors(&tensors, &architecture, clip, &sets, &source.device)?,
    };
    let mut anchor_tensors = Vec::new();
    for (i, a) in anchors.into_iter().enumerate() {
        let [states, prompts] = anchor_keys(i);
        anchor_tensors.push(NamedTensor::read(&states, a.states)?);
        anchor_tensors.push(NamedTensor::read(&prompts, a.prompts)?);
    }
    if args.text == TextTower::None {
        tensors.retain(|t| t.name.starts_with("visual."));
    }
    let weights = safetensors_bytes(&tensors, dtype)?;
    let anchors = safetensors_bytes(&anchor_tensors, Dtype::F32)?;
    let manifest = Manifest {
        format: FORMAT.into(),
        version: VERSION,
        name: args.name.clone().unwrap_or_else(|| base_name(&args.out)),
        test_model: args.test_model || source.sha256.is_none(),
        source: Source {
            model: source.name,
            sha256: source.sha256.unwrap_or_else(|| sha256_hex(&weights)),
        },
        architecture,
        weights: WeightsFile {
            file: WEIGHTS_FILE.into(),
            sha256: sha256_hex(&weights),
            bytes: weights.len() as u64,
            dtype,
        },
        text: args.text,
        anchors: AnchorsFile {
            file: ANCHORS_FILE.into(),
            sha256: sha256_hex(&anchors),
            bytes: anchors.len() as u64,
            sets: sets
                .iter()
                .map(|(d, o)| AnchorSet {
                    domain: d.name(),
                    object: o.clone(),
                })
                .collect(),
        },
        license: args
            .license
            .clone()
            .or_else(|| args.model.model.as_deref().and_then(registry_license))
            .unwrap_or_else(|| "unknown".into()),
    };
    std::fs::create_dir_all(&args.out).map_err(|e| Error::io(args.out.display(), e))?;
    write_atomic(&args.out.join(WEIGHTS_FILE), &weights)?;
    write_atomic(&args.out.join(ANCHORS_FILE), &anchors)?;
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| Error::Model(e.to_string()))?;
    // The manifest last: a folder with a manifest is a complete bundle.
    write_atomic(
        &args.out.join(MANIFEST_FILE),
        format!("{text}\n").as_bytes(),
    )?;
    eprintln!(
        "duoclip: wrote {} ({} + {} bytes)",
        args.out.display(),
        weights.len(),
        anchors.len()
    );
    Ok(())
}

/// The model to convert.
struct Loaded {
    clip: Clip,
    device: Device,
    /// As the manifest records it.
    name: String,
    /// Of its weights file; `None` for random weights, which have no file (the manifest then
    /// names the bundle's own weights).
    sha256: Option<String>,
}

fn load_source(args: &ConvertArgs) -> Result<Loaded> {
    let Some(arch) = &args.random else {
        let loaded = args.model.load()?;
        return Ok(Loaded {
            sha256: Some(model_id(&loaded.path)?),
            name: source_name(args.model.spec()?),
            clip: loaded.clip,
            device: loaded.device,
        });
    };
    let mut config = match arch.as_str() {
        "vit-b-16-plus-240" => ClipConfig::vit_b_16_plus_240(),
        other => {
            return Err(Error::Option {
                option: "random".into(),
                message: format!("no random architecture `{other}`; accepted: vit-b-16-plus-240"),
            });
        }
    };
    if args.text == TextTower::None {
        config.text = None; // random anchors stand in for it
    }
    let device = backend::by_name(&args.model.device)?;
    let overrides = ArchOverrides {
        vision_heads: Some(config.vision.tower.heads),
        text_heads: config.text.map(|t| t.tower.heads),
        act: Some(config.vision.tower.act),
        image_size: None,
    };
    let clip = Clip::from_checkpoint(&random_checkpoint(&config, 0), None, &overrides, &device)?;
    Ok(Loaded {
        clip,
        device,
        name: format!("random {arch} (seed 0)"),
        sha256: None,
    })
}

/// Anchors of every set, computed from the weights as the bundle stores them (rounded to its
/// dtype), so the browser's precomputed anchors equal what `duoclip score` computes from the
/// bundle.
fn computed_anchors(
    tensors: &[NamedTensor],
    architecture: &Architecture,
    clip: &Clip,
    sets: &[(Domain, String)],
    device: &Device,
) -> Result<Vec<TextAnchors>> {
    if clip.text.is_none() {
        return Err(Error::Option {
            option: "model".into(),
            message: "this checkpoint has no text tower, so no anchors can be precomputed; \
                      convert a full CLIP checkpoint"
                .into(),
        });
    }
    let mut overrides = architecture.overrides();
    overrides.text_heads = clip.config.text.map(|t| t.tower.heads);
    let stored = Clip::from_checkpoint(&checkpoint(tensors)?, None, &overrides, device)?;
    let tokenizer = Tokenizer::new();
    sets.iter()
        .map(|(domain, object)| text_anchors(&stored, &tokenizer, domain, object))
        .collect()
}

fn random_anchor_sets(n: usize, dim: usize, device: &Device) -> Vec<TextAnchors> {
    (0..n).map(|_| random_anchors(dim, device)).collect()
}

/// `--domains` items: `name` (a domain with a default object) or `name:object`.
fn anchor_sets(items: &[String]) -> Result<Vec<(Domain, String)>> {
    let bad = |message: String| Error::Option {
        option: "domains".into(),
        message,
    };
    let mut sets: Vec<(Domain, String)> = Vec::new();
    for item in items {
        let (name, object) = match item.split_once(':') {
            Some((n, o)) => (n.trim(), Some(o.trim())),
            None => (item.trim(), None),
        };
        if name.eq_ignore_ascii_case("custom") {
            return Err(bad(format!(
                "`{item}`: custom domains are not precomputed; convert with --text full and the \
                 browser embeds them"
            )));
        }
        let domain: Domain = name.parse()?;
        if object.is_none() && domain.default_object().is_none() {
            return Err(bad(format!(
                "`{item}`: domain `{name}` has no default object; write {name}:OBJECT, e.g. \
                 {name}:bottle"
            )));
        }
        let set = choose(name, &[], object)?;
        if sets.contains(&set) {
            return Err(bad(format!("`{item}` is listed twice")));
        }
        sets.push(set);
    }
    Ok(sets)
}

fn architecture(clip: &Clip, text: TextTower) -> Result<Architecture> {
    let vision = &clip.config.vision.tower;
    let text_heads = match (text, &clip.config.text) {
        (_, Some(t)) if t.tower.act != vision.act => {
            return Err(Error::Option {
                option: "model".into(),
                message: format!(
                    "the text tower uses {:?} and the image tower {:?}; a bundle records one \
                     activation",
                    t.tower.act, vision.act
                ),
            });
        }
        (TextTower::Full, None) => {
            return Err(Error::Option {
                option: "text".into(),
                message: "--text full: this checkpoint has no text tower; use --text none".into(),
            });
        }
        (TextTower::Full, Some(t)) => Some(t.tower.heads),
        (TextTower::None, _) => None,
    };
    Ok(Architecture {
        image_size: clip.image_size(),
        vision_heads: vision.heads,
        text_heads,
        act: vision.act,
    })
}

fn round_to_f16(t: &mut NamedTensor) {
    for v in &mut t.values {
        *v = burn::tensor::f16::from_f32(*v).to_f32();
    }
}

fn checkpoint(tensors: &[NamedTensor]) -> Result<Checkpoint> {
    let map = tensors
        .iter()
        .map(|t| {
            let data = burn::tensor::TensorData::new(t.values.clone(), t.shape.clone());
            let packed = burn::store::bridge::from_data(data, t.name.clone(), None);
            (t.name.clone(), packed)
        })
        .collect();
    Ok(Checkpoint::from_tensors("the converted weights", map))
}

/// A `.safetensors` file of `tensors`, stored as `dtype`.
fn safetensors_bytes(tensors: &[NamedTensor], dtype: Dtype) -> Result<Vec<u8>> {
    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|t| match dtype {
            Dtype::F32 => t.values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => t
                .values
                .iter()
                .flat_map(|v| burn::tensor::f16::from_f32(*v).to_le_bytes())
                .collect(),
        })
        .collect();
    let st_dtype = match dtype {
        Dtype::F32 => StDtype::F32,
        Dtype::F16 => StDtype::F16,
    };
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(st_dtype, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::Model(format!("tensor `{}`: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::tensor::serialize(views, None)
        .map_err(|e| Error::Model(format!("writing safetensors: {e}")))
}

fn base_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "bundle".into())
}

/// A registry name as given; a path by its file (or folder) name only: the manifest is
/// published with the bundle and the user's folders are nobody's business.
fn source_name(spec: &str) -> String {
    if Path::new(spec).exists() {
        base_name(Path::new(spec))
    } else {
        spec.into()
    }
}

fn registry_license(spec: &str) -> Option<String> {
    if Path::new(spec).exists() {
        return None;
    }
    Some(Registry::builtin().find(spec)?.license.clone())
}

//! The detector: one pass of the image tower per image, language-guided maps (§4), visual
//! references within a batch or from known-good images (§5), fusion, and TTA (§6).

use std::cell::RefCell;

use burn::tensor::{Device, Tensor};

use super::config::{DetectorConfig, Pairing, Preset, TtaMode};
use super::reference::{PatchFeatures, patch_features, visual_scores};
use super::{fusion, map, text_score, transfer, tta, views};
use crate::backend::read_back;
use crate::clip::{Clip, VisionOutput};
use crate::image::RgbImage;
use crate::prompts::TextAnchors;
use crate::{Error, Result};

/// Extra views the CPU encodes at once (`Detector::view_embeddings`): four images' rows already
/// keep the products' tiles busy.
const CPU_VIEWS_AT_ONCE: usize = 4;

/// Anomaly map and score of one image.
#[derive(Debug, Clone)]
pub struct Detection {
    /// Image score (faithful: mean over views of p_abn(CLS); product: ½·that + ½·max(M)).
    pub score: f32,
    /// Row-major `height × width` map at the model input resolution (S×S, or S×W' for wide
    /// images tiled as in VisA).
    pub map: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// An image cut into the model's S×S input tiles (one tile unless it is wide).
pub struct Prepared {
    /// Normalized CHW pixels of each tile.
    pub tiles: Vec<Vec<f32>>,
    /// Left edge of each tile in the resized image.
    pub offsets: Vec<u32>,
    /// Width of the resized image (S for square inputs).
    pub width: usize,
}

pub struct Detector {
    clip: Clip,
    /// On the host device.
    anchors: TextAnchors,
    config: DetectorConfig,
    /// Where the image tower runs.
    device: Device,
    /// Where everything after the image tower runs (see `transfer`); natively `device`.
    host: Device,
    /// AdamW state carried across images when `tta.keep_optimizer` (AnoVL's quirk).
    tta_state: RefCell<tta::OptimizerState>,
}

impl Detector {
    pub fn new(
        clip: Clip,
        anchors: TextAnchors,
        config: DetectorConfig,
        device: Device,
    ) -> Result<Self> {
        Self::on_devices(clip, anchors, config, device.clone(), device)
    }

    /// A detector whose image tower runs on `device` and whose scoring runs on `host` (the
    /// browser: WebGPU and the CPU device). `anchors` must be on `host`.
    pub fn on_devices(
        clip: Clip,
        anchors: TextAnchors,
        config: DetectorConfig,
        device: Device,
        host: Device,
    ) -> Result<Self> {
        Self::check(&config, &clip, &device, &host)?;
        Ok(Detector {
            clip,
            anchors,
            config,
            device,
            host,
            tta_state: RefCell::default(),
        })
    }

    /// The errors [`Detector::on_devices`] would give, without giving up the model.
    pub fn check(
        config: &DetectorConfig,
        clip: &Clip,
        device: &Device,
        host: &Device,
    ) -> Result<()> {
        validate(config, clip.vision.blocks.len())?;
        if config.tta.mode == TtaMode::Synth && device != host {
            return Err(Error::Option {
                option: "tta".into(),
                message: "tta synth runs on the CPU device in the browser; choose ‹device› cpu \
                          or ‹tta› anovl"
                    .into(),
            });
        }
        Ok(())
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// The model back, for a detector with other settings (the browser keeps one model).
    pub fn into_clip(self) -> Clip {
        self.clip
    }

    fn size(&self) -> usize {
        self.clip.image_size()
    }

    /// Resizes (short side to S) and tiles an image for the model.
    pub fn prepare(&self, image: &RgbImage) -> Prepared {
        let size = self.size() as u32;
        Prepared {
            tiles: map::clip_tiles(image, size),
            offsets: map::tile_offsets(image.width, image.height, size),
            width: map::resized_width(image.width, image.height, size) as usize,
        }
    }

    /// How a batch of `n` images is split into groups scored together: with known-good
    /// references or a single image, each alone; else pairs or one set (METHOD.md §5).
    pub fn groups(
        &self,
        n: usize,
        references: usize,
        pairing: Option<Pairing>,
    ) -> Result<Vec<Vec<usize>>> {
        let alone = || (0..n).map(|i| vec![i]).collect();
        if self.config.preset == Preset::Anovl || references > 0 {
            return Ok(alone());
        }
        match pairing {
            None if n == 1 => Ok(alone()),
            None if n % 2 == 1 => Ok(vec![(0..n).collect()]),
            None | Some(Pairing::Pairs) => pairs(n),
            Some(Pairing::Set) if n >= 2 => Ok(vec![(0..n).collect()]),
            Some(Pairing::Set) => Err(Error::Option {
                option: "pairing".into(),
                message: "‹pairing› set needs at least two images, or give known-good images with ‹reference›"
                    .into(),
            }),
        }
    }

    /// Scores images that reference each other (every other image of `batch`), or, when
    /// `references` is not empty, each image against those known-good images.
    pub fn score(&self, batch: &[&Prepared], references: &[Prepared]) -> Result<Vec<Detection>> {
        let encode = |image: &Prepared| -> Result<Encoded> {
            let tiles = self
                .encode(image)?
                .into_iter()
                .map(|(pixels, out)| {
                    self.finish(pixels, transfer::to_host(out, &self.device, &self.host)?)
                })
                .collect::<Result<_>>()?;
            Ok(Encoded { tiles })
        };
        let encoded: Vec<Encoded> = batch.iter().map(|p| encode(p)).collect::<Result<_>>()?;
        let refs: Vec<Encoded> = references.iter().map(encode).collect::<Result<_>>()?;
        self.detect_all(batch, &encoded, &refs)
    }

    /// [`Detector::score`] for the browser: the image tower's outputs are read back from the
    /// compute device asynchronously (WebGPU allows nothing else). `encoded` is called after
    /// each image (of `batch`, then of `references`) has been through the image tower.
    pub async fn score_async(
        &self,
        batch: &[&Prepared],
        references: &[Prepared],
        encoded: &mut dyn FnMut(),
    ) -> Result<Vec<Detection>> {
        let mut all = Vec::with_capacity(batch.len() + references.len());
        for image in batch.iter().copied().chain(references) {
            let mut tiles = Vec::with_capacity(image.tiles.len());
            for (pixels, out) in self.encode(image)? {
                let out = transfer::to_host_async(out, &self.device, &self.host).await?;
                tiles.push(self.finish(pixels, out)?);
            }
            all.push(Encoded { tiles });
            encoded();
        }
        let refs = all.split_off(batch.len());
        self.detect_all(batch, &all, &refs)
    }

    fn detect_all(
        &self,
        batch: &[&Prepared],
        encoded: &[Encoded],
        refs: &[Encoded],
    ) -> Result<Vec<Detection>> {
        (0..batch.len())
            .map(|i| {
                let others: Vec<&Encoded> = if refs.is_empty() {
                    let partners = encoded.iter().enumerate().filter(|(j, _)| *j != i);
                    partners.map(|(_, e)| e).collect()
                } else {
                    refs.iter().collect()
                };
                self.detect(batch[i], &encoded[i], &others)
            })
            .collect()
    }

    /// The image tower once per tile (with taps for matching), plus the extra views, on the
    /// compute device: each tile's pixels and its output, whose image embedding is `[V, D]`
    /// (every view).
    fn encode(&self, image: &Prepared) -> Result<Vec<(Vec<f32>, VisionOutput)>> {
        let taps = match self.config.preset {
            Preset::Anovl => Vec::new(),
            Preset::Product => self.config.ref_layers.clone(),
        };
        let mut tiles = Vec::with_capacity(image.tiles.len());
        for pixels in &image.tiles {
            let mut out =
                self.clip
                    .encode_images(std::slice::from_ref(pixels), &taps, &self.device)?;
            out.image_embedding = self.view_embeddings(pixels, out.image_embedding)?;
            tiles.push((pixels.clone(), out));
        }
        Ok(tiles)
    }

    /// A tile's tower output, now on the host, as the detector uses it.
    fn finish(&self, pixels: Vec<f32>, out: VisionOutput) -> Result<EncodedTile> {
        let features = patch_features(&out, 0, self.config.neighbourhood)?;
        let [_, n, d] = out.vv_patch_tokens.dims();
        Ok(EncodedTile {
            pixels,
            tokens: out.vv_patch_tokens.reshape([n, d]),
            cls: out.image_embedding,
            grid: out.grid,
            features,
        })
    }

    /// CLS embeddings of every view `[V, D]`; the original view is already computed. The extra
    /// views need only their CLS (the ordinary stream), and on the CPU they run a few at a
    /// time: their activations, not the batch, set the memory, and the browser's wasm memory
    /// never shrinks (BENCHMARKS.md, "sixth session"). The GPU takes them in one batch, where
    /// each call costs launches.
    fn view_embeddings(&self, pixels: &[f32], original: Tensor<2>) -> Result<Tensor<2>> {
        if self.config.views == 1 {
            return Ok(original);
        }
        let extra: Vec<Vec<f32>> =
            views::views(pixels, self.size(), self.config.views)?.split_off(1);
        let chunk = if self.device == Device::flex() {
            CPU_VIEWS_AT_ONCE
        } else {
            extra.len()
        };
        let mut embeddings = vec![original];
        for views in extra.chunks(chunk) {
            embeddings.push(self.clip.embed_images(views, &self.device)?);
        }
        Ok(Tensor::cat(embeddings, 0))
    }

    fn detect(&self, image: &Prepared, own: &Encoded, refs: &[&Encoded]) -> Result<Detection> {
        let size = self.size();
        let mut text_maps = Vec::new();
        let mut visual_maps = Vec::new();
        let mut view_scores = Vec::new();
        for (t, tile) in own.tiles.iter().enumerate() {
            let partner = refs.first().and_then(|r| r.tiles.get(t));
            let p_abn = self.patch_abnormality(tile, t, partner)?;
            text_maps.push(map::smooth_and_upsample(&p_abn, tile.grid, size));
            let p_views = text_score::image_abnormality(tile.cls.clone(), &self.anchors.states);
            view_scores.push(fusion::mean(&read_back(p_views, "image scores")?));
            if self.config.preset == Preset::Product && !refs.is_empty() {
                let tile_refs: Vec<&PatchFeatures> = refs
                    .iter()
                    .flat_map(|r| r.tiles.iter().map(|t| &t.features))
                    .collect();
                let s_vis = read_back(visual_scores(&tile.features, &tile_refs)?, "visual scores")?;
                visual_maps.push(map::smooth_and_upsample(&s_vis, tile.grid, size));
            }
        }
        let merge = |maps: &[Vec<f32>]| map::merge_tiles(maps, &image.offsets, size, image.width);
        let text = merge(&text_maps);
        let p_image = fusion::mean(&view_scores);
        let (map, score) = match self.config.preset {
            Preset::Anovl => (text, p_image),
            Preset::Product => {
                let visual = (!visual_maps.is_empty()).then(|| merge(&visual_maps));
                let fused = fusion::fuse(text, visual.as_deref(), self.config.lambda);
                let score = fusion::image_score(p_image, &fused);
                (fused, score)
            }
        };
        Ok(Detection {
            score,
            map,
            height: size,
            width: image.width,
        })
    }

    /// p_abn per patch of one tile; TTA changes only this (never the image score).
    fn patch_abnormality(
        &self,
        tile: &EncodedTile,
        index: usize,
        partner: Option<&EncodedTile>,
    ) -> Result<Vec<f32>> {
        let seed = self.config.seed.wrapping_add(index as u64);
        let mut state = self.tta_state.borrow_mut();
        let p_abn = match self.config.tta.mode {
            TtaMode::Off => {
                text_score::patch_abnormality(tile.tokens.clone(), &self.anchors.states)
            }
            TtaMode::Anovl => {
                tta::adapt_seeded(
                    tile.tokens.clone(),
                    &self.anchors,
                    &self.config.tta,
                    seed,
                    &mut state,
                )?
                .p_abn
            }
            TtaMode::Synth => {
                let size = self.size();
                let input = tta::SynthInput {
                    tokens: tile.tokens.clone(),
                    pixels: &tile.pixels,
                    size: [size, size],
                    grid: tile.grid,
                    partner: partner.map(|p| p.pixels.as_slice()),
                };
                let encode = |pixels: &[f32]| -> Result<Tensor<2>> {
                    let out = self
                        .clip
                        .encode_images(&[pixels.to_vec()], &[], &self.device)?;
                    let [_, n, d] = out.vv_patch_tokens.dims();
                    Ok(out.vv_patch_tokens.reshape([n, d]))
                };
                tta::adapt_synth(
                    input,
                    &self.anchors,
                    &self.config.tta,
                    seed,
                    &mut state,
                    encode,
                )?
                .adapted
                .p_abn
            }
        };
        read_back(p_abn, "patch scores")
    }
}

struct EncodedTile {
    /// Normalized CHW pixels (the synthesized-anomaly TTA blends them).
    pixels: Vec<f32>,
    /// V-V patch tokens `[N, D]`, unnormalized.
    tokens: Tensor<2>,
    /// Image embeddings of every view `[V, D]`.
    cls: Tensor<2>,
    grid: [usize; 2],
    features: PatchFeatures,
}

struct Encoded {
    tiles: Vec<EncodedTile>,
}

fn pairs(n: usize) -> Result<Vec<Vec<usize>>> {
    if n < 2 || n % 2 == 1 {
        return Err(Error::Option {
            option: "pairing".into(),
            message: format!(
                "‹pairing› pairs needs an even number of images (got {n}); use ‹pairing› set, add \
                 an image, or give known-good images with ‹reference›"
            ),
        });
    }
    Ok((0..n).step_by(2).map(|i| vec![i, i + 1]).collect())
}

fn validate(config: &DetectorConfig, depth: usize) -> Result<()> {
    let option = |option: &str, message: String| {
        Err(Error::Option {
            option: option.into(),
            message,
        })
    };
    if !(0.0..=1.0).contains(&config.lambda) {
        return option("lambda", format!("{} is outside 0..=1", config.lambda));
    }
    if let Some(l) = config.ref_layers.iter().find(|&&l| l >= depth) {
        return option(
            "ref_layers",
            format!(
                "block {l} does not exist: this model has blocks 0..={}",
                depth - 1
            ),
        );
    }
    if ![1, 22].contains(&config.views) {
        return option(
            "views",
            format!(
                "{} is not accepted; use 1 (fast) or 22 (AnoVL's views)",
                config.views
            ),
        );
    }
    if ![1, 3].contains(&config.neighbourhood) {
        return option(
            "neighbourhood",
            format!("{} is not accepted; use 1 or 3", config.neighbourhood),
        );
    }
    Ok(())
}

/// The image as the map sees it: resized to the map's size, for overlays.
pub fn display_image(image: &RgbImage, width: usize, height: usize) -> RgbImage {
    let chw: Vec<f32> = (0..3)
        .flat_map(|c| image.data.iter().skip(c).step_by(3).map(|&v| v as f32))
        .collect();
    let resized = crate::image::resize_bilinear_chw(
        &chw,
        3,
        image.height as usize,
        image.width as usize,
        height,
        width,
    );
    let plane = width * height;
    let data = (0..plane)
        .flat_map(|i| (0..3).map(move |c| c * plane + i))
        .map(|k| resized[k].round().clamp(0.0, 255.0) as u8)
        .collect();
    RgbImage {
        width: width as u32,
        height: height as u32,
        data,
    }
}

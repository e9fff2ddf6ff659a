//! Random-weight checkpoints of any architecture, in the OpenCLIP layout: same cost as real
//! weights, for benchmarks on machines that cannot download a model.

use std::collections::BTreeMap;

use burn::tensor::TensorData;

use super::checkpoint::Checkpoint;
use crate::clip::config::{ClipConfig, TowerConfig};

/// A checkpoint with every tensor of `config`, filled with small seeded values.
pub fn random_checkpoint(config: &ClipConfig, seed: u64) -> Checkpoint {
    let mut shapes: Vec<(String, Vec<usize>)> = Vec::new();
    let v = &config.vision;
    let (w, p, g) = (v.tower.width, v.patch, v.grid());
    shapes.push(("visual.conv1.weight".into(), vec![w, 3, p, p]));
    shapes.push(("visual.class_embedding".into(), vec![w]));
    shapes.push(("visual.positional_embedding".into(), vec![1 + g * g, w]));
    shapes.push(("visual.proj".into(), vec![w, v.embed_dim]));
    for ln in ["visual.ln_pre", "visual.ln_post"] {
        shapes.extend(layer_norm(ln, w));
    }
    shapes.extend(blocks("visual.transformer.resblocks", &v.tower));
    if let Some(t) = &config.text {
        let w = t.tower.width;
        shapes.push(("token_embedding.weight".into(), vec![t.vocab_size, w]));
        shapes.push(("positional_embedding".into(), vec![t.context_length, w]));
        shapes.push(("text_projection".into(), vec![w, t.embed_dim]));
        shapes.extend(layer_norm("ln_final", w));
        shapes.extend(blocks("transformer.resblocks", &t.tower));
    }
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let tensors: BTreeMap<String, _> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let values: Vec<f32> = (0..n).map(|_| small_random(&mut state)).collect();
            let t =
                burn::store::bridge::from_data(TensorData::new(values, shape), name.clone(), None);
            (name, t)
        })
        .collect();
    Checkpoint::from_tensors("random weights", tensors)
}

fn layer_norm(prefix: &str, width: usize) -> Vec<(String, Vec<usize>)> {
    vec![
        (format!("{prefix}.weight"), vec![width]),
        (format!("{prefix}.bias"), vec![width]),
    ]
}

fn blocks(prefix: &str, t: &TowerConfig) -> Vec<(String, Vec<usize>)> {
    let (w, m) = (t.width, t.mlp_width);
    (0..t.layers)
        .flat_map(|i| {
            let b = format!("{prefix}.{i}");
            let mut s = layer_norm(&format!("{b}.ln_1"), w);
            s.extend(layer_norm(&format!("{b}.ln_2"), w));
            s.push((format!("{b}.attn.in_proj_weight"), vec![3 * w, w]));
            s.push((format!("{b}.attn.in_proj_bias"), vec![3 * w]));
            s.push((format!("{b}.attn.out_proj.weight"), vec![w, w]));
            s.push((format!("{b}.attn.out_proj.bias"), vec![w]));
            s.push((format!("{b}.mlp.c_fc.weight"), vec![m, w]));
            s.push((format!("{b}.mlp.c_fc.bias"), vec![m]));
            s.push((format!("{b}.mlp.c_proj.weight"), vec![w, m]));
            s.push((format!("{b}.mlp.c_proj.bias"), vec![w]));
            s
        })
        .collect()
}

/// xorshift64* mapped to [−0.02, 0.02): scale of trained CLIP weights, so activations stay finite.
fn small_random(state: &mut u64) -> f32 {
    *state ^= *state >> 12;
    *state ^= *state << 25;
    *state ^= *state >> 27;
    let bits = state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
    (bits as f32 / (1u64 << 24) as f32 - 0.5) * 0.04
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clip::{ArchOverrides, Clip};

    #[test]
    fn random_checkpoint_loads_with_the_architecture_it_was_made_for() {
        let mut config = ClipConfig::vit_b_16_plus_240();
        config.vision.tower.layers = 1;
        config.vision.tower.width = 64;
        config.vision.tower.heads = 1;
        config.vision.tower.mlp_width = 128;
        config.text = None;
        let ckpt = random_checkpoint(&config, 1);
        let clip = Clip::from_checkpoint(
            &ckpt,
            None,
            &ArchOverrides::default(),
            &burn::tensor::Device::flex(),
        )
        .unwrap();
        assert_eq!(clip.config.vision, config.vision);
    }
}

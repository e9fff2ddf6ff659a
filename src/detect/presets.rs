//! The two presets of METHOD.md: `anovl` (faithful) and `product` (the default).

use super::config::{AdapterKind, DetectorConfig, Pairing, Preset, TtaConfig, TtaMode};

impl TtaConfig {
    /// AnoVL's TTA settings (§6), switched off.
    pub fn off() -> Self {
        TtaConfig {
            mode: TtaMode::Off,
            adapter: AdapterKind::Tanh,
            steps: 5,
            lr: 1e-3,
            weight_decay: 0.01,
            noise_std: 0.055,
            keep_optimizer: false,
        }
    }
}

impl DetectorConfig {
    /// Reproduces AnoVL's official computation: text map only, one view by default.
    pub fn anovl() -> Self {
        DetectorConfig {
            preset: Preset::Anovl,
            views: 1,
            pairing: Pairing::Pairs,
            lambda: 0.0,
            ref_layers: Vec::new(),
            neighbourhood: 1,
            tta: TtaConfig::off(),
            seed: 0,
        }
    }

    /// Faithful maps plus visual references (§5) with taps at ¼, ½, ¾ of `depth` blocks.
    pub fn product(depth: usize) -> Self {
        DetectorConfig {
            preset: Preset::Product,
            lambda: 0.5,
            ref_layers: default_ref_layers(depth),
            ..DetectorConfig::anovl()
        }
    }
}

/// What a user may set (CLI flags, browser options), each optional: the rest comes from the
/// preset.
#[derive(Debug, Clone, Default)]
pub struct Choices {
    pub preset: Option<Preset>,
    pub views: Option<usize>,
    pub pairing: Option<Pairing>,
    pub lambda: Option<f32>,
    pub ref_layers: Option<Vec<usize>>,
    pub neighbourhood: Option<usize>,
    pub tta: Option<TtaMode>,
    pub adapter: Option<AdapterKind>,
    pub keep_optimizer: bool,
    pub seed: Option<u64>,
}

impl DetectorConfig {
    /// The chosen preset (default `product`) for a model of `depth` blocks, with the user's
    /// choices on top.
    pub fn choose(depth: usize, choices: &Choices) -> DetectorConfig {
        let mut config = match choices.preset.unwrap_or(Preset::Product) {
            Preset::Anovl => DetectorConfig::anovl(),
            Preset::Product => DetectorConfig::product(depth),
        };
        config.views = choices.views.unwrap_or(config.views);
        config.pairing = choices.pairing.unwrap_or(config.pairing);
        config.lambda = choices.lambda.unwrap_or(config.lambda);
        if let Some(layers) = &choices.ref_layers {
            config.ref_layers = layers.clone();
        }
        config.neighbourhood = choices.neighbourhood.unwrap_or(config.neighbourhood);
        config.tta.mode = choices.tta.unwrap_or(config.tta.mode);
        config.tta.adapter = choices.adapter.unwrap_or(config.tta.adapter);
        config.tta.keep_optimizer = choices.keep_optimizer;
        config.seed = choices.seed.unwrap_or(config.seed);
        config
    }
}

/// 0-based blocks after ¼, ½ and ¾ of the depth (12 blocks → 2, 5, 8).
pub fn default_ref_layers(depth: usize) -> Vec<usize> {
    let mut layers: Vec<usize> = [1, 2, 3]
        .iter()
        .map(|q| ((depth * q) as f64 / 4.0).round().max(1.0) as usize - 1)
        .collect();
    layers.dedup();
    layers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_layers_follow_depth() {
        assert_eq!(default_ref_layers(12), vec![2, 5, 8]);
        assert_eq!(default_ref_layers(24), vec![5, 11, 17]);
        assert_eq!(default_ref_layers(2), vec![0, 1]);
        assert_eq!(default_ref_layers(1), vec![0]);
    }
}

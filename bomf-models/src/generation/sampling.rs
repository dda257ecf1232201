//! Choosing the next token from a row of logits: the first maximum (greedy), or a seeded draw
//! after temperature, top-k and top-p.

use crate::error::{ModelError, Result};

/// How sampled generation draws tokens (HF's `GenerationConfig` names).
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingConfig {
    pub temperature: f64,
    /// Keep only the `k` most likely tokens (HF's `top_k`; `None` or 0 = all).
    pub top_k: Option<usize>,
    /// Keep the smallest set of most likely tokens whose probability reaches `p` (HF's `top_p`).
    pub top_p: Option<f64>,
    pub seed: u64,
}

impl SamplingConfig {
    /// The temperature must be a positive number.
    pub fn validate(&self) -> Result<()> {
        if self.temperature <= 0.0 || !self.temperature.is_finite() {
            return Err(ModelError::InvalidInput(format!(
                "sampling temperature must be positive, got {}",
                self.temperature
            )));
        }
        Ok(())
    }

    /// Draws tokens from rows of logits, one after the other from one seeded stream.
    pub(crate) fn sampler(&self) -> impl FnMut(&[f32]) -> usize + '_ {
        let mut rng = SplitMix64(self.seed);
        move |logits| sample(logits, self, rng.next_f64())
    }
}

/// Index of the first maximum (as `torch.argmax`).
pub fn argmax(values: &[f32]) -> usize {
    values
        .iter()
        .enumerate()
        .fold(0, |best, (i, &v)| if v > values[best] { i } else { best })
}

/// Draws one token from `logits` with `uniform` in [0, 1): temperature, then top-k, then top-p,
/// then the softmax's cumulative distribution.
fn sample(logits: &[f32], config: &SamplingConfig, uniform: f64) -> usize {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if let Some(k) = config.top_k.filter(|&k| k > 0) {
        order.truncate(k);
    }
    let max = logits[order[0]] as f64;
    let mut probs: Vec<f64> = order
        .iter()
        .map(|&i| ((logits[i] as f64 - max) / config.temperature).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    probs.iter_mut().for_each(|p| *p /= total);
    if let Some(top_p) = config.top_p.filter(|&p| p < 1.0) {
        // Keep tokens until the cumulative probability reaches top_p (always at least one).
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|&p| {
                cumulative += p;
                cumulative >= top_p
            })
            .map_or(probs.len(), |i| i + 1);
        order.truncate(keep);
        probs.truncate(keep);
        let total: f64 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= total);
    }
    let mut cumulative = 0.0;
    for (&token, &p) in order.iter().zip(&probs) {
        cumulative += p;
        if uniform < cumulative {
            return token;
        }
    }
    order[order.len() - 1]
}

/// A tiny deterministic generator (SplitMix64) so sampling is reproducible without a dependency.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(top_k: Option<usize>, top_p: Option<f64>) -> SamplingConfig {
        SamplingConfig {
            temperature: 1.0,
            top_k,
            top_p,
            seed: 0,
        }
    }

    #[test]
    fn top_k_one_is_greedy_and_top_p_keeps_the_head() {
        let logits = [0.1f32, 3.0, 2.9, -1.0];
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(sample(&logits, &config(Some(1), None), u), 1);
            // p(1) ≈ 0.50, p(2) ≈ 0.45: top_p = 0.3 keeps token 1 only.
            assert_eq!(sample(&logits, &config(None, Some(0.3)), u), 1);
            assert!([1, 2].contains(&sample(&logits, &config(None, Some(0.9)), u)));
        }
        assert_eq!(argmax(&logits), 1);
    }

    #[test]
    fn draws_follow_the_softmax() {
        let logits = [0.0f32, (3.0f32).ln()];
        let mut rng = SplitMix64(42);
        let n = 20_000;
        let ones = (0..n)
            .filter(|_| sample(&logits, &config(None, None), rng.next_f64()) == 1)
            .count();
        let share = ones as f64 / n as f64;
        assert!((share - 0.75).abs() < 0.02, "{share}");
    }
}

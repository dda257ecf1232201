//! Quasi-Monte Carlo samples: scrambled Sobol points in the unit cube, and standard normal
//! base samples obtained from them by the inverse normal CDF (as BoTorch's
//! `SobolQMCNormalSampler`, which uses the inverse transform rather than Box–Muller).
//!
//! The base samples of an acquisition are drawn once and then kept fixed, which makes the
//! Monte Carlo acquisition a deterministic, smooth function of the candidates (the
//! sample-average approximation) that a quasi-Newton method can optimise.
//!
//! Column `j` of a sample matrix depends only on `(j, seed)`, never on the total number of
//! columns: a qNEHVI sampler can lay out the baseline block first and append the columns of
//! the new points, and the baseline draws stay the same whatever `q` is.
//!
//! The Sobol points come from `sobol_burley` (Owen scrambling by Burley's hash, 256
//! dimensions, 2^16 points). We take its full 32-bit integers instead of its `f32` output and
//! map them to the cell centres `(k + ½)/2^32`, so no point is exactly 0 or 1 and the normal
//! samples stay finite. Beyond 256 dimensions the sequence is padded by re-seeding every block
//! of 256 dimensions (Burley's recommendation).

use serde::{Deserialize, Serialize};
use sobol_burley::{NUM_DIMENSIONS, parts};

use crate::error::{BoError, Result};

/// Derive an independent 64-bit seed for sub-stream `stream` of `seed` (SplitMix64 finaliser),
/// so every random choice of a run follows from one user seed without sharing an RNG.
pub(crate) fn derive_seed(seed: u64, stream: u64) -> u64 {
    let mut z = seed
        .wrapping_add(stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Largest number of points a Sobol design may have (a limit of `sobol_burley`).
pub(crate) const MAX_SOBOL_POINTS: usize = 1 << 16;

/// Reduce a 64-bit user seed to the 32-bit seed of `sobol_burley`, keeping both halves.
fn seed32(seed: u64) -> u32 {
    let mixed = seed ^ (seed >> 32).wrapping_mul(0x9E37_79B9);
    mixed as u32
}

/// Coordinate `dimension` of the scrambled Sobol point `index`, in `(0, 1)`.
fn sobol_coordinate(index: u32, dimension: usize, seed: u32) -> f64 {
    let block = (dimension / NUM_DIMENSIONS as usize) as u32;
    let dim = (dimension % NUM_DIMENSIONS as usize) as u32;
    // Re-seed per block of 256 dimensions ("padding"); block 0 keeps the plain seed.
    let seed = seed ^ block.wrapping_mul(0x6A09_E667);
    // Same steps as `sobol_burley::sample`, stopping before the conversion to f32.
    let shuffled_rev_index =
        parts::owen_scramble_rev(index.reverse_bits(), parts::hash(seed ^ 0x79c6_8e4a));
    let sobol = parts::sobol_rev(shuffled_rev_index, dim);
    let scramble = {
        let s = seed.wrapping_mul(0x9c8f_2d3b);
        let ds = dim >> 2;
        ds ^ s ^ [0x912f_69ba, 0x174f_18ab, 0x691e_72ca, 0xb40c_c1b8][dim as usize & 0b11]
    };
    let bits = parts::owen_scramble_rev(sobol, parts::hash(scramble)).reverse_bits();
    (f64::from(bits) + 0.5) / 4_294_967_296.0
}

fn check_count(n: usize) -> Result<()> {
    if n == 0 || n > MAX_SOBOL_POINTS {
        return Err(BoError::InvalidInput(format!(
            "number of Sobol points must be in 1..={MAX_SOBOL_POINTS}, got {n}"
        )));
    }
    Ok(())
}

/// `n` scrambled Sobol points in `(0,1)^d`, row-major (`n × d`). Deterministic in `seed`.
/// Used for initial designs and raw acquisition samples.
pub fn sobol_design(n: usize, d: usize, seed: u64) -> Result<Vec<f64>> {
    check_count(n)?;
    let s = seed32(seed);
    let mut out = Vec::with_capacity(n * d);
    for i in 0..n {
        for j in 0..d {
            out.push(sobol_coordinate(i as u32, j, s));
        }
    }
    Ok(out)
}

/// Fixed standard-normal QMC base samples, `n_samples × dim`, row-major.
///
/// Row `k` is the `k`-th draw of the whole vector of `dim` independent normals (for an MC
/// acquisition: `dim = (n_baseline + q) · m`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NormalBaseSamples {
    pub n_samples: usize,
    pub dim: usize,
    pub seed: u64,
    /// Row-major `n_samples × dim`.
    pub values: Vec<f64>,
}

impl NormalBaseSamples {
    /// Draw `n_samples` scrambled-Sobol normal vectors of length `dim`.
    pub fn new(n_samples: usize, dim: usize, seed: u64) -> Result<Self> {
        let u = sobol_design(n_samples, dim, seed)?;
        let values = u.into_iter().map(ndtri).collect();
        Ok(Self {
            n_samples,
            dim,
            seed,
            values,
        })
    }

    /// Wrap a given matrix (e.g. the same base samples another implementation used).
    pub fn from_values(n_samples: usize, dim: usize, values: Vec<f64>) -> Result<Self> {
        BoError::check_dim(
            "base sample matrix (n_samples * dim)",
            n_samples * dim,
            values.len(),
        )?;
        if values.iter().any(|v| !v.is_finite()) {
            return Err(BoError::InvalidInput("base samples must be finite".into()));
        }
        Ok(Self {
            n_samples,
            dim,
            seed: 0,
            values,
        })
    }

    /// The `k`-th sample vector.
    pub fn row(&self, k: usize) -> &[f64] {
        &self.values[k * self.dim..(k + 1) * self.dim]
    }
}

/// Inverse of the standard normal CDF (Wichura 1988, algorithm AS 241 `PPND16`), relative
/// accuracy about 1e-16 over `(0, 1)`. `ndtri(0) = -inf`, `ndtri(1) = inf`, NaN outside.
pub(crate) fn ndtri(p: f64) -> f64 {
    if !(0.0..=1.0).contains(&p) {
        return f64::NAN;
    }
    if p == 0.0 {
        return f64::NEG_INFINITY;
    }
    if p == 1.0 {
        return f64::INFINITY;
    }
    let q = p - 0.5;
    if q.abs() <= 0.425 {
        // Central region: rational function of r = 0.180625 − q².
        let r = 0.180625 - q * q;
        return q * horner(r, &CENTRAL_NUM) / horner(r, &CENTRAL_DEN);
    }
    // Tails: rational functions of r = sqrt(−ln(min(p, 1−p))).
    let tail = if q < 0.0 { p } else { 1.0 - p };
    let r = (-tail.ln()).sqrt();
    let val = if r <= 5.0 {
        horner(r - 1.6, &NEAR_NUM) / horner(r - 1.6, &NEAR_DEN)
    } else {
        horner(r - 5.0, &FAR_NUM) / horner(r - 5.0, &FAR_DEN)
    };
    if q < 0.0 { -val } else { val }
}

/// `Σ c_i x^i` for coefficients in increasing degree.
fn horner(x: f64, coeffs: &[f64; 8]) -> f64 {
    coeffs.iter().rev().fold(0.0, |acc, &c| acc * x + c)
}

// AS 241 coefficients, increasing degree, with the published digits kept verbatim.
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
const CENTRAL_NUM: [f64; 8] = [
    3.387_132_872_796_366_608,
    133.141_667_891_784_377_45,
    1971.590_950_306_551_442_7,
    13731.693_765_509_461_125,
    45921.953_931_549_871_457,
    67265.770_927_008_700_853,
    33430.575_583_588_128_105,
    2509.080_928_730_122_672_7,
];
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
const CENTRAL_DEN: [f64; 8] = [
    1.0,
    42.313_330_701_600_911_252,
    687.187_007_492_057_908_3,
    5394.196_021_424_751_107_7,
    21213.794_301_586_595_867,
    39307.895_800_092_710_61,
    28729.085_735_721_942_674,
    5226.495_278_852_545_925,
];
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
const NEAR_NUM: [f64; 8] = [
    1.423_437_110_749_683_577_34,
    4.630_337_846_156_545_295_9,
    5.769_497_221_460_691_405_5,
    3.647_848_324_763_204_605_04,
    1.270_458_252_452_368_382_58,
    0.241_780_725_177_450_611_77,
    0.022_723_844_989_269_184_583_3,
    7.745_450_142_783_414_076_4e-4,
];
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
const NEAR_DEN: [f64; 8] = [
    1.0,
    2.053_191_626_637_758_821_87,
    1.676_384_830_183_803_849_4,
    0.689_767_334_985_100_004_55,
    0.148_103_976_427_480_074_59,
    0.015_198_666_563_616_457_196_6,
    5.475_938_084_995_344_946e-4,
    1.050_750_071_644_416_843_24e-9,
];
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
const FAR_NUM: [f64; 8] = [
    6.657_904_643_501_103_777_2,
    5.463_784_911_164_114_369_9,
    1.784_826_539_917_291_335_8,
    0.296_560_571_828_504_891_23,
    0.026_532_189_526_576_123_093,
    0.001_242_660_947_388_078_438_6,
    2.711_555_568_743_487_578_15e-5,
    2.010_334_399_292_288_132_65e-7,
];
#[allow(clippy::excessive_precision, clippy::inconsistent_digit_grouping)]
const FAR_DEN: [f64; 8] = [
    1.0,
    0.599_832_206_555_887_937_69,
    0.136_929_880_922_735_805_31,
    0.014_875_361_290_850_614_852_5,
    7.868_691_311_456_132_591e-4,
    1.846_318_317_510_054_681_8e-5,
    1.421_511_758_316_445_888_7e-7,
    2.044_263_103_389_939_785_64e-15,
];

/// `k` distinct indices of `0..n` (all of them when `k ≥ n`), ascending, chosen uniformly by a
/// partial Fisher–Yates shuffle seeded with `seed`: the same arguments give the same indices.
pub(crate) fn sample_indices(n: usize, k: usize, seed: u64) -> Vec<usize> {
    use rand::{RngExt, SeedableRng};
    let k = k.min(n);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut perm: Vec<usize> = (0..n).collect();
    for i in 0..k {
        let j = rng.random_range(i..n);
        perm.swap(i, j);
    }
    perm.truncate(k);
    perm.sort_unstable();
    perm
}

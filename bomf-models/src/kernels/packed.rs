//! Inference on the real tokens only ("unpadding"): a padded `[batch, seq, hidden]` batch packed
//! into `[tokens, hidden]`, the layers run on that, and the result scattered back.
//!
//! Why: every encoder op except attention works token by token, so the padding of a dynamically
//! padded batch is pure waste in the GEMMs, which are most of the time (a fifth of the anchor
//! batch, often half of a real one). Attention runs per sequence on its own rows. Padded
//! positions of the result are zero, not the values `transformers` computes there (which no
//! head reads when it pools the first token), so only heads that read the first token use it.

use std::any::Any;

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor};
use rayon::prelude::*;

use super::attention::{AttendOneSequence, AttentionShape};
use super::{back, enabled, flex_values, zeros};

/// Where the real tokens of a padded batch are.
#[derive(Debug, Clone)]
pub(crate) struct Packing {
    /// Packed row `i` is padded row `positions[i]` (of `[batch·seq]`).
    positions: Vec<usize>,
    /// Sequence `b` is packed rows `starts[b]..starts[b + 1]`.
    starts: Vec<usize>,
    batch: usize,
    seq: usize,
}

impl Packing {
    /// The packing of `attention_mask` (`[batch, seq]`, 1 at real tokens) when the backend is
    /// `Flex` without autodiff and packing saves work: some padding, and no sequence without a
    /// real token (transformers attends to all padding there). `None` otherwise.
    pub(crate) fn of<B: Backend>(attention_mask: &Tensor<B, 2, Int>) -> Option<Self> {
        if !enabled() || !(attention_mask as &dyn Any).is::<Tensor<Flex, 2, Int>>() {
            return None;
        }
        let [batch, seq] = attention_mask.dims();
        let mask = attention_mask.clone().into_data();
        let mut positions = Vec::with_capacity(batch * seq);
        let mut starts = Vec::with_capacity(batch + 1);
        for (i, real) in mask.iter::<i64>().enumerate() {
            if i % seq == 0 {
                starts.push(positions.len());
            }
            if real != 0 {
                positions.push(i);
            }
        }
        starts.push(positions.len());
        let empty_sequence = starts.windows(2).any(|w| w[0] == w[1]);
        (positions.len() < batch * seq && !empty_sequence && starts.len() == batch + 1).then_some(
            Self {
                positions,
                starts,
                batch,
                seq,
            },
        )
    }

    /// `[batch, seq, hidden]` → `[tokens, hidden]`.
    pub(crate) fn pack<B: Backend>(&self, x: Tensor<B, 3>) -> Tensor<B, 2> {
        let x: Tensor<Flex, 3> = back(x);
        let hidden = x.dims()[2];
        let values = x.into_primitive().tensor().to_contiguous();
        let xs = values.as_slice::<f32>().expect("contiguous f32");
        let mut out = zeros(self.positions.len() * hidden);
        out.par_chunks_mut(hidden)
            .zip(self.positions.par_iter())
            .for_each(|(row, &p)| row.copy_from_slice(&xs[p * hidden..(p + 1) * hidden]));
        flex_values(out, [self.positions.len(), hidden])
    }

    /// `[tokens, hidden]` → `[batch, seq, hidden]`, zero at padded positions (the tests compare
    /// packed results with padded ones through it).
    #[cfg(test)]
    pub(crate) fn unpack<B: Backend>(&self, x: Tensor<B, 2>) -> Tensor<B, 3> {
        let x: Tensor<Flex, 2> = back(x);
        let hidden = x.dims()[1];
        let values = x.into_primitive().tensor().to_contiguous();
        let xs = values.as_slice::<f32>().expect("contiguous f32");
        let mut out = zeros(self.batch * self.seq * hidden);
        for (i, &p) in self.positions.iter().enumerate() {
            out[p * hidden..(p + 1) * hidden].copy_from_slice(&xs[i * hidden..(i + 1) * hidden]);
        }
        flex_values(out, [self.batch, self.seq, hidden])
    }

    /// Whether every sequence starts at position 0 (right padding): then a sequence's first
    /// packed row is the position-0 token that classification heads read.
    pub(crate) fn starts_at_position_zero(&self) -> bool {
        self.starts[..self.batch]
            .iter()
            .enumerate()
            .all(|(b, &first)| self.positions[first] == b * self.seq)
    }

    /// The first packed row of each sequence: `[tokens, hidden]` → `[batch, hidden]`.
    pub(crate) fn first_rows<B: Backend>(&self, x: &Tensor<B, 2>) -> Tensor<B, 2> {
        let firsts: Vec<i64> = self.starts[..self.batch]
            .iter()
            .map(|&s| s as i64)
            .collect();
        let index = Tensor::<B, 1, Int>::from_data(
            burn::tensor::TensorData::new(firsts, [self.batch]),
            &x.device(),
        );
        x.clone().select(0, index)
    }

    /// Self-attention of each packed sequence over its own tokens, `k` and `v` `[tokens,
    /// hidden]` (heads side by side). With [`Queries::EveryToken`], `q` is `[tokens, hidden]`
    /// and so is the context returned; with [`Queries::FirstToken`], `q` is `[batch, hidden]`
    /// (from [`Self::first_rows`]) and so is the context: what a last layer needs when only the
    /// first token is read.
    pub(crate) fn attention<B: Backend>(
        &self,
        q: &Tensor<B, 2>,
        k: &Tensor<B, 2>,
        v: &Tensor<B, 2>,
        heads: usize,
        queries: Queries,
    ) -> Tensor<B, 2> {
        let flex = |t: &Tensor<B, 2>| {
            let t: Tensor<Flex, 2> = back(t.clone());
            assert_eq!(t.dtype(), DType::F32, "packing is only built for f32 Flex");
            t.into_primitive().tensor().to_contiguous()
        };
        let (q, k, v) = (flex(q), flex(k), flex(v));
        let [tokens, hidden] = k.layout().shape().dims::<2>();
        let (qs, ks, vs) = (
            q.as_slice::<f32>().expect("contiguous f32"),
            k.as_slice::<f32>().expect("contiguous f32"),
            v.as_slice::<f32>().expect("contiguous f32"),
        );
        let out_rows = match queries {
            Queries::EveryToken => tokens,
            Queries::FirstToken => self.batch,
        };
        assert_eq!(qs.len(), out_rows * hidden, "queries of the wrong shape");
        let mut out = zeros(out_rows * hidden);
        // Split `out` into one slice per sequence, then attend to each in parallel.
        let mut pieces = Vec::with_capacity(self.batch);
        let mut rest = out.as_mut_slice();
        for (b, w) in self.starts.windows(2).enumerate() {
            let (query_rows, n) = match queries {
                Queries::EveryToken => (w[0]..w[1], w[1] - w[0]),
                Queries::FirstToken => (b..b + 1, 1),
            };
            let (piece, tail) = rest.split_at_mut(n * hidden);
            pieces.push((w[0]..w[1], query_rows, piece));
            rest = tail;
        }
        pieces
            .into_par_iter()
            .for_each(|(key_rows, query_rows, out)| {
                let len = key_rows.len();
                let keys = key_rows.start * hidden..key_rows.end * hidden;
                let keep = vec![true; len];
                pulp::Arch::new().dispatch(AttendOneSequence {
                    shape: AttentionShape::new(len, hidden, heads),
                    queries: query_rows.len(),
                    q: &qs[query_rows.start * hidden..query_rows.end * hidden],
                    k: &ks[keys.clone()],
                    v: &vs[keys],
                    keep: &keep,
                    out,
                });
            });
        flex_values(out, [out_rows, hidden])
    }
}

/// Which tokens of each sequence attend.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Queries {
    /// Every token: the context of every token.
    EveryToken,
    /// The first token of each sequence only.
    FirstToken,
}

#[cfg(test)]
mod tests {
    use burn::tensor::{Bool, TensorData, Tolerance};

    use super::*;
    use crate::CpuAutodiffBackend;
    use crate::kernels::encoder_attention;
    use crate::kernels::test_values::sawtooth;

    #[test]
    fn packed_attention_equals_padded_attention_on_the_real_tokens() {
        let device = Default::default();
        let (batch, seq, heads, d) = (3, 6, 2, 4);
        let hidden = heads * d;
        let lengths = [6, 2, 4];
        let data = |salt| {
            let v = sawtooth(batch * seq * hidden, salt, [31, 7, 19], 5.0);
            Tensor::<Flex, 3>::from_data(TensorData::new(v, [batch, seq, hidden]), &device)
        };
        let (q, k, v) = (data(1), data(2), data(3));
        let real: Vec<i64> = (0..batch * seq)
            .map(|i| i64::from(i % seq < lengths[i / seq]))
            .collect();
        let mask = Tensor::<Flex, 2, Int>::from_data(TensorData::new(real, [batch, seq]), &device);
        let packing = Packing::of(&mask).expect("Flex with padding");
        let packed = packing.attention(
            &packing.pack(q.clone()),
            &packing.pack(k.clone()),
            &packing.pack(v.clone()),
            heads,
            Queries::EveryToken,
        );
        let key_padding: Tensor<Flex, 2, Bool> = mask.equal_elem(0);
        let padded = encoder_attention(&q, &k, &v, &key_padding, heads).expect("Flex");
        packing.unpack(packed).into_data().assert_approx_eq::<f32>(
            &packing.unpack(packing.pack(padded)).into_data(),
            Tolerance::absolute(1e-5),
        );
        // Unpack puts every real token back and zeros elsewhere.
        let round_trip = packing.unpack(packing.pack(q.clone())).into_data();
        let (round_trip, original) = (
            round_trip.to_vec::<f32>().unwrap(),
            q.into_data().to_vec::<f32>().unwrap(),
        );
        for (i, (a, b)) in round_trip.iter().zip(&original).enumerate() {
            let expected = if i / hidden % seq < lengths[i / hidden / seq] {
                *b
            } else {
                0.0
            };
            assert_eq!(*a, expected);
        }
    }

    #[test]
    fn packing_is_declined_without_padding_or_on_autodiff() {
        let device = Default::default();
        let full = Tensor::<Flex, 2, Int>::ones([2, 3], &device);
        assert!(Packing::of(&full).is_none());
        let padded = Tensor::<CpuAutodiffBackend, 2, Int>::from_data(
            TensorData::new(vec![1i64, 1, 0], [1, 3]),
            &device,
        );
        assert!(Packing::of(&padded).is_none());
        let empty_row = Tensor::<Flex, 2, Int>::from_data(
            TensorData::new(vec![1i64, 1, 0, 0], [2, 2]),
            &device,
        );
        assert!(Packing::of(&empty_row).is_none());
    }
}

//! The input the encoder benchmarks share with `benches/anchor.py`, which builds the same batch
//! for the PyTorch side of the comparison.

/// Rows in the batch.
pub const BATCH: usize = 32;
/// Tokens per row, padding included; the longest row has no padding.
pub const SEQ_LEN: usize = 64;

/// The flat `(input_ids, attention_mask)` of the deterministic batch: row `r` holds
/// `SEQ_LEN - (7 r mod 24)` real tokens, then right padding with id 0.
pub fn anchor_rows() -> (Vec<i64>, Vec<i64>) {
    let mut ids = Vec::with_capacity(BATCH * SEQ_LEN);
    let mut mask = Vec::with_capacity(BATCH * SEQ_LEN);
    for row in 0..BATCH {
        let len = SEQ_LEN - (row * 7) % 24;
        for pos in 0..SEQ_LEN {
            let real = pos < len;
            ids.push(if real {
                1000 + ((row * 131 + pos * 17) % 20000) as i64
            } else {
                0
            });
            mask.push(real as i64);
        }
    }
    (ids, mask)
}

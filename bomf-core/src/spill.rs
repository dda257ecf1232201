//! Where checkpoint parameters live: in memory while they fit a budget, otherwise in
//! memory-mapped files.
//!
//! Stage 2 holds a window of snapshots and stage 3 fuses K checkpoints; for a model that is
//! large next to the machine's memory, K copies do not fit. Past the budget, a checkpoint is
//! written once to an unlinked temporary file and memory-mapped: the fusion kernel reads it
//! like any slice, the page cache streams it from disk, and the process's own memory stays near
//! the in-memory checkpoints plus the fused model. The files vanish with the process, even after
//! `kill -9` (they are unlinked as soon as they are created).
//!
//! The budget is shared by every checkpoint of the process ([`SpillPolicy::global`]): half of
//! the memory available when it is first used, or `BOMF_CHECKPOINT_MEMORY_MB`; the files go to
//! `BOMF_SPILL_DIR`, else the system's temporary folder (the CLI points it at the run directory).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bomf_models::HfTensor;

use crate::error::{CoreError, Result};

/// How many bytes of checkpoints may stay in memory, and where the rest goes.
#[derive(Debug)]
pub struct SpillPolicy {
    budget: usize,
    used: AtomicUsize,
    dir: Option<PathBuf>,
}

static GLOBAL: OnceLock<Arc<SpillPolicy>> = OnceLock::new();

impl SpillPolicy {
    /// A policy keeping at most `budget` bytes in memory, spilling into `dir` (`None`: the
    /// system's temporary folder).
    pub fn new(budget: usize, dir: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            budget,
            used: AtomicUsize::new(0),
            dir,
        })
    }

    /// The process-wide policy (see the module docs), created on first use.
    pub fn global() -> Arc<Self> {
        GLOBAL.get_or_init(Self::from_env).clone()
    }

    /// Sets the process-wide policy; `false` if it was already in use (then it is unchanged).
    pub fn set_global(policy: Arc<Self>) -> bool {
        GLOBAL.set(policy).is_ok()
    }

    fn from_env() -> Arc<Self> {
        let budget = std::env::var("BOMF_CHECKPOINT_MEMORY_MB")
            .ok()
            .and_then(|v| v.trim().parse::<usize>().ok())
            .map(|mb| mb.saturating_mul(1 << 20))
            .or_else(|| available_memory().map(|b| b / 2))
            .unwrap_or(usize::MAX);
        let dir = std::env::var_os("BOMF_SPILL_DIR").map(PathBuf::from);
        Self::new(budget, dir)
    }

    /// Bytes of checkpoints held in memory under this policy now.
    pub fn in_memory(&self) -> usize {
        self.used.load(Ordering::SeqCst)
    }

    /// One checkpoint as a flat buffer (tensors concatenated in order): in memory if it fits
    /// the budget, else in a memory-mapped file.
    pub fn flatten(self: &Arc<Self>, tensors: &[(String, HfTensor)]) -> Result<FlatCheckpoint> {
        let values: usize = tensors.iter().map(|(_, t)| t.data.len()).sum();
        let bytes = values * std::mem::size_of::<f32>();
        let reserved = self
            .used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |used| {
                used.checked_add(bytes)
                    .filter(|&total| total <= self.budget)
            })
            .is_ok();
        if reserved {
            let mut data = Vec::with_capacity(values);
            for (_, t) in tensors {
                data.extend_from_slice(&t.data);
            }
            return Ok(FlatCheckpoint(Storage::Memory {
                data,
                policy: self.clone(),
            }));
        }
        self.map_to_file(tensors, values).map(FlatCheckpoint)
    }

    fn map_to_file(&self, tensors: &[(String, HfTensor)], values: usize) -> Result<Storage> {
        let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
        let spill_error = |e: std::io::Error| {
            CoreError::file(
                &dir,
                format!(
                    "cannot spill a checkpoint to disk here ({e}); set BOMF_SPILL_DIR to a \
                     folder with room, or BOMF_CHECKPOINT_MEMORY_MB to keep more in memory"
                ),
            )
        };
        let file = tempfile::tempfile_in(&dir).map_err(spill_error)?;
        let mut writer = std::io::BufWriter::with_capacity(1 << 20, &file);
        for (_, t) in tensors {
            writer
                .write_all(bytemuck::cast_slice(&t.data))
                .map_err(spill_error)?;
        }
        writer.flush().map_err(spill_error)?;
        drop(writer);
        let map = map_read_only(&file).map_err(spill_error)?;
        if bytemuck::try_cast_slice::<u8, f32>(&map).map(<[f32]>::len) != Ok(values) {
            return Err(CoreError::file(
                &dir,
                "a spilled checkpoint did not map back to its values",
            ));
        }
        tracing::info!(dir = %dir.display(), mib = (values * 4) >> 20, "checkpoint spilled to disk");
        Ok(Storage::Mapped(map))
    }
}

/// Maps a file we created and never change again.
#[allow(unsafe_code)]
fn map_read_only(file: &std::fs::File) -> std::io::Result<memmap2::Mmap> {
    // SAFETY: the file is an unlinked temporary that only this process can reach and that
    // nobody writes after this point, so the mapped bytes cannot change under the slice.
    unsafe { memmap2::Mmap::map(file) }
}

/// `MemAvailable` from `/proc/meminfo`, in bytes (Linux; `None` elsewhere).
fn available_memory() -> Option<usize> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: usize = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// One checkpoint's parameters as a flat f32 buffer, in memory or mapped from disk.
#[derive(Debug)]
pub struct FlatCheckpoint(Storage);

#[derive(Debug)]
enum Storage {
    /// Counted in its policy's budget until dropped.
    Memory {
        data: Vec<f32>,
        policy: Arc<SpillPolicy>,
    },
    /// Checked at creation to hold whole, aligned f32 values.
    Mapped(memmap2::Mmap),
}

impl FlatCheckpoint {
    pub fn as_slice(&self) -> &[f32] {
        match &self.0 {
            Storage::Memory { data, .. } => data,
            Storage::Mapped(map) => bytemuck::cast_slice(map),
        }
    }

    /// Whether the values live in a memory-mapped file.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Storage::Mapped(_))
    }
}

impl Drop for FlatCheckpoint {
    fn drop(&mut self) {
        if let Storage::Memory { data, policy } = &self.0 {
            policy
                .used
                .fetch_sub(std::mem::size_of_val(data.as_slice()), Ordering::SeqCst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensors(values: &[f32]) -> Vec<(String, HfTensor)> {
        vec![
            (
                "a".into(),
                HfTensor::new(vec![2], values[..2].to_vec()).unwrap(),
            ),
            (
                "b".into(),
                HfTensor::new(vec![values.len() - 2], values[2..].to_vec()).unwrap(),
            ),
        ]
    }

    #[test]
    fn spills_past_the_budget_and_frees_it_on_drop() {
        let policy = SpillPolicy::new(40, None);
        let first = policy
            .flatten(&tensors(&[1.0, 2.0, 3.0, 4.0, 5.0]))
            .unwrap();
        assert!(!first.is_mapped());
        assert_eq!(policy.in_memory(), 20);
        // 20 + 24 bytes > 40: the second goes to disk, with the same values.
        let values = [0.5, -1.0, 2.5, 1e-30, f32::MAX, 7.0];
        let second = policy.flatten(&tensors(&values)).unwrap();
        assert!(second.is_mapped());
        assert_eq!(second.as_slice(), values);
        assert_eq!(policy.in_memory(), 20);
        drop(first);
        assert_eq!(policy.in_memory(), 0);
        let third = policy.flatten(&tensors(&values)).unwrap();
        assert!(!third.is_mapped());
        assert_eq!(third.as_slice(), values);
    }

    #[test]
    fn an_unwritable_spill_folder_is_a_clear_error() {
        let policy = SpillPolicy::new(0, Some(PathBuf::from("/nonexistent/bomf-spill")));
        let err = policy.flatten(&tensors(&[1.0, 2.0, 3.0])).unwrap_err();
        assert!(err.to_string().contains("BOMF_SPILL_DIR"), "{err}");
    }
}

//! Checkpoints past the memory budget live in memory-mapped files and fuse to the same model.
//! Its own test binary: the budget is process-wide, and here it is zero (everything spills).

mod common;

use bomf_core::fusion::CheckpointSet;
use bomf_core::spill::SpillPolicy;
use bomf_core::train::{Budget, TrainConfig};
use bomf_core::trajectory::collect_trajectory;
use bomf_models::CpuAutodiffBackend as AB;
use bomf_models::HfTensor;

#[test]
fn a_zero_budget_spills_every_checkpoint_and_fuses_the_same_model() {
    assert!(SpillPolicy::set_global(SpillPolicy::new(0, None)));
    let (_rng, device) = common::locked_device();
    let val = common::eval_set(16);
    let train = TrainConfig {
        learning_rate: 1e-2,
        warmup: bomf_core::schedule::Warmup::Steps(2),
        budget: Budget::Steps(24),
        seed: 3,
        ..TrainConfig::default()
    };
    let config = common::last_k(3, 4);
    let traj = collect_trajectory(
        common::tiny_model::<AB>(false, 4),
        &common::batcher(32, 8, 1),
        &val,
        &train,
        &config,
        &device,
        |_, _| {},
    )
    .unwrap();
    assert_eq!(traj.kept.len(), 3);
    assert_eq!(traj.checkpoints.spilled(), 3, "every checkpoint is on disk");
    assert_eq!(SpillPolicy::global().in_memory(), 0);

    // The same checkpoints read back from their safetensors into an in-memory set.
    let dir = tempfile::tempdir().unwrap();
    traj.save(dir.path()).unwrap();
    let mut in_memory = CheckpointSet::with_policy(SpillPolicy::new(usize::MAX, None));
    let mut files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 3);
    for file in &files {
        let ckpt = bomf_models::weights::read_safetensors(file).unwrap();
        let tensors: Vec<(String, HfTensor)> = ckpt.tensors.into_iter().collect();
        in_memory.push_tensors(&tensors).unwrap();
    }
    assert_eq!(in_memory.spilled(), 0);

    // Same fusion, tensor by tensor (the two sets order their tensors differently).
    let w = [0.2, 0.3, 0.5];
    let from_disk = traj
        .checkpoints
        .unflatten(&traj.checkpoints.fuse(&w).unwrap())
        .unwrap();
    let from_memory = in_memory.unflatten(&in_memory.fuse(&w).unwrap()).unwrap();
    assert_eq!(from_disk.len(), from_memory.len());
    for (name, t) in &from_disk {
        assert_eq!(t.data, from_memory[name].data, "{name}");
    }
    // And a selection shares the mapped buffers rather than copying them.
    let last = traj.checkpoints.select(&[2]).unwrap();
    assert_eq!(last.spilled(), 1);
    assert_eq!(last.checkpoint(0), traj.checkpoints.checkpoint(2));
}

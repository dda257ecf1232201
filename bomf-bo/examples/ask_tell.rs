//! Ask/tell in 20 lines: tune a learning rate (log scale) and a batch size (integer) of a toy
//! objective. `cargo run -p bomf-bo --example ask_tell`
use bomf_bo::{Objective, Optimizer, OptimizerSettings, Param, Space};

fn accuracy(x: &[f64]) -> f64 {
    // Best at lr = 1e-4, bs = 16; pretend this is a fine-tuning run.
    0.9 - 0.05 * (x[0].log10() + 4.0).powi(2) - 0.1 * ((x[1] - 16.0) / 16.0).powi(2)
}

fn main() -> bomf_bo::Result<()> {
    let space = Space::new_box(vec![
        Param::new("lr", 1e-6, 1e-3).log_scale(),
        Param::new("bs", 4.0, 64.0).integer(),
    ])?;
    let settings = OptimizerSettings {
        seed: 0,
        ..OptimizerSettings::default()
    };
    let mut opt = Optimizer::new(space, vec![Objective::maximize("acc")], settings)?;
    for _ in 0..15 {
        for x in opt.ask(1)? {
            let y = accuracy(&x);
            opt.tell(&x, &[y])?;
        }
    }
    let state = opt.to_json()?; // save it; Optimizer::from_json(&state) resumes the run
    let best = opt.best().expect("at least one successful evaluation");
    println!(
        "best {:?} -> {:.4} ({} bytes of state)",
        best.x,
        best.y[0],
        state.len()
    );
    Ok(())
}

//! An external evaluation command: runs on each fused candidate and reports named objectives.
//!
//! Protocol: the command's arguments may hold `{model}` (the candidate's folder), `{worker}`
//! (the worker's index) and `{device}` (the worker's device, e.g. `cuda:1`); the worker's
//! environment also has `BOMF_MODEL`, `BOMF_WORKER`, `BOMF_DEVICE` and, for a `cuda:N` device,
//! `CUDA_VISIBLE_DEVICES=N`. The last non-empty line of its stdout is one JSON object: every
//! top-level number is an objective, and so is every number of a nested `metrics` object (so
//! `bomf eval`'s own output, `{"loss": …, "metrics": {"accuracy": …}, …}`, works as is). Anything
//! else on the line (strings, `num_examples`, …) is ignored only because no objective names it:
//! an objective the line lacks is a failed evaluation naming it.
//!
//! A non-zero exit, a timeout (the process is killed), an unparsable last line or a missing or
//! non-finite objective is a *failed evaluation*, recorded as such so the search goes on; the
//! tail of stderr is kept for the user.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use wait_timeout::ChildExt;

/// How much of a command's stderr is kept (its tail).
pub const STDERR_TAIL_BYTES: usize = 8 * 1024;

/// The command and its time limit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandEvaluator {
    /// Program and arguments; see the module docs for `{model}`, `{worker}`, `{device}`.
    pub command: Vec<String>,
    /// Seconds before the command is killed and the evaluation counted as failed.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
}

fn default_timeout_s() -> f64 {
    3600.0
}

/// Where and as whom one evaluation runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    pub worker: usize,
    /// `cpu` or `cuda:N`.
    pub device: String,
}

/// The result of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// Every objective, by name, as the command printed it.
    Ok { values: BTreeMap<String, f64> },
    /// Why it failed, and the tail of the command's stderr.
    Failed { reason: String, stderr_tail: String },
}

impl Outcome {
    fn failed(reason: impl Into<String>, stderr: &[u8]) -> Self {
        Self::Failed {
            reason: reason.into(),
            stderr_tail: tail(stderr),
        }
    }
}

impl CommandEvaluator {
    /// Checks the command before a search starts.
    pub fn validate(&self) -> Result<(), String> {
        if self.command.is_empty() || self.command[0].trim().is_empty() {
            return Err("the evaluation command is empty".into());
        }
        if !self.command.iter().any(|a| a.contains("{model}")) {
            return Err(
                "the evaluation command never names the candidate: put {model} in its arguments"
                    .into(),
            );
        }
        if !(self.timeout_s.is_finite() && self.timeout_s > 0.0) {
            return Err(format!(
                "timeout_s must be positive, got {}",
                self.timeout_s
            ));
        }
        Ok(())
    }

    /// Runs the command on `model` and reads the objectives `names` from its last stdout line.
    pub fn evaluate(&self, model: &Path, slot: &Slot, names: &[String]) -> Outcome {
        let model_text = model.to_string_lossy();
        let worker = slot.worker.to_string();
        let args: Vec<String> = self
            .command
            .iter()
            .map(|a| {
                a.replace("{model}", &model_text)
                    .replace("{worker}", &worker)
                    .replace("{device}", &slot.device)
            })
            .collect();
        let mut command = Command::new(&args[0]);
        command
            .args(&args[1..])
            .env("BOMF_MODEL", model)
            .env("BOMF_WORKER", &worker)
            .env("BOMF_DEVICE", &slot.device)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(index) = slot.device.strip_prefix("cuda:") {
            command.env("CUDA_VISIBLE_DEVICES", index);
        }
        // Its own process group, so that a timeout kills what it started too (a shell script's
        // python), whose open pipes would otherwise keep the readers waiting.
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        match run_with_timeout(&mut command, Duration::from_secs_f64(self.timeout_s)) {
            Err(reason) => Outcome::failed(format!("{}: {reason}", args[0]), b""),
            Ok(Finished::TimedOut { stderr }) => Outcome::failed(
                format!("timed out after {} s and was killed", self.timeout_s),
                &stderr,
            ),
            Ok(Finished::Exited {
                status,
                stdout,
                stderr,
            }) => {
                if !status.success() {
                    let last = String::from_utf8_lossy(&stderr)
                        .lines()
                        .rev()
                        .find(|l| !l.trim().is_empty())
                        .map(|l| format!(": {}", clip(l.trim())))
                        .unwrap_or_default();
                    return Outcome::failed(format!("exited with {status}{last}"), &stderr);
                }
                match parse_objectives(&stdout, names) {
                    Ok(values) => Outcome::Ok { values },
                    Err(reason) => Outcome::failed(reason, &stderr),
                }
            }
        }
    }
}

enum Finished {
    Exited {
        status: std::process::ExitStatus,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    TimedOut {
        stderr: Vec<u8>,
    },
}

/// Runs `command`, reading stdout and stderr on their own threads (so a chatty command never
/// blocks on a full pipe), killing it after `limit`.
fn run_with_timeout(command: &mut Command, limit: Duration) -> Result<Finished, String> {
    let started = Instant::now();
    let mut child = command.spawn().map_err(|e| e.to_string())?;
    let out = child.stdout.take().ok_or("no stdout pipe")?;
    let err = child.stderr.take().ok_or("no stderr pipe")?;
    let out_thread = read_all_on_a_thread(out);
    let err_thread = read_all_on_a_thread(err);
    let status = child
        .wait_timeout(limit.saturating_sub(started.elapsed()))
        .map_err(|e| e.to_string())?;
    let Some(status) = status else {
        kill_group(&mut child);
        let _ = child.wait();
        let stderr = err_thread.join().unwrap_or_default();
        let _ = out_thread.join();
        return Ok(Finished::TimedOut { stderr });
    };
    let stdout = out_thread.join().unwrap_or_default();
    let stderr = err_thread.join().unwrap_or_default();
    Ok(Finished::Exited {
        status,
        stdout,
        stderr,
    })
}

/// Kills `child` and, on unix, every process of its group (see [`CommandEvaluator::evaluate`]).
fn kill_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: `kill` with a negative pid signals the process group the child leads; it
        // touches no memory of ours.
        #[allow(unsafe_code)]
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.kill();
}

fn read_all_on_a_thread(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// The objectives `names` from the last non-empty line of `stdout` (see the module docs).
pub fn parse_objectives(stdout: &[u8], names: &[String]) -> Result<BTreeMap<String, f64>, String> {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or("printed nothing on stdout (expected a JSON object on its last line)")?;
    let value: serde_json::Value = serde_json::from_str(line.trim())
        .map_err(|e| format!("its last stdout line is not JSON ({e}): {}", clip(line)))?;
    let object = value
        .as_object()
        .ok_or_else(|| format!("its last stdout line is not a JSON object: {}", clip(line)))?;
    let mut found = BTreeMap::new();
    let nested = object.get("metrics").and_then(|m| m.as_object());
    for (key, v) in object.iter().chain(nested.into_iter().flatten()) {
        if let Some(x) = v.as_f64() {
            found.insert(key.clone(), x);
        }
    }
    let mut values = BTreeMap::new();
    for name in names {
        match found.get(name) {
            Some(x) if x.is_finite() => {
                values.insert(name.clone(), *x);
            }
            Some(x) => return Err(format!("objective {name} is {x}")),
            None => {
                let known: Vec<&String> = found.keys().collect();
                return Err(format!(
                    "its last stdout line has no objective {name} (numbers found: {known:?})"
                ));
            }
        }
    }
    Ok(values)
}

fn clip(line: &str) -> String {
    const MAX: usize = 200;
    if line.len() <= MAX {
        return line.to_owned();
    }
    let mut end = MAX;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &line[..end])
}

/// The last [`STDERR_TAIL_BYTES`] of `bytes`, as text.
fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_last_line_is_read_with_nested_metrics() {
        let out = b"loading...\n{\"loss\": 0.5, \"metrics\": {\"accuracy\": 0.8}, \"num_examples\": 3}\n\n";
        let v = parse_objectives(out, &names(&["accuracy", "loss"])).unwrap();
        assert_eq!(v["accuracy"], 0.8);
        assert_eq!(v["loss"], 0.5);
    }

    #[test]
    fn a_missing_or_non_numeric_objective_is_a_failure_naming_it() {
        let err = parse_objectives(b"{\"acc\": 0.5}\n", &names(&["accuracy"])).unwrap_err();
        assert!(err.contains("accuracy") && err.contains("acc"), "{err}");
        let err = parse_objectives(b"{\"accuracy\": \"high\"}", &names(&["accuracy"])).unwrap_err();
        assert!(err.contains("accuracy"), "{err}");
        let err = parse_objectives(b"done\n", &names(&["accuracy"])).unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        let err = parse_objectives(b"", &names(&["accuracy"])).unwrap_err();
        assert!(err.contains("nothing"), "{err}");
    }
}

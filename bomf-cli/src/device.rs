//! `--device`: where a command runs — `cpu` (the default) or `cuda:N` in a build with the
//! `cuda` feature — and [`with_backend!`], which runs a block of code generic over the backend
//! on the backend the device names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A device a command runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    /// The CPU backend (`Flex`, every core).
    #[default]
    Cpu,
    /// The CUDA GPU of this index (`cuda` is `cuda:0`).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "cpu" => return Ok(Self::Cpu),
            "cuda" | "gpu" => return Ok(Self::Cuda(0)),
            _ => {}
        }
        if let Some(index) = s.strip_prefix("cuda:")
            && let Ok(index) = index.parse()
        {
            return Ok(Self::Cuda(index));
        }
        Err(format!(
            "unknown device `{s}`: expected `cpu`, `cuda` or `cuda:N` (N the GPU's index)"
        ))
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> Self {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => f.write_str("cpu"),
            Self::Cuda(index) => write!(f, "cuda:{index}"),
        }
    }
}

/// The inference backend (no autodiff) on the same device as the autodiff backend `B`.
pub type Inference<B> = <B as burn::tensor::backend::AutodiffBackend>::InnerBackend;

/// The error for `cuda:N` in a build without the `cuda` feature.
#[cfg_attr(feature = "cuda", allow(dead_code))]
pub fn no_cuda(device: DeviceSpec) -> anyhow::Error {
    anyhow::anyhow!(
        "--device {device}: this bomf was built without CUDA; rebuild with \
         `cargo build --release -p bomf-cli --features cuda` (see benches/gpu/README.md)"
    )
}

/// Runs `$body` with `$B` the autodiff backend of `$device` (a [`DeviceSpec`]) and `$dev` its
/// burn device; the block's value is the macro's (an `anyhow::Result`). A macro, not a
/// function: a closure cannot be generic over a backend, and the alternative — a trait with a
/// generic method per command — spreads each command over a struct and an impl. `$B::InnerBackend`
/// is the inference backend on the same device.
macro_rules! with_backend {
    ($device:expr, |$B:ident, $dev:ident| $body:block) => {
        match $device {
            $crate::device::DeviceSpec::Cpu => {
                type $B = bomf_models::CpuAutodiffBackend;
                let $dev: burn::tensor::Device<$B> = Default::default();
                let result: anyhow::Result<_> = $body;
                result
            }
            #[cfg(feature = "cuda")]
            $crate::device::DeviceSpec::Cuda(index) => {
                type $B = bomf_models::CudaAutodiffBackend;
                let $dev: burn::tensor::Device<$B> = burn::backend::cuda::CudaDevice::new(index);
                let result: anyhow::Result<_> = $body;
                result
            }
            #[cfg(not(feature = "cuda"))]
            other @ $crate::device::DeviceSpec::Cuda(_) => Err($crate::device::no_cuda(other)),
        }
    };
}
pub(crate) use with_backend;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices_and_names_the_bad_ones() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("CUDA".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:3".parse(), Ok(DeviceSpec::Cuda(3)));
        assert_eq!(DeviceSpec::Cuda(3).to_string(), "cuda:3");
        let err = "cuda:x".parse::<DeviceSpec>().unwrap_err();
        assert!(err.contains("cuda:x") && err.contains("cuda:N"), "{err}");
        assert!("tpu".parse::<DeviceSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let result: anyhow::Result<usize> = with_backend!(DeviceSpec::Cuda(1), |B, device| {
            Ok(std::mem::size_of_val(&device))
        });
        let err = format!("{:#}", result.unwrap_err());
        assert!(
            err.contains("cuda:1") && err.contains("--features cuda"),
            "{err}"
        );
        let cpu: anyhow::Result<usize> = with_backend!(DeviceSpec::Cpu, |B, device| {
            Ok(std::mem::size_of_val(&device))
        });
        assert!(cpu.is_ok());
    }
}

//! Where a run trains and evaluates: `cpu` or `cuda:N` (the `device` of a run config; front ends
//! turn it into a burn backend).

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
}

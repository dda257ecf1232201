//! `--device`: where a command runs — `cpu` (the default) or `cuda:N` in a build with the
//! `cuda` feature ([`DeviceSpec`], bomf-core's) — and [`with_backend!`], which runs a block of
//! code generic over the backend on the backend the device names.

pub use bomf_core::device::DeviceSpec;

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

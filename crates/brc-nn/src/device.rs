//! Device selection by name, so the CLI and configs can say `cpu`, `cuda`, `metal` or `auto`.

use crate::{NnError, Result};
use candle_core::Device;

/// Parses an optional `:N` ordinal suffix (`cuda:1`); defaults to 0.
fn split_ordinal(name: &str) -> Result<(&str, usize)> {
    match name.split_once(':') {
        None => Ok((name, 0)),
        Some((kind, ord)) => ord
            .parse()
            .map(|o| (kind, o))
            .map_err(|_| NnError::Device(format!("bad device ordinal in `{name}`"))),
    }
}

/// Whether this build was compiled with CUDA support (`cuda` feature).
pub fn cuda_compiled() -> bool {
    cfg!(feature = "cuda")
}

/// Whether this build was compiled with Metal support (`metal` feature).
pub fn metal_compiled() -> bool {
    cfg!(feature = "metal")
}

fn cuda(ordinal: usize) -> Result<Device> {
    if !cuda_compiled() {
        return Err(NnError::Device(
            "CUDA requested but brc-nn was built without the `cuda` feature".into(),
        ));
    }
    Device::new_cuda(ordinal)
        .map_err(|e| NnError::Device(format!("cannot open CUDA device {ordinal}: {e}")))
}

fn metal(ordinal: usize) -> Result<Device> {
    if !metal_compiled() {
        return Err(NnError::Device(
            "Metal requested but brc-nn was built without the `metal` feature".into(),
        ));
    }
    Device::new_metal(ordinal)
        .map_err(|e| NnError::Device(format!("cannot open Metal device {ordinal}: {e}")))
}

/// Picks a device by name: `cpu`, `cuda` / `cuda:N`, `metal` / `metal:N`, or `auto` (the
/// first compiled-in backend that opens, CUDA then Metal, else the CPU). Case-insensitive.
///
/// Asking for a backend that is not compiled in, or that fails to open, is an error rather
/// than a silent CPU fallback, so a run never trains on the wrong device unnoticed.
pub fn select_device(name: &str) -> Result<Device> {
    let lower = name.trim().to_ascii_lowercase();
    let (kind, ordinal) = split_ordinal(&lower)?;
    match kind {
        "cpu" => Ok(Device::Cpu),
        "cuda" => cuda(ordinal),
        "metal" => metal(ordinal),
        "auto" => {
            if cuda_compiled() {
                if let Ok(d) = cuda(0) {
                    return Ok(d);
                }
            }
            if metal_compiled() {
                if let Ok(d) = metal(0) {
                    return Ok(d);
                }
            }
            Ok(Device::Cpu)
        }
        _ => Err(NnError::Device(format!(
            "unknown device `{name}` (expected cpu, cuda[:N], metal[:N] or auto)"
        ))),
    }
}

/// A short human-readable name of `device` for logs (`cpu`, `cuda`, `metal`).
pub fn device_label(device: &Device) -> &'static str {
    match device {
        Device::Cpu => "cpu",
        Device::Cuda(_) => "cuda",
        Device::Metal(_) => "metal",
    }
}

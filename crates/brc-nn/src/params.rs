//! [`ParamStore`]: an ordered, named list of trainable variables.

use crate::{NnError, Result};
use candle_core::{DType, Device, Shape, Tensor, Var};
use std::collections::HashMap;
use std::path::Path;

/// The trainable variables of one network, in construction order, with stable names
/// (PyTorch-style, e.g. `fc1.weight`).
///
/// Cloning a `ParamStore` clones the handles, not the storage: both clones see the same
/// values. Use [`ParamStore::deep_clone`] for an independent copy.
#[derive(Debug, Clone)]
pub struct ParamStore {
    device: Device,
    entries: Vec<(String, Var)>,
}

impl ParamStore {
    /// An empty store whose variables live on `device`.
    pub fn new(device: &Device) -> Self {
        Self {
            device: device.clone(),
            entries: Vec::new(),
        }
    }

    /// The device of the variables.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Adds a variable initialised from host data. Fails on a duplicate name or a length that
    /// does not match `shape`.
    pub fn insert_vec<S: Into<Shape>>(
        &mut self,
        name: &str,
        data: Vec<f32>,
        shape: S,
    ) -> Result<Var> {
        let t = Tensor::from_vec(data, shape, &self.device)?;
        self.insert(name, &t)
    }

    /// Adds a variable holding a copy of `value` (converted to f32 on this store's device).
    pub fn insert(&mut self, name: &str, value: &Tensor) -> Result<Var> {
        if self.get(name).is_some() {
            return Err(NnError::Param {
                name: name.to_owned(),
                msg: "defined twice".into(),
            });
        }
        // `copy` guarantees fresh storage even when `value` already is on the right device
        // in f32, so the variable never aliases the caller's tensor.
        let t = value
            .to_dtype(DType::F32)?
            .to_device(&self.device)?
            .copy()?;
        let var = Var::from_tensor(&t)?;
        self.entries.push((name.to_owned(), var.clone()));
        Ok(var)
    }

    /// The variable called `name`, if any.
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.entries.iter().find(|(n, _)| n == name).map(|(_, v)| v)
    }

    /// The variable called `name`, checked to have `shape`; networks use this to bind their
    /// layers to a store.
    pub fn require(&self, name: &str, shape: &[usize]) -> Result<Var> {
        let var = self.get(name).ok_or_else(|| NnError::Param {
            name: name.to_owned(),
            msg: "missing".into(),
        })?;
        if var.dims() != shape {
            return Err(NnError::Shape {
                name: name.to_owned(),
                expected: shape.to_vec(),
                found: var.dims().to_vec(),
            });
        }
        Ok(var.clone())
    }

    /// Name and variable pairs in construction order.
    pub fn named_vars(&self) -> &[(String, Var)] {
        &self.entries
    }

    /// The variables in construction order (what an optimiser takes).
    pub fn vars(&self) -> Vec<Var> {
        self.entries.iter().map(|(_, v)| v.clone()).collect()
    }

    /// Number of variables.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the store holds no variable.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.entries.iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// A `VarMap` sharing these variables (same storage), for APIs that want one.
    pub fn to_varmap(&self) -> candle_nn::VarMap {
        let vm = candle_nn::VarMap::new();
        {
            let mut data = vm.data().lock().expect("fresh VarMap lock");
            for (n, v) in &self.entries {
                data.insert(n.clone(), v.clone());
            }
        }
        vm
    }

    /// Checks that `other` has exactly the same names and shapes, in any order.
    fn check_same_layout(&self, other: &ParamStore) -> Result<()> {
        for (name, v) in &self.entries {
            let o = other.get(name).ok_or_else(|| NnError::Param {
                name: name.clone(),
                msg: "missing in the source network".into(),
            })?;
            if o.dims() != v.dims() {
                return Err(NnError::Shape {
                    name: name.clone(),
                    expected: v.dims().to_vec(),
                    found: o.dims().to_vec(),
                });
            }
        }
        if let Some((name, _)) = other.entries.iter().find(|(n, _)| self.get(n).is_none()) {
            return Err(NnError::Param {
                name: name.clone(),
                msg: "present in the source network only".into(),
            });
        }
        Ok(())
    }

    /// Overwrites every variable with the value of the same-named variable of `other` (hard
    /// target-network update). The layouts must match exactly; nothing is written otherwise.
    pub fn copy_from(&self, other: &ParamStore) -> Result<()> {
        self.check_same_layout(other)?;
        for (name, v) in &self.entries {
            let src = other.get(name).expect("checked above");
            // Copying a variable onto itself would deadlock on its storage lock; it is a
            // no-op anyway.
            if src.id() == v.id() {
                continue;
            }
            v.set(&src.as_tensor().to_device(&self.device)?)?;
        }
        Ok(())
    }

    /// Moves every variable a fraction `tau` of the way to the same-named variable of `other`:
    /// `v ← (1 − tau)·v + tau·src` (Polyak-averaged target network). Layouts must match.
    pub fn soft_update_from(&self, other: &ParamStore, tau: f64) -> Result<()> {
        self.check_same_layout(other)?;
        for (name, v) in &self.entries {
            let src = other.get(name).expect("checked above");
            if src.id() == v.id() {
                continue;
            }
            // On the CPU: one in-place pass instead of three tensor ops and a copy (the same
            // f32 arithmetic, so the same bits).
            let (guard, layout) = src.storage_and_layout();
            if let Some(s) = host_slice(&guard, layout) {
                let (keep, take) = ((1.0 - tau) as f32, tau as f32);
                update_host(v, |w| {
                    for (w, s) in w.iter_mut().zip(s) {
                        *w = *w * keep + s * take;
                    }
                })?;
                continue;
            }
            drop(guard);
            let mixed = ((v.as_tensor() * (1.0 - tau))? + (src.as_tensor() * tau)?)?;
            v.set(&mixed)?;
        }
        Ok(())
    }

    /// Runs `f` on every variable's values as host slices, in construction order, without
    /// copying them. `None` when the variables are not contiguous `f32` on the CPU (a GPU
    /// store), so callers fall back to tensor ops.
    pub fn with_host_slices<R>(&self, f: impl FnOnce(&[&[f32]]) -> R) -> Option<R> {
        let guards: Vec<_> = self
            .entries
            .iter()
            .map(|(_, v)| v.storage_and_layout())
            .collect();
        let mut slices = Vec::with_capacity(guards.len());
        for (guard, layout) in &guards {
            slices.push(host_slice(guard, layout)?);
        }
        Some(f(&slices))
    }

    /// An independent copy: same names, shapes and values, fresh storage.
    pub fn deep_clone(&self) -> Result<ParamStore> {
        let mut out = ParamStore::new(&self.device);
        for (name, v) in &self.entries {
            out.insert(name, v.as_tensor())?;
        }
        Ok(out)
    }

    /// Saves all variables to a safetensors file, keyed by name.
    pub fn save<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let map: HashMap<String, Tensor> = self
            .entries
            .iter()
            .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
            .collect();
        candle_core::safetensors::save(&map, path.as_ref())?;
        Ok(())
    }

    /// Loads values saved by [`ParamStore::save`] into these variables. Strict: every name
    /// must be present with the same shape and the file may hold no other tensor; nothing is
    /// written unless all checks pass.
    pub fn load<P: AsRef<Path>>(&self, path: P) -> Result<()> {
        let path = path.as_ref();
        let map = candle_core::safetensors::load(path, &self.device).map_err(|e| {
            NnError::Checkpoint {
                path: path.to_owned(),
                msg: e.to_string(),
            }
        })?;
        let err = |msg: String| NnError::Checkpoint {
            path: path.to_owned(),
            msg,
        };
        for (name, v) in &self.entries {
            let t = map
                .get(name)
                .ok_or_else(|| err(format!("missing tensor `{name}`")))?;
            if t.dims() != v.dims() {
                return Err(err(format!(
                    "tensor `{name}` has shape {:?}, the network needs {:?}",
                    t.dims(),
                    v.dims()
                )));
            }
        }
        if let Some(name) = map.keys().find(|k| self.get(k).is_none()) {
            return Err(err(format!("unexpected tensor `{name}`")));
        }
        for (name, v) in &self.entries {
            v.set(&map[name].to_dtype(DType::F32)?)?;
        }
        Ok(())
    }
}

/// A contiguous `f32` CPU storage's values, `None` for anything else.
fn host_slice<'a>(
    storage: &'a candle_core::Storage,
    layout: &candle_core::Layout,
) -> Option<&'a [f32]> {
    let candle_core::Storage::Cpu(cpu) = storage else {
        return None;
    };
    let data = cpu.as_slice::<f32>().ok()?;
    let (start, end) = layout.contiguous_offsets()?;
    Some(&data[start..end])
}

/// Rewrites `var` in place on the host: `f` gets its values as a mutable slice (no
/// allocation, no copy). Fails on a variable that is not contiguous `f32` on the CPU.
pub fn update_host(var: &Var, f: impl FnMut(&mut [f32])) -> Result<()> {
    var.as_tensor()
        .inplace_op1(&HostUpdate(std::cell::RefCell::new(f)))?;
    Ok(())
}

/// An in-place host rewrite of one variable's storage (see [`update_host`]).
struct HostUpdate<F>(std::cell::RefCell<F>);

impl<F: FnMut(&mut [f32])> candle_core::InplaceOp1 for HostUpdate<F> {
    fn name(&self) -> &'static str {
        "host-update"
    }

    fn cpu_fwd(
        &self,
        storage: &mut candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> candle_core::Result<()> {
        let candle_core::CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg(
                "host update: not an f32 variable".into(),
            ));
        };
        let (start, end) = layout
            .contiguous_offsets()
            .ok_or_else(|| candle_core::Error::Msg("host update: not contiguous".into()))?;
        (self.0.borrow_mut())(&mut data[start..end]);
        Ok(())
    }
}

//! One ONNX graph: the names, element types and shapes of its inputs and outputs as the session
//! reports them, and a `run` that hands each input over in the type the graph declares, so fp32
//! and fp16 exports (and int32 or int64 token ids, float or integer timesteps) all run.
use std::borrow::Cow;
use std::path::{Path, PathBuf};

use half::f16;
use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Tensor, TensorElementType, TensorRef, ValueType};

use crate::runtime::{Runtime, RuntimeError};

#[derive(Debug, thiserror::Error)]
pub enum GraphError {
    #[error(transparent)]
    Open(#[from] RuntimeError),
    #[error("{path}: the graph has no input named {name:?} (it has {have})")]
    MissingInput { path: PathBuf, name: String, have: String },
    #[error("{path}: the graph has no output named {name:?} (it has {have})")]
    MissingOutput { path: PathBuf, name: String, have: String },
    #[error("{path}: {what} has element type {ty}, which is not supported")]
    UnsupportedType { path: PathBuf, what: String, ty: String },
    #[error("{path}: running the graph failed: {message}")]
    Run { path: PathBuf, message: String },
}

/// Element types we convert to and from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElemType {
    F32,
    F16,
    F64,
    I64,
    I32,
}

/// An input or output as the graph declares it. Dynamic dimensions are -1.
#[derive(Clone, Debug)]
pub struct IoSpec {
    pub name: String,
    pub ty: ElemType,
    pub shape: Vec<i64>,
}

/// Data we hand to a graph: floats or integers, converted to the declared type on the way in.
pub enum Data<'a> {
    F32(&'a [f32]),
    I64(&'a [i64]),
}

/// One named input with its shape.
pub struct Input<'a> {
    pub name: &'a str,
    pub shape: Vec<usize>,
    pub data: Data<'a>,
}

impl<'a> Input<'a> {
    pub fn f32(name: &'a str, shape: &[usize], data: &'a [f32]) -> Self {
        Input { name, shape: shape.to_vec(), data: Data::F32(data) }
    }
    pub fn i64(name: &'a str, shape: &[usize], data: &'a [i64]) -> Self {
        Input { name, shape: shape.to_vec(), data: Data::I64(data) }
    }
}

/// An output converted to f32.
#[derive(Clone, Debug)]
pub struct Output {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// A session plus what it declares.
pub struct Graph {
    session: Session,
    path: PathBuf,
    inputs: Vec<IoSpec>,
    outputs: Vec<IoSpec>,
    /// Time spent inside `Session::run`, summed.
    run_time: std::time::Duration,
}

fn elem_type(ty: TensorElementType) -> Option<ElemType> {
    match ty {
        TensorElementType::Float32 => Some(ElemType::F32),
        TensorElementType::Float16 => Some(ElemType::F16),
        TensorElementType::Float64 => Some(ElemType::F64),
        TensorElementType::Int64 => Some(ElemType::I64),
        TensorElementType::Int32 => Some(ElemType::I32),
        _ => None,
    }
}

fn spec(path: &Path, what: &str, name: &str, ty: &ValueType) -> Result<IoSpec, GraphError> {
    let unsupported = || GraphError::UnsupportedType { path: path.to_path_buf(), what: format!("{what} {name:?}"), ty: ty.to_string() };
    let elem = ty.tensor_type().and_then(elem_type).ok_or_else(unsupported)?;
    let shape = ty.tensor_shape().map(|s| s.iter().copied().collect()).unwrap_or_default();
    Ok(IoSpec { name: name.to_string(), ty: elem, shape })
}

impl Graph {
    /// Open `path` on the runtime's execution provider and read its signature.
    pub fn open(runtime: &Runtime, path: &Path) -> Result<Graph, GraphError> {
        let session = runtime.session(path)?;
        let inputs = session.inputs().iter().map(|o| spec(path, "input", o.name(), o.dtype())).collect::<Result<_, _>>()?;
        let outputs = session.outputs().iter().map(|o| spec(path, "output", o.name(), o.dtype())).collect::<Result<_, _>>()?;
        Ok(Graph { session, path: path.to_path_buf(), inputs, outputs, run_time: Default::default() })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Total time spent in ONNX Runtime's `run` for this graph so far.
    pub fn run_time(&self) -> std::time::Duration {
        self.run_time
    }

    pub fn inputs(&self) -> &[IoSpec] {
        &self.inputs
    }

    pub fn outputs(&self) -> &[IoSpec] {
        &self.outputs
    }

    pub fn input(&self, name: &str) -> Option<&IoSpec> {
        self.inputs.iter().find(|s| s.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&IoSpec> {
        self.outputs.iter().find(|s| s.name == name)
    }

    /// The declared input `name`, or an error listing the inputs the graph has.
    pub fn require_input(&self, name: &str) -> Result<&IoSpec, GraphError> {
        self.input(name).ok_or_else(|| GraphError::MissingInput { path: self.path.clone(), name: name.to_string(), have: names(&self.inputs) })
    }

    /// The declared output `name`, or an error listing the outputs the graph has.
    pub fn require_output(&self, name: &str) -> Result<&IoSpec, GraphError> {
        self.output(name).ok_or_else(|| GraphError::MissingOutput { path: self.path.clone(), name: name.to_string(), have: names(&self.outputs) })
    }

    /// Run the graph on `inputs` and return the outputs named in `wanted`, as f32.
    pub fn run(&mut self, inputs: &[Input<'_>], wanted: &[&str]) -> Result<Vec<Output>, GraphError> {
        let mut values: Vec<(Cow<'_, str>, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for input in inputs {
            let ty = self.require_input(input.name)?.ty;
            values.push((Cow::Borrowed(input.name), self.to_value(input, ty)?));
        }
        for name in wanted {
            self.require_output(name)?;
        }
        let path = self.path.clone();
        let run_err = |e: ort::Error| GraphError::Run { path: path.clone(), message: e.to_string() };
        let started = std::time::Instant::now();
        let outputs = self.session.run(values).map_err(run_err)?;
        self.run_time += started.elapsed();
        wanted
            .iter()
            .map(|name| {
                let value = &outputs[*name];
                to_f32(value).map_err(|e| GraphError::Run { path: self.path.clone(), message: format!("output {name:?}: {e}") })
            })
            .collect()
    }

    fn to_value<'v>(&self, input: &'v Input<'_>, ty: ElemType) -> Result<SessionInputValue<'v>, GraphError> {
        let shape: Vec<i64> = input.shape.iter().map(|&d| d as i64).collect();
        let err = |e: ort::Error| GraphError::Run { path: self.path.clone(), message: format!("input {:?}: {e}", input.name) };
        let value: SessionInputValue<'v> = match (&input.data, ty) {
            (Data::F32(d), ElemType::F32) => TensorRef::from_array_view((shape, *d)).map_err(err)?.into(),
            (Data::I64(d), ElemType::I64) => TensorRef::from_array_view((shape, *d)).map_err(err)?.into(),
            (Data::F32(d), ElemType::F16) => Tensor::from_array((shape, d.iter().map(|&v| f16::from_f32(v)).collect::<Vec<_>>())).map_err(err)?.into(),
            (Data::F32(d), ElemType::F64) => Tensor::from_array((shape, d.iter().map(|&v| v as f64).collect::<Vec<_>>())).map_err(err)?.into(),
            // numpy's astype: floats to integers truncate toward zero
            (Data::F32(d), ElemType::I64) => Tensor::from_array((shape, d.iter().map(|&v| v as i64).collect::<Vec<_>>())).map_err(err)?.into(),
            (Data::F32(d), ElemType::I32) => Tensor::from_array((shape, d.iter().map(|&v| v as i32).collect::<Vec<_>>())).map_err(err)?.into(),
            (Data::I64(d), ElemType::I32) => Tensor::from_array((shape, d.iter().map(|&v| v as i32).collect::<Vec<_>>())).map_err(err)?.into(),
            (Data::I64(d), ElemType::F32) => Tensor::from_array((shape, d.iter().map(|&v| v as f32).collect::<Vec<_>>())).map_err(err)?.into(),
            (Data::I64(d), ElemType::F16) => Tensor::from_array((shape, d.iter().map(|&v| f16::from_f32(v as f32)).collect::<Vec<_>>())).map_err(err)?.into(),
            (Data::I64(d), ElemType::F64) => Tensor::from_array((shape, d.iter().map(|&v| v as f64).collect::<Vec<_>>())).map_err(err)?.into(),
        };
        Ok(value)
    }
}

fn names(specs: &[IoSpec]) -> String {
    specs.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
}

fn to_f32(value: &DynValue) -> Result<Output, ort::Error> {
    let ty = value.dtype().tensor_type();
    let (shape, data) = match ty.and_then(elem_type) {
        Some(ElemType::F32) => {
            let (s, d) = value.try_extract_tensor::<f32>()?;
            (s.clone(), d.to_vec())
        }
        Some(ElemType::F16) => {
            let (s, d) = value.try_extract_tensor::<f16>()?;
            (s.clone(), d.iter().map(|v| v.to_f32()).collect())
        }
        Some(ElemType::F64) => {
            let (s, d) = value.try_extract_tensor::<f64>()?;
            (s.clone(), d.iter().map(|&v| v as f32).collect())
        }
        _ => return Err(ort::Error::new(format!("element type {:?} is not a float", ty))),
    };
    Ok(Output { shape: shape.iter().map(|&d| d as usize).collect(), data })
}

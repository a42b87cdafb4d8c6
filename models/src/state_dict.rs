//! PyTorch state dicts (`.pth`, zip + pickle) as plain f32 arrays.

use std::collections::HashMap;
use std::path::Path;

use candle_core::DType;

use crate::ModelsError;

/// True if the file starts like a zip archive (PyTorch ≥ 1.6 `torch.save`); older files are bare pickles.
fn is_zip(path: &Path) -> Result<bool, ModelsError> {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| ModelsError::io("reading", path, e))?;
    let n = file
        .read(&mut magic)
        .map_err(|e| ModelsError::io("reading", path, e))?;
    Ok(n == 4 && magic == *b"PK\x03\x04")
}

/// One parameter or buffer: its shape and its values in C order.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// Its values, row-major.
    pub data: Vec<f32>,
}

/// The floating-point tensors of a state dict, by key (integer buffers such as `num_batches_tracked` are dropped).
#[derive(Debug, Clone, Default)]
pub struct StateDict {
    tensors: HashMap<String, Param>,
    /// Which architecture is being read, for error messages.
    arch: String,
}

impl StateDict {
    /// Reads every floating-point tensor of a `.pth` file.
    pub fn read(path: &Path) -> Result<Self, ModelsError> {
        let bad = |reason: String| ModelsError::StateDict {
            path: path.to_path_buf(),
            reason,
        };
        if !path.is_file() {
            return Err(ModelsError::io(
                "reading",
                path,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            ));
        }
        let all = if is_zip(path)? {
            candle_core::pickle::read_all(path).map_err(|e| bad(e.to_string()))?
        } else {
            legacy::read_all(path).map_err(|e| bad(e.to_string()))?
        };
        let mut tensors = HashMap::new();
        for (name, tensor) in all {
            if !tensor.dtype().is_float() {
                continue;
            }
            let shape = tensor.dims().to_vec();
            let data = tensor
                .to_dtype(DType::F32)
                .and_then(|t| t.flatten_all())
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| bad(format!("tensor {name}: {e}")))?;
            tensors.insert(name, Param { shape, data });
        }
        if tensors.is_empty() {
            return Err(bad("it holds no floating-point tensors".into()));
        }
        Ok(Self {
            tensors,
            arch: String::new(),
        })
    }

    /// A state dict from in-memory tensors.
    pub fn from_params(tensors: HashMap<String, Param>) -> Self {
        Self {
            tensors,
            arch: String::new(),
        }
    }

    /// Names the architecture being read, so that errors say what was expected.
    pub fn for_arch(mut self, arch: &str) -> Self {
        self.arch = arch.to_string();
        self
    }

    /// Number of floating-point tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// True if there is no tensor.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// True if the key is present.
    pub fn contains(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        keys.sort_unstable();
        keys
    }

    /// The tensor `key`, or an error naming it.
    pub fn get(&self, key: &str) -> Result<&Param, ModelsError> {
        self.tensors
            .get(key)
            .ok_or_else(|| self.wrong(format!("missing tensor `{key}`")))
    }

    /// The tensor `key`, checked to have `rank` dimensions.
    pub fn get_rank(&self, key: &str, rank: usize) -> Result<&Param, ModelsError> {
        let p = self.get(key)?;
        if p.shape.len() != rank {
            return Err(self.wrong(format!(
                "`{key}` has shape {:?}, expected {rank} dimensions",
                p.shape
            )));
        }
        Ok(p)
    }

    /// An error saying the weights do not fit the architecture.
    pub fn wrong(&self, reason: String) -> ModelsError {
        ModelsError::WrongWeights {
            arch: self.arch.clone(),
            reason,
        }
    }
}

/// The pre-1.6 `torch.save` format (still used by many published checkpoints): five pickles in a row (magic
/// number, protocol version, system info, the object with persistent storage ids, the list of storage keys),
/// then each storage as a little-endian i64 element count followed by its raw bytes.
mod legacy {
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader, Read};
    use std::path::Path;

    use candle_core::pickle::{Object, Stack};
    use candle_core::{DType, Device, Tensor};

    /// The first pickle of a legacy file: PROTO 2, LONG1 of 10 bytes (torch's `MAGIC_NUMBER`
    /// 0x1950a86a20f9469cfc6c, little-endian), STOP. Matched as bytes: the number does not fit candle's i64.
    const MAGIC_PICKLE: [u8; 15] = [
        0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19, 0x2e,
    ];

    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn next_pickle<R: BufRead>(reader: &mut R) -> Result<Object, Error> {
        let mut stack = Stack::empty();
        stack.read_loop(reader)?;
        Ok(stack.finalize()?)
    }

    /// Every tensor of a legacy `.pth` state dict, by key.
    pub fn read_all(path: &Path) -> Result<Vec<(String, Tensor)>, Error> {
        let mut reader = BufReader::new(std::fs::File::open(path)?);
        let mut magic = [0u8; MAGIC_PICKLE.len()];
        reader.read_exact(&mut magic)?;
        if magic != MAGIC_PICKLE {
            return Err("not a PyTorch file (neither a zip archive nor the legacy format)".into());
        }
        let _protocol = next_pickle(&mut reader)?;
        let _sys_info = next_pickle(&mut reader)?;
        let object = next_pickle(&mut reader)?;
        let keys = next_pickle(&mut reader)?;
        let keys: Vec<String> = match keys {
            Object::List(items) => items
                .into_iter()
                .map(|k| {
                    k.unicode()
                        .map_err(|o| format!("storage key is not a string: {o:?}"))
                })
                .collect::<Result<_, _>>()?,
            other => {
                return Err(format!("expected the list of storage keys, found {other:?}").into())
            }
        };
        let Object::Dict(entries) = object else {
            return Err("the file does not hold a state dict".into());
        };
        let mut infos = Vec::new();
        for (name, value) in entries {
            if let Some(info) = value.into_tensor_info(name, Path::new(""))? {
                infos.push(info);
            }
        }
        // A storage's element size comes from the tensors that view it.
        let mut dtypes: HashMap<String, DType> = HashMap::new();
        for info in &infos {
            dtypes.insert(info.path.trim_start_matches('/').to_string(), info.dtype);
        }
        let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
        for key in keys {
            let mut count = [0u8; 8];
            reader.read_exact(&mut count)?;
            let count =
                usize::try_from(i64::from_le_bytes(count)).map_err(|_| "negative storage size")?;
            let dtype = dtypes
                .get(&key)
                .ok_or_else(|| format!("storage {key} is used by no tensor"))?;
            let mut bytes = vec![0u8; count * dtype.size_in_bytes()];
            reader.read_exact(&mut bytes)?;
            storages.insert(key, bytes);
        }
        let mut out = Vec::with_capacity(infos.len());
        for info in infos {
            let key = info.path.trim_start_matches('/');
            let bytes = storages
                .get(key)
                .ok_or_else(|| format!("{}: storage {key} missing", info.name))?;
            let size = info.dtype.size_in_bytes();
            // candle's pickle reader stores the storage offset in bytes already.
            let start = info.layout.start_offset();
            let dims = info.layout.dims();
            let tensor = if info.layout.is_contiguous() {
                let len = info.layout.shape().elem_count() * size;
                let data = bytes
                    .get(start..start + len)
                    .ok_or_else(|| format!("{}: storage too short", info.name))?;
                Tensor::from_raw_buffer(data, info.dtype, dims, &Device::Cpu)?
            } else if info.dtype == DType::F32 {
                // A permuted view (TF-converted checkpoints store HWIO kernels viewed as OIHW): gather it.
                let values = gather_strided_f32(bytes, start / size, dims, info.layout.stride())
                    .ok_or_else(|| format!("{}: storage too short", info.name))?;
                Tensor::from_vec(values, dims, &Device::Cpu)?
            } else {
                return Err(format!(
                    "{}: non-contiguous {:?} tensors are not supported",
                    info.name, info.dtype
                )
                .into());
            };
            out.push((info.name, tensor));
        }
        Ok(out)
    }

    /// The f32 values of a strided view of a little-endian f32 storage, in C order.
    fn gather_strided_f32(
        bytes: &[u8],
        offset: usize,
        dims: &[usize],
        strides: &[usize],
    ) -> Option<Vec<f32>> {
        let count: usize = dims.iter().product();
        let mut out = Vec::with_capacity(count);
        let mut index = vec![0usize; dims.len()];
        for _ in 0..count {
            let element = offset + index.iter().zip(strides).map(|(i, s)| i * s).sum::<usize>();
            let raw = bytes.get(element * 4..element * 4 + 4)?;
            out.push(f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]));
            // Odometer increment, last axis fastest.
            for axis in (0..dims.len()).rev() {
                index[axis] += 1;
                if index[axis] < dims[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        Some(out)
    }
}

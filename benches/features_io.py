"""Reading lookout's features caches from Python (the benches that measure the rejection on cached features)."""
import json, struct
import numpy as np

def read_safetensors(path):
    """Every tensor of a safetensors file (f32 and u32, as lookout writes them) as numpy arrays."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header, data = json.loads(f.read(n)), f.read()
    types = {"F32": np.float32, "U32": np.uint32}
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], dtype=types[v["dtype"]]).reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}

def pooled(x):
    """Global average pool, L2-normalised: the space the rejection's score measures in."""
    x = x.reshape(x.shape[0], x.shape[1], -1).mean(-1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)

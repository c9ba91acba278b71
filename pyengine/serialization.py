"""pe.save / pe.load: state dicts as NumPy ``.npz``, never pickle.

Arrays are stored under dotted keys (``fc1.weight``, ``state.0.exp_avg``), so ``np.load`` reads
a saved model directly. Nested structure and non-array leaves (an optimizer's lr, betas,
param ids) go in one JSON string array, ``__structure__``; a plain ``.npz`` without it loads as a flat
dict of tensors.
"""
from __future__ import annotations

import json
import zipfile

import numpy as np

from .tensor import Tensor

_STRUCTURE = "__structure__"
_ROOT = "__root__"  # the key of a bare tensor saved on its own, as torch.save(tensor) allows


def save(obj, path) -> None:
    """Write a (nested) dict of Tensors, arrays and plain Python values to ``path``."""
    arrays = {}
    arrays[_STRUCTURE] = np.array(json.dumps(_encode(obj, "", arrays)))
    # Written member by member rather than with np.savez, whose own keyword names
    # ("file", "allow_pickle") would collide with state-dict keys of those names.
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for key, arr in arrays.items():
            with zf.open(key + ".npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.require(arr, requirements="C"), allow_pickle=False)


def load(path, map_location=None):
    """Read what ``save`` wrote; Tensors come back on ``map_location`` (default "cpu")."""
    device = str(map_location) if map_location is not None else "cpu"
    try:
        npz = np.load(path, allow_pickle=False)
    except ValueError as e:  # NumPy's own message talks about pickles, which misleads here
        raise ValueError(f"pe.load: {path!r} is not a pe.save checkpoint (a NumPy .npz file)") from e
    if not isinstance(npz, np.lib.npyio.NpzFile):
        return Tensor(npz, device=device)  # a single .npy array
    with npz:
        if any(k.endswith("data.pkl") for k in npz.files):
            raise ValueError(f"pe.load: {path!r} is a PyTorch checkpoint (torch.save), which pe.load cannot "
                             "read without pickle; convert it with torch: sd = torch.load(path); "
                             "pe.save({k: v.numpy() for k, v in sd.items()}, 'model.npz')")
        arrays = {k: npz[k] for k in npz.files}
    if any(not isinstance(v, np.ndarray) for v in arrays.values()):
        raise ValueError(f"pe.load: {path!r} is a zip archive but not a pe.save checkpoint (a NumPy .npz file)")
    structure = arrays.pop(_STRUCTURE, None)
    if structure is None:
        return {k: Tensor(v, device=device) for k, v in arrays.items()}
    return _decode(json.loads(structure.item()), arrays, device)


def _encode(obj, key, arrays):
    if isinstance(obj, Tensor):
        key = _claim(key or _ROOT, arrays)
        arrays[key] = obj.detach().cpu().numpy()
        return {"tensor": key}
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"cannot save {key!r}: object arrays would need pickle")
        key = _claim(key or _ROOT, arrays)
        arrays[key] = obj
        return {"array": key}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int)) or isinstance(k, bool):
                raise TypeError(f"cannot save a dict key of type {type(k).__name__} at {key or 'top level'!r}")
            items.append([k, _encode(v, f"{key}.{k}" if key else str(k), arrays)])
        return {"dict": items}
    if isinstance(obj, (list, tuple)):
        kind = "list" if isinstance(obj, list) else "tuple"
        return {kind: [_encode(v, f"{key}.{i}" if key else str(i), arrays) for i, v in enumerate(obj)]}
    if isinstance(obj, np.generic):
        obj = obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return {"value": obj}
    hint = "; save its .state_dict() instead (no pickle)" if hasattr(obj, "state_dict") else ""
    raise TypeError(f"cannot save {repr(key) if key else 'the object'} of type {type(obj).__name__}: pe.save "
                    f"takes Tensors, NumPy arrays, numbers, strings, None and dicts/lists/tuples of them{hint}")


def _claim(key, arrays):
    if not key or key in arrays or key == _STRUCTURE:
        raise ValueError(f"cannot save: key {key!r} is empty or collides with another dotted key")
    return key


def _decode(node, arrays, device):
    if "tensor" in node:
        return Tensor(arrays[node["tensor"]], device=device)
    if "array" in node:
        return arrays[node["array"]]
    if "dict" in node:
        return {k: _decode(v, arrays, device) for k, v in node["dict"]}
    if "list" in node:
        return [_decode(v, arrays, device) for v in node["list"]]
    if "tuple" in node:
        return tuple(_decode(v, arrays, device) for v in node["tuple"])
    return node["value"]

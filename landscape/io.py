"""HDF5 result store: loss-surface grids, directions, Hessian groups and trajectories.

The only module of landscape that imports h5py. It writes and reads the schema of
DESIGN §5 (``format = "landscape-hdf5"``, ``format_version = 1``)::

  /                      attrs: format, format_version, landscape_version, jax_version,
                                h5py_version, created (ISO 8601, UTC), config (JSON), seed,
                                direction_kind, norm, ignore, bn_mode, ...
  /xcoordinates (nx,)    float64 dimension scale
  /ycoordinates (ny,)    float64 dimension scale (2-D grids only)
  /train_loss (ny, nx)   value[j, i] is at (x[i], y[j]); (nx,) on a 1-D grid; NaN = not yet
  /train_acc, /test_loss, /test_acc, /max_eig, /min_eig, ...   same shape; attrs["done"] names
                         the done mask that covers the field
  /done (ny, nx) bool    which points are computed (a diverged point, NaN/inf, is computed);
                         further masks such as /eig_done cover fields added later
  /directions/x, /directions/y   one dataset per parameter leaf "0000", "0001", ... in
                         tree-flatten order, attrs["path"] = jax.tree_util.keystr(path)
  /hessian, /critical, /trajectory   free-form groups of arrays (strings as UTF-8)

Grid datasets are chunked one row per chunk, allocated when created and not compressed
(a killed write then cannot corrupt a chunk; rows of older gzip files that a kill left
unreadable are reset and recomputed on resume), and their axes are
attached to the coordinate datasets as HDF5 dimension scales, so
``xarray.open_dataset(path, engine="h5netcdf")`` opens the file with ``xcoordinates`` and
``ycoordinates`` as coordinates. A sweep writes row by row through :class:`GridFile` and
flushes after every write, so a killed run resumes from ``done`` and loses at most the
points in flight.

**One writer.** HDF5 files are not safe for concurrent writers: exactly one process (host 0
of a multi-host run) opens a :class:`GridFile` or :class:`TrajectoryWriter`; the other hosts
compute and send their rows to it. HDF5's file lock refuses a second writer, which is
reported as a :class:`~landscape.errors.ResultFileError`.

**The original tool's layout** (tomgoldstein/loss-landscape). Its ``plot_surface.py``
allocates ``losses = -np.ones((len(xcoordinates), len(ycoordinates)))`` but fills it as
``losses.ravel()[ind] = loss``, where ``ind`` and the coordinates come from
``scheduler.get_unplotted_indices``: ``np.meshgrid(xcoordinates, ycoordinates)`` (``xy``
indexing, shape ``(ny, nx)``) raveled, so flat index ``p`` is the point
``(x[p % nx], y[p // nx])``. The stored *memory order* is therefore row-major ``(ny, nx)``
with ``value[j, i]`` at ``(x[i], y[j])`` -- ours -- even though the declared shape is
``(nx, ny)``; the two coincide on the square grids the original always used. Its
``plot_2D.py`` reads ``X, Y = np.meshgrid(x, y)``, ``Z = f[surf_name][:]`` and calls
``contour(X, Y, Z)``, which needs ``Z.shape == (ny, nx)``: our files satisfy it on any grid
and ``h52vtp.py`` (meshgrid + ravel) agrees. :func:`load` reads original files (no
``format`` attribute) by reshaping every grid dataset to ``(ny, nx)`` in flat order, and
rebuilds the done masks with the original scheduler's rule: a point is unfilled where
``train_loss <= 0`` (``done``) or ``max_eig <= 0`` (``eig_done``); unfilled values (the
original's ``-1``/``+1`` fill) become NaN.

References:
  Li, Xu, Taylor, Studer, Goldstein, "Visualizing the Loss Landscape of Neural Nets",
  NeurIPS 2018 (code: github.com/tomgoldstein/loss-landscape).
  The HDF Group, "HDF5 Dimension Scale Specification and Design Notes", 2005;
  Unidata, "NetCDF-4 format: dimensions as HDF5 dimension scales".
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import errno
import importlib.metadata
import json
import os
import re
import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import h5py
import numpy as np
from jaxtyping import Bool, Float

from landscape._progress import warn
from landscape.errors import ConfigError, DataError, LandscapeError, ResultFileError
from landscape.grid import Grid

PyTree = Any

FORMAT = "landscape-hdf5"
FORMAT_VERSION = 1

#: Root attributes that identify an experiment: a resumed file must agree on each of them.
IDENTITY_ATTRS = ("config", "direction_kind", "norm", "ignore", "bn_mode", "seed")

_PROVENANCE_ATTRS = ("format", "format_version", "landscape_version", "jax_version",
                     "h5py_version", "created")
_X, _Y, _DIRECTIONS = "xcoordinates", "ycoordinates", "directions"
_AXES = ("x", "y")
_FIX = "pass --overwrite to replace it, or --out to write elsewhere"
_TRAJECTORY_KIND = "trajectory"

# ----------------------------------------------------------------------------- helpers


def _one_line(text: object) -> str:
  return " ".join(str(text).split())


def _short(value: object, limit: int = 60) -> str:
  text = _one_line(value if isinstance(value, str) else repr(value))
  return text if len(text) <= limit else text[:limit - 3] + "..."


def _short_list(names: Iterable[str], limit: int = 12) -> str:
  names = list(names)
  shown = ", ".join(names[:limit])
  return (shown + f", ... ({len(names)} in all)") if len(names) > limit else (shown or "none")


def _grid_str(coords: np.ndarray | None) -> str:
  """``a:b:n`` for a grid axis, as the CLI spells it; ``none`` for a missing axis."""
  if coords is None:
    return "none"
  coords = np.asarray(coords)
  if coords.size == 0:
    return "empty"
  text = f"{coords[0]:g}:{coords[-1]:g}:{coords.size}"
  if coords.size > 2 and not np.allclose(np.diff(coords), coords[1] - coords[0]):
    text += " (non-uniform)"
  return text


def _plane_str(xs: np.ndarray, ys: np.ndarray | None) -> str:
  return f"x={_grid_str(xs)}" + ("" if ys is None else f" y={_grid_str(ys)}")


def _h5_error(path: str, exc: BaseException,
              error: type[LandscapeError] = ResultFileError) -> LandscapeError:
  """A one-line landscape error for an h5py failure to open or read ``path``, by its cause."""
  msg = _one_line(exc)
  low = msg.lower()
  if isinstance(exc, FileNotFoundError):
    return error(f"{path} does not exist; check the path")
  if isinstance(exc, IsADirectoryError) or os.path.isdir(path):
    return error(f"{path} is a directory, not an HDF5 file; pass the path of a .h5 file")
  if isinstance(exc, PermissionError):
    return error(f"cannot open {path}: permission denied; fix its permissions or choose "
                 "another path")
  if getattr(exc, "errno", None) == errno.ENOSPC or "no space left" in low:
    return error(f"cannot write {path}: the disk is full; free space and rerun the same "
                 "command (finished points are kept), or choose another --out")
  if isinstance(exc, BlockingIOError) or "unable to lock file" in low:
    return error(f"{path} is locked by another process; one process writes a result file: "
                 "wait for it to finish, or choose another --out")
  if "truncated file" in low:
    m = re.search(r"eof = (\d+).*stored_eof = (\d+)", msg)
    size = f" ({m.group(1)} of {m.group(2)} bytes)" if m else ""
    return error(f"{path} is truncated{size}, e.g. by an interrupted copy or a full disk; "
                 "copy it again, or remove it to recompute")
  if "file signature not found" in low:
    size = os.path.getsize(path) if os.path.isfile(path) else 0
    return error(f"{path} is not an HDF5 file ({'empty' if size == 0 else f'{size} bytes'}); "
                 "pass a .h5 result file")
  return error(f"cannot read {path} as HDF5 ({_short(msg, 120)}); it may be corrupt: remove "
               "it or choose another path")


def _os_error(path: str | os.PathLike, exc: OSError, action: str = "write") -> ResultFileError:
  """A one-line error for a failed OS-level write of ``path`` (full disk, read-only, ...)."""
  path = os.fspath(path)
  code = getattr(exc, "errno", None)
  if code == errno.ENOSPC:
    why = "the disk is full; free space and rerun the same command"
  elif code in (errno.EACCES, errno.EPERM):
    why = "permission denied; fix the permissions or choose another path"
  elif code == errno.EROFS:
    why = "the file system is read-only; choose another path"
  elif code == errno.ENOTDIR:
    why = "a component of the path is a file, not a directory; choose another path"
  elif code == errno.EISDIR:
    why = "it is a directory; pass a file path"
  else:
    why = f"{_short(exc.strerror or exc, 80)}; check the path and free space"
  return ResultFileError(f"cannot {action} {path}: {why}")


def _open_h5(path: str, mode: str, error: type[LandscapeError] = ResultFileError) -> h5py.File:
  try:
    return h5py.File(path, mode)
  except OSError as exc:
    raise _h5_error(path, exc, error) from None


def _encode_attr(key: str, value: Any) -> Any:
  """An attribute value as stored: dicts/lists/tuples as JSON, paths as str."""
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  if isinstance(value, (dict, list, tuple)):
    try:
      return json.dumps(value, sort_keys=True, default=_json_default)
    except TypeError as exc:
      raise ConfigError(f"attribute {key!r} cannot be JSON-encoded ({exc}); pass plain "
                        "str/int/float/bool/list/dict values") from None
  if isinstance(value, (str, bool, int, float, np.generic, np.ndarray)):
    return value
  raise ConfigError(f"attribute {key!r} has unsupported type {type(value).__name__}; pass "
                    "str, int, float, bool, a list or a dict")


def _json_default(value: Any) -> Any:
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  if isinstance(value, os.PathLike):
    return os.fspath(value)
  raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _decode_attr(value: Any) -> Any:
  """A stored attribute as Python: bytes -> str, NumPy scalars -> Python, JSON -> objects."""
  if isinstance(value, bytes):
    value = value.decode("utf-8", "replace")
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, str) and value[:1] in ("{", "["):
    try:
      return json.loads(value)
    except ValueError:
      return value
  return value


def _attrs_dict(obj: h5py.HLObject) -> dict[str, Any]:
  return {key: _decode_attr(value) for key, value in obj.attrs.items()}


def _check_name(kind: str, name: object) -> str:
  if not isinstance(name, str) or not name or name in (".", "..") or "/" in name:
    raise ConfigError(f"{kind} name {name!r} is not a valid HDF5 dataset name; use a "
                      "non-empty name without '/'")
  return name


def _storable(value: Any) -> tuple[np.ndarray, str | None]:
  """A NumPy array h5py can store, and the original dtype name when it had to be cast.

  Extension dtypes of ml_dtypes (bfloat16, float8_*) have kind ``V``; they are stored as
  float32, which holds them exactly, and cast back on reading.
  """
  arr = np.asarray(value)
  if arr.dtype.kind == "V":
    return arr.astype(np.float32), arr.dtype.name
  if arr.dtype.kind not in "biufc":
    raise ConfigError(f"cannot store an array of dtype {arr.dtype}; pass numeric arrays")
  return arr, None


def _flatten(tree: PyTree) -> tuple[list[tuple[str, np.ndarray]], Any]:
  """``[(keystr(path), leaf as NumPy)]`` in tree-flatten order, and the treedef."""
  import jax  # deferred: plotting reads results through this module and never imports jax
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  return [(jax.tree_util.keystr(p), np.asarray(leaf)) for p, leaf in leaves], treedef


def _specs(tree: PyTree) -> tuple[list[tuple[str, tuple[int, ...], np.dtype]], Any]:
  """``[(keystr(path), shape, dtype)]`` of a pytree of arrays or ``jax.ShapeDtypeStruct``s."""
  import jax
  leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
  out = []
  for p, leaf in leaves:
    arr = leaf if hasattr(leaf, "shape") and hasattr(leaf, "dtype") else np.asarray(leaf)
    out.append((jax.tree_util.keystr(p), tuple(arr.shape), np.dtype(arr.dtype)))
  return out, treedef


def _unflatten(treedef: Any, leaves: list[np.ndarray]) -> PyTree:
  import jax
  return jax.tree_util.tree_unflatten(treedef, leaves)


def _leaf_datasets(group: h5py.Group) -> list[h5py.Dataset]:
  """The leaf datasets of a directions/params group, in stored (tree-flatten) order."""
  return [group[name] for name in sorted(group.keys())]


def _leaf_path(ds: h5py.Dataset) -> str:
  return str(_decode_attr(ds.attrs.get("path", ds.name)))


def _cast(arr: np.ndarray, dtype: np.dtype) -> np.ndarray:
  return arr.astype(dtype, copy=False) if arr.dtype != dtype else arr


def _match_leaves(group: h5py.Group, like: PyTree, path: str,
                  what: str) -> tuple[list[h5py.Dataset], Any, list[tuple]]:
  """Stored leaf datasets in ``like``'s leaf order, matched by their ``path`` attr, with
  ``like``'s treedef and leaf specs ``(path, shape, dtype)``."""
  like_leaves, treedef = _specs(like)
  stored = {_leaf_path(ds): ds for ds in _leaf_datasets(group)}
  wanted = [p for p, _, _ in like_leaves]
  missing = [p for p in wanted if p not in stored]
  if missing:
    raise ResultFileError(
        f"{path}: {what} has no leaf {missing[0]} ({len(missing)} missing; stored leaves: "
        f"{_short(_short_list(stored), 120)}); pass a `like` pytree of the same model")
  wanted_set = set(wanted)
  extra = [p for p in stored if p not in wanted_set]
  if extra:
    raise ResultFileError(f"{path}: {what} has leaf {extra[0]} that `like` lacks "
                          f"({len(extra)} extra); pass a `like` pytree of the same model")
  return [stored[p] for p in wanted], treedef, like_leaves


# ----------------------------------------------------------------------------- safe writes
# Every file landscape writes goes through this section: new files appear under their
# name complete or not at all (written beside it, then renamed), a command never writes
# onto one of its inputs, and nothing the tool did not create is replaced without
# --overwrite.


def _tmp_path(path: str | os.PathLike) -> str:
  """A temporary sibling of ``path`` that keeps its suffix (matplotlib reads the format)."""
  head, tail = os.path.split(os.fspath(path))
  stem, dot, suffix = tail.rpartition(".")
  name = f".{stem}.tmp-{os.getpid()}.{suffix}" if dot and stem else f".{tail}.tmp-{os.getpid()}"
  return os.path.join(head, name)


def _remove_stale_tmps(path: str) -> None:
  """Remove temporary siblings of ``path`` left by processes that no longer run.

  A command killed while it wrote ``path`` leaves its ``.NAME.tmp-PID.SUFFIX``; the next
  write of the same file (the rerun that resumes) removes it, so a kill leaves nothing
  behind once the command has been rerun. Files of a live process are kept.
  """
  head, tail = os.path.split(path)
  stem, dot, suffix = tail.rpartition(".")
  prefix, end = (f".{stem}.tmp-", f".{suffix}") if dot and stem else (f".{tail}.tmp-", "")
  try:
    names = os.listdir(head or ".")
  except OSError:
    return
  for name in names:
    pid = name[len(prefix):len(name) - len(end)] if name.startswith(prefix) else ""
    if not (name.endswith(end) and pid.isdigit()) or int(pid) == os.getpid():
      continue
    try:
      os.kill(int(pid), 0)
      continue                      # still running: its file is in use
    except ProcessLookupError:
      pass
    except OSError:                 # alive but not ours (EPERM), or unknown: keep it
      continue
    with contextlib.suppress(OSError):
      os.remove(os.path.join(head, name))


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
  """Whether two paths name the same file (links and ``..`` resolved); False if one is missing."""
  try:
    return os.path.samefile(a, b)
  except OSError:
    return os.path.realpath(a) == os.path.realpath(b)


def check_output_dir(path: str | os.PathLike, what: str = "output directory") -> str:
  """Refuse a directory that cannot be created or written, before any work is done.

  ``path`` may not exist yet: its nearest existing ancestor must then be a writable
  directory. Nothing is created.
  """
  path = os.fspath(path)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ResultFileError(f"{what} {path} is an existing file, not a directory; choose "
                          "another path")
  probe = path
  while probe and not os.path.exists(probe):
    parent = os.path.dirname(probe.rstrip(os.sep))
    probe = parent if parent != probe else ""
  probe = probe or "."
  if not os.path.isdir(probe):
    raise ResultFileError(f"cannot create {what} {path}: {probe} is a file, not a directory; "
                          "choose another path")
  if not os.access(probe, os.W_OK | os.X_OK):
    raise ResultFileError(f"cannot write {what} {path}: {probe} is not writable (permission "
                          "denied or a read-only file system); choose another path")
  return path


def check_output(path: str | os.PathLike, *, inputs: Iterable[str | os.PathLike] = (),
                 overwrite: bool = False, derived: bool = False,
                 flag: str = "--out") -> str:
  """Refuse to write ``path`` where that would lose something, before any work is done.

  Refused: a path that is one of the command's ``inputs`` (even with ``overwrite``), a
  directory, an existing file unless ``overwrite`` or ``derived`` (a file this tool wrote
  from the inputs, such as the default figure or export name), and an unwritable
  directory.
  """
  path = os.fspath(path)
  for inp in inputs:
    if same_file(path, inp):
      raise ResultFileError(f"{flag} {path} is the input file {os.fspath(inp)}; writing there "
                            f"would destroy it: choose another {flag}")
  if os.path.isdir(path):
    raise ResultFileError(f"{flag} {path} is a directory; pass a file path")
  if os.path.exists(path) and not (overwrite or derived):
    raise ResultFileError(f"{path} exists; pass --overwrite to replace it, or choose another "
                          f"{flag}")
  check_output_dir(os.path.dirname(path) or ".", "directory")
  return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
  """Yield a temporary sibling of ``path`` to write; on success rename it onto ``path``.

  On any failure the temporary file is removed and ``path`` is untouched; an OS error
  (full disk, read-only directory) becomes a one-line :class:`ResultFileError`.

  Example:
    >>> with atomic_path("figures/contour.png") as tmp:
    ...   fig.savefig(tmp)
  """
  path = os.fspath(path)
  tmp = _tmp_path(path)
  _remove_stale_tmps(path)
  try:
    yield tmp
    os.replace(tmp, path)
  except OSError as exc:
    raise _os_error(path, exc) from None
  finally:
    with contextlib.suppress(OSError):
      os.remove(tmp)


def atomic_write(path: str | os.PathLike, data: str | bytes) -> None:
  """Write ``data`` to ``path`` atomically (temporary sibling, then rename)."""
  with atomic_path(path) as tmp:
    with open(tmp, "wb") as f:
      f.write(data.encode("utf-8") if isinstance(data, str) else data)
      f.flush()
      os.fsync(f.fileno())


def make_dirs(path: str | os.PathLike) -> None:
  """Create a directory and its parents (no error if it exists); a failure is one line."""
  try:
    os.makedirs(path, exist_ok=True)
  except OSError as exc:
    raise _os_error(path, exc, "create directory") from None


def remove_paths(paths: Iterable[str | os.PathLike]) -> None:
  """Remove files and directory trees (missing ones are skipped); a failure is one line."""
  for p in paths:
    try:
      if os.path.isdir(p) and not os.path.islink(p):
        shutil.rmtree(p)
      elif os.path.lexists(p):
        os.remove(p)
    except OSError as exc:
      raise _os_error(p, exc, "remove") from None


def _refuse_locked(path: str) -> None:
  """Never swap a file out from under a live writer: refuse a locked ``path``."""
  if os.path.exists(path):
    try:
      h5py.File(path, "r").close()
    except OSError as exc:
      if isinstance(exc, BlockingIOError) or "unable to lock file" in str(exc).lower():
        raise _h5_error(path, exc) from None


def _create_atomically(path: str, populate) -> None:
  """Write a new HDF5 file with ``populate(f)`` beside ``path``, then rename it onto ``path``."""
  directory = os.path.dirname(path)
  if directory:
    make_dirs(directory)
  _refuse_locked(path)
  with atomic_path(path) as tmp:
    with h5py.File(tmp, "w") as f:
      populate(f)


def _rewrite_atomically(path: str, modify) -> None:
  """Apply ``modify(f)`` to a copy of the result file ``path``, then rename it onto ``path``.

  A kill or a full disk at any moment leaves either the old file or the new one, whole.
  """
  with _open_h5(path, "r") as f:   # a shared lock: refused while another process writes
    _check_format(f, path)
  from landscape import _guards
  _guards.check_disk(os.path.dirname(path) or ".", os.path.getsize(path), f"a copy of {path}",
                     "free space first")
  with atomic_path(path) as tmp:
    shutil.copyfile(path, tmp)
    shutil.copymode(path, tmp)
    with h5py.File(tmp, "r+") as f:
      modify(f)


def _write_provenance(f: h5py.File, kind: str | None = None) -> None:
  from landscape import __version__
  f.attrs["format"] = FORMAT
  f.attrs["format_version"] = FORMAT_VERSION
  if kind is not None:
    f.attrs["kind"] = kind
  f.attrs["landscape_version"] = __version__
  f.attrs["jax_version"] = _package_version("jax")
  f.attrs["h5py_version"] = h5py.__version__
  f.attrs["created"] = datetime.datetime.now(datetime.timezone.utc).isoformat(
      timespec="seconds")


def _package_version(name: str) -> str:
  try:
    return importlib.metadata.version(name)
  except importlib.metadata.PackageNotFoundError:
    return "unknown"


def _check_format(f: h5py.File, path: str) -> None:
  fmt = _decode_attr(f.attrs.get("format"))
  if fmt != FORMAT:
    shown = "missing" if fmt is None else _short(fmt)
    raise ResultFileError(f"{path} is not a landscape result file (format={shown}); "
                          "choose another --out or pass --overwrite")
  version = _decode_attr(f.attrs.get("format_version"))
  if isinstance(version, int) and version > FORMAT_VERSION:
    raise ResultFileError(f"{path} has format_version {version}, newer than this landscape's "
                          f"{FORMAT_VERSION}; upgrade landscape or choose another --out")


def _write_group(f: h5py.File, name: str, arrays: Mapping[str, Any],
                 attrs: Mapping[str, Any] | None, replace: bool) -> None:
  for part in name.split("/"):
    _check_name("group", part)
  if name.split("/")[0] == _DIRECTIONS:
    raise ConfigError(f"group {name!r} is written by GridFile.open(directions=...); choose "
                      "another group name")
  if name in f and not isinstance(f[name], h5py.Group):
    raise ResultFileError(f"{f.filename}: {name!r} is a dataset, not a group; choose another "
                          "group name")
  if replace and name in f:
    del f[name]
  group = f.require_group(name)
  for key, value in arrays.items():
    _check_name("dataset", key)
    if key in group:
      del group[key]
    _create_array(group, key, value)
  for key, value in (attrs or {}).items():
    if value is not None:
      group.attrs[key] = _encode_attr(key, value)
  f.flush()


def _create_array(group: h5py.Group, key: str, value: Any) -> None:
  """One dataset of a free-form group; strings become variable-length UTF-8."""
  if isinstance(value, str):
    group.create_dataset(key, data=value, dtype=h5py.string_dtype("utf-8"))
    return
  if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
    value = np.asarray(value, dtype=object)
  arr = np.asarray(value)
  if arr.dtype.kind in "USO":
    data = np.vectorize(str, otypes=[object])(arr) if arr.size else arr.astype(object)
    group.create_dataset(key, data=data, dtype=h5py.string_dtype("utf-8"))
    return
  arr, orig = _storable(arr)
  ds = group.create_dataset(key, data=arr)
  if orig is not None:
    ds.attrs["dtype"] = orig


def _read_array(ds: h5py.Dataset) -> np.ndarray:
  if h5py.check_string_dtype(ds.dtype) is not None:
    return np.asarray(ds.asstr()[()], dtype=str)
  return np.asarray(ds[()])


def _read_group(group: h5py.Group, prefix: str = "") -> dict[str, np.ndarray]:
  out: dict[str, np.ndarray] = {}
  for key, obj in group.items():
    if isinstance(obj, h5py.Group):
      out.update(_read_group(obj, prefix + key + "/"))
    else:
      out[prefix + key] = _read_array(obj)
  return out


#: Free bytes kept in reserve beyond every write into an open HDF5 file (flushed after
#: each write, so only that write and some metadata are ever dirty). HDF5 cannot
#: recover from a write that fails half way (the file handle can then be neither flushed
#: nor closed, and the process crashes at exit), so a write that would leave less than
#: this free is refused before HDF5 starts it; the file stays as of the last flush.
WRITE_RESERVE = 512 << 10


def _room_to_write(path: str, nbytes: int, kept: str) -> None:
  from landscape import _guards
  free = _guards.free_disk(os.path.dirname(path) or ".")
  if free < nbytes + WRITE_RESERVE:
    raise ResultFileError(f"cannot write {path}: the disk is full ({_guards.human(free)} free); "
                          f"{kept}: free space and rerun the same command to resume")


def _write_failed(path: str, exc: OSError, kept: str) -> ResultFileError:
  """The one-line error for a failed write into an open file (typically a full disk)."""
  low = str(exc).lower()
  if getattr(exc, "errno", None) == errno.ENOSPC or "no space" in low or "write failed" in low:
    return ResultFileError(f"cannot write {path}: the disk is full; {kept}: free space and "
                           "rerun the same command to resume")
  return ResultFileError(f"cannot write {path} ({_short(_one_line(exc), 120)}); {kept}: fix "
                         "the cause and rerun the same command to resume")


def _close(h5: h5py.File, path: str, kept: str) -> None:
  """Close an open file (idempotent); a failed final flush becomes a one-line error."""
  if not h5.id.valid:
    return
  try:
    h5.close()
  except (OSError, RuntimeError) as exc:
    with contextlib.suppress(Exception):
      if h5.id.valid:
        h5.close()
    raise _write_failed(path, exc, kept) from None


# ----------------------------------------------------------------------------- grid store


@dataclasses.dataclass(frozen=True)
class _Request:
  grid: Grid
  fields: tuple[str, ...]
  done: str
  attrs: dict[str, Any]
  directions: tuple[PyTree, ...] | None
  dtype: np.dtype

  @property
  def xs(self) -> np.ndarray:
    return self.grid.xs

  @property
  def ys(self) -> np.ndarray | None:
    return self.grid.ys

  @property
  def shape(self) -> tuple[int, ...]:
    return self.grid.shape


def _request(xs, ys, fields, done, attrs, directions, dtype) -> _Request:
  grid = Grid.of(xs, ys)
  if isinstance(fields, str) or not fields:
    raise ConfigError(f"fields must be a non-empty sequence of names, got {fields!r}; pass "
                      "e.g. fields=('train_loss', 'train_acc')")
  fields = tuple(_check_name("field", n) for n in fields)
  done = _check_name("done", done)
  reserved = {_X, _Y, _DIRECTIONS, done}
  clash = [n for n in fields if n in reserved] + [n for n in set(fields)
                                                   if fields.count(n) > 1]
  if clash:
    raise ConfigError(f"field name {clash[0]!r} is reserved or repeated; field names must be "
                      f"distinct and differ from {sorted(reserved)}")
  dtype = np.dtype(dtype)
  if dtype.kind != "f":
    raise ConfigError(f"dtype {dtype} is not a floating type; pass np.float32 or np.float64")
  ndim = grid.ndim
  if directions is not None:
    directions = tuple(directions)
    if len(directions) != ndim:
      raise ConfigError(f"{len(directions)} directions for a {ndim}-D grid; pass one "
                        "direction per grid axis")
  attrs = dict(attrs or {})
  bad = [k for k in attrs if k in _PROVENANCE_ATTRS or k == "kind"]
  if bad:
    raise ConfigError(f"attribute {bad[0]!r} is written by landscape itself; drop it from attrs")
  encoded = {k: _encode_attr(k, v) for k, v in attrs.items() if v is not None}
  return _Request(grid, fields, done, encoded, directions, dtype)


def _attach_scales(f: h5py.File, ds: h5py.Dataset) -> None:
  if ds.ndim == 2:
    ds.dims[0].attach_scale(f[_Y])
    ds.dims[1].attach_scale(f[_X])
  else:
    ds.dims[0].attach_scale(f[_X])


def _grid_dataset(f: h5py.File, name: str, shape: tuple[int, ...], dtype: Any,
                  fillvalue: Any) -> h5py.Dataset:
  """A grid dataset whose every chunk (one row) is allocated at creation, uncompressed.

  A point write then only overwrites data bytes at addresses fixed in advance: no chunk is
  re-compressed, moved or re-indexed, so a process killed mid-write cannot leave a chunk
  that fails to decompress (the ``done`` mask, written after the values, guards the rest).
  """
  dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
  dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
  chunks = (1, shape[1]) if len(shape) == 2 else shape
  ds = f.create_dataset(name, shape=shape, dtype=dtype, chunks=chunks, fillvalue=fillvalue,
                        dcpl=dcpl)
  _attach_scales(f, ds)
  return ds


def _ensure_grid(f: h5py.File, req: _Request) -> None:
  """Create the missing field and done datasets (NaN / False), chunked one row per chunk."""
  shape = req.shape
  new = [name for name in req.fields if name not in f]
  for name in new:
    _grid_dataset(f, name, shape, req.dtype, np.nan).attrs["done"] = req.done
  if req.done not in f:
    _grid_dataset(f, req.done, shape, bool, False)
  elif new and f[req.done][()].any():
    # A field new to this mask has no values at the points it marks: recompute them all.
    f[req.done][...] = False


def _write_directions(f: h5py.File, directions: Sequence[PyTree]) -> None:
  group = f.require_group(_DIRECTIONS)
  for axis, direction in zip(_AXES, directions):
    sub = group.create_group(axis)
    leaves, treedef = _flatten(direction)
    sub.attrs["treedef"] = str(treedef)
    for i, (path, leaf) in enumerate(leaves):
      arr, orig = _storable(leaf)
      ds = sub.create_dataset(f"{i:04d}", data=arr)
      ds.attrs["path"] = path
      if orig is not None:
        ds.attrs["dtype"] = orig


def _populate(f: h5py.File, req: _Request) -> None:
  _write_provenance(f)
  for key, value in req.attrs.items():
    f.attrs[key] = value
  f.create_dataset(_X, data=req.xs).make_scale(_X)
  if req.ys is not None:
    f.create_dataset(_Y, data=req.ys).make_scale(_Y)
  _ensure_grid(f, req)
  if req.directions is not None:
    _write_directions(f, req.directions)


def _verify(f: h5py.File, path: str, req: _Request) -> None:
  """Refuse an existing file that is foreign or disagrees with the request."""
  _check_format(f, path)
  stored_x = f[_X][()] if _X in f else None
  stored_y = f[_Y][()] if _Y in f else None
  if stored_x is None:
    raise ResultFileError(f"{path} has no xcoordinates; it may be corrupt: {_FIX}")
  for name, stored, wanted in ((_X, stored_x, req.xs), (_Y, stored_y, req.ys)):
    if (stored is None) != (wanted is None) or (
        stored is not None and not np.array_equal(stored, wanted)):
      raise ResultFileError(
          f"{path} holds a grid with {name} {_grid_str(stored)} "
          f"({_plane_str(stored_x, stored_y)}) but the request has {_grid_str(wanted)} "
          f"({_plane_str(req.xs, req.ys)}); {_FIX}")
  for key in IDENTITY_ATTRS:
    if key in req.attrs and key in f.attrs:
      diff = _first_diff(key, _decode_attr(f.attrs[key]), _decode_attr(req.attrs[key]))
      if diff is not None:
        name, stored, wanted = diff
        raise ResultFileError(f"{path} was written with {name}={_short(stored)} but the "
                              f"request has {name}={_short(wanted)}; {_FIX}")
  for name in (*req.fields, req.done):
    if name in f and (not isinstance(f[name], h5py.Dataset) or f[name].shape != req.shape):
      raise ResultFileError(f"{path}: {name!r} has shape {getattr(f[name], 'shape', None)}, "
                            f"not the grid's {req.shape}; it may be corrupt: {_FIX}")
  if req.done in f and f[req.done].dtype != np.bool_:
    raise ResultFileError(f"{path}: done mask {req.done!r} is not boolean; {_FIX}")
  for name in req.fields:
    owner = _decode_attr(f[name].attrs.get("done", req.done)) if name in f else req.done
    if owner != req.done:
      raise ResultFileError(f"{path}: field {name!r} is covered by done mask {owner!r}, not "
                            f"{req.done!r}; pass done={owner!r}, or {_FIX}")
  if req.directions is not None and _DIRECTIONS in f:
    _verify_directions(f[_DIRECTIONS], path, req.directions)


def _first_diff(name: str, stored: Any, wanted: Any) -> tuple[str, Any, Any] | None:
  """The first differing entry of two decoded attributes, as ``(dotted name, a, b)``."""
  if isinstance(stored, dict) and isinstance(wanted, dict):
    # A key the request does not name (e.g. a speed setting that older files recorded in
    # their identity) cannot disagree with it.
    for key in sorted(wanted, key=str):
      if key not in stored:
        return f"{name}.{key}", "<absent>", wanted[key]
      diff = _first_diff(f"{name}.{key}", stored[key], wanted[key])
      if diff is not None:
        return diff
    return None
  return None if stored == wanted else (name, stored, wanted)


def _verify_directions(group: h5py.Group, path: str, directions: Sequence[PyTree]) -> None:
  for axis, direction in zip(_AXES, directions):
    if axis not in group:
      raise ResultFileError(f"{path} stores no direction {axis}; {_FIX}")
    stored = _leaf_datasets(group[axis])
    wanted, _ = _flatten(direction)
    for i in range(max(len(stored), len(wanted))):
      if i >= len(stored) or i >= len(wanted):
        leaf = wanted[i][0] if i < len(wanted) else _leaf_path(stored[i])
        raise ResultFileError(
            f"{path}: stored direction {axis} has {len(stored)} leaves but the request has "
            f"{len(wanted)} (first unmatched leaf {leaf}); {_FIX}")
      leaf_path, leaf = wanted[i]
      stored_path = _leaf_path(stored[i])
      arr = _storable(leaf)[0]
      if stored_path != leaf_path:
        raise ResultFileError(f"{path}: stored direction {axis} has leaf {stored_path} where "
                              f"the request has {leaf_path}; {_FIX}")
      if stored[i].shape != arr.shape or not np.array_equal(
          stored[i][()], arr, equal_nan=True):
        raise ResultFileError(f"{path}: stored direction {axis} differs from the requested one "
                              f"at leaf {leaf_path}; {_FIX}")


def _same_attr(stored: Any, value: Any) -> bool:
  if isinstance(stored, bytes):
    stored = stored.decode()
  try:
    return bool(np.array_equal(np.asarray(stored), np.asarray(value)))
  except (TypeError, ValueError):
    return False


def _unreadable_rows(ds: h5py.Dataset) -> list[int]:
  """Rows (chunks) of a grid dataset that HDF5 cannot read back."""
  if ds.ndim == 1:
    rows = [slice(None)]
  else:
    rows = [slice(j, j + 1) for j in range(ds.shape[0])]
  bad = []
  for j, row in enumerate(rows):
    try:
      ds[row]
    except (OSError, RuntimeError):
      bad.append(j)
  return bad


def _repair_rows(f: h5py.File, path: str) -> None:
  """Reset the grid rows a killed write left unreadable so that they are recomputed.

  Files written before grid chunks were allocated uncompressed used gzip: a process killed
  while HDF5 re-compressed a chunk can leave it undecodable, and every later write to that
  row would fail. Such a row is overwritten
  whole (NaN values, done False): its points are lost and recomputed, the rest is kept.
  """
  masks = {name: f[name] for name in f if isinstance(f[name], h5py.Dataset)
           and f[name].dtype == np.bool_ and f[name].shape and name not in (_X, _Y)}
  fields = {name: f[name] for name in f if isinstance(f[name], h5py.Dataset)
            and "done" in f[name].attrs and f[name].attrs["done"] in masks}
  reset: dict[str, set[int]] = {}
  for name, ds in fields.items():
    bad = _unreadable_rows(ds)
    if bad:
      reset.setdefault(ds.attrs["done"], set()).update(bad)
      for j in bad:
        ds[j if ds.ndim == 2 else slice(None)] = np.nan
  for name, ds in masks.items():
    bad = set(_unreadable_rows(ds)) | reset.get(name, set())
    for j in sorted(bad):
      ds[j if ds.ndim == 2 else slice(None)] = False
    if bad:
      what = "the points" if ds.ndim == 1 else f"row(s) {sorted(bad)} of the points"
      warn(f"{path}: {what} under mask {name!r} could not be read back (a write was "
           "killed mid-chunk); they will be recomputed")


def _extend(f: h5py.File, req: _Request, path: str) -> None:
  """Bring a verified existing file up to the request without touching stored values."""
  _repair_rows(f, path)
  for key, value in req.attrs.items():
    if key in f.attrs and (key in IDENTITY_ATTRS or _same_attr(f.attrs[key], value)):
      continue  # rewriting an unchanged attribute would still grow the file
    f.attrs[key] = value
  _ensure_grid(f, req)
  if req.directions is not None and _DIRECTIONS not in f:
    _write_directions(f, req.directions)
  f.flush()


def check_grid_file(path: str | os.PathLike, *, xs, ys=None,
                    attrs: Mapping[str, Any] | None = None, overwrite: bool = False) -> bool:
  """Refuse, before any work, a request :meth:`GridFile.open` would refuse later.

  Checks that ``path`` can be written (its directory exists or can be created) and that
  an existing file is ours, not locked, and agrees with the grid and the identity
  attributes (directions are compared by :meth:`GridFile.open` once computed).

  Returns:
    Whether ``path`` exists and will be resumed.
  """
  path = os.fspath(path)
  if os.path.isdir(path):
    raise ResultFileError(f"{path} is a directory; pass the path of a .h5 result file as --out")
  check_output_dir(os.path.dirname(path) or ".", "directory")
  if overwrite or not os.path.exists(path):
    if os.path.exists(path):
      _refuse_locked(path)
    return False
  req = _request(xs, ys, ("_",), "done", attrs, None, np.float32)
  with _open_h5(path, "r") as f:
    try:
      _verify(f, path, dataclasses.replace(req, fields=()))
    except (OSError, KeyError, RuntimeError) as exc:
      raise _h5_error(path, exc) from None
  if not os.access(path, os.W_OK):
    raise ResultFileError(f"cannot resume {path}: it is not writable; fix its permissions or "
                          "choose another --out")
  return True


class GridFile:
  """A resumable loss-surface grid in an HDF5 result file (DESIGN §5).

  Points are addressed in row-major flat order: on a 2-D grid point ``p`` is
  ``(x[p % nx], y[p // nx])`` and is stored at ``[p // nx, p % nx]``; on a 1-D grid at
  ``[p]``. :meth:`write` stores a contiguous run of points, marks them done and flushes, so a
  killed sweep resumes from :attr:`done` and loses at most the run in flight.

  One process writes: the caller (host 0 of a multi-host run) owns the writer; HDF5's file
  lock refuses a second one.

  Example:
    >>> with GridFile.open("s.h5", xs=np.linspace(-1, 1, 5), ys=np.linspace(-1, 1, 3),
    ...                    fields=("train_loss",)) as g:
    ...   todo = np.flatnonzero(~g.done.ravel())
    ...   g.write(0, {"train_loss": np.ones(7)})   # points 0..6 span rows 0 and 1

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018.
  """

  def __init__(self, h5: h5py.File, path: str, fields: tuple[str, ...], done: str):
    self._h5, self._path, self._fields, self._done_name = h5, path, fields, done
    self._grid = Grid(np.asarray(h5[_X][()]), np.asarray(h5[_Y][()]) if _Y in h5 else None)

  @classmethod
  def open(cls, path: str | os.PathLike, *, xs: Float[np.ndarray, "nx"] | Sequence[float],
           ys: Float[np.ndarray, "ny"] | Sequence[float] | None = None,
           fields: Sequence[str], done: str = "done",
           attrs: Mapping[str, Any] | None = None,
           directions: Sequence[PyTree] | None = None, overwrite: bool = False,
           dtype: Any = np.float32) -> GridFile:
    """Create a grid file, or resume a compatible existing one.

    A new file gets the provenance attributes (``format``, ``format_version``,
    ``landscape_version``, ``jax_version``, ``h5py_version``, ``created``), every key of
    ``attrs`` (dicts and lists JSON-encoded, ``None`` skipped), the coordinate dimension
    scales, one NaN-filled dataset per field of shape ``(ny, nx)`` (``(nx,)`` in 1-D) with
    ``value[j, i]`` at ``(x[i], y[j])``, the all-False ``done`` mask and, if given, the
    directions (``directions/x``, ``directions/y``: one dataset per leaf with its keystr
    path). It is written beside ``path`` and renamed onto it, so it appears complete or not
    at all.

    An existing file is resumed only if its ``format`` is ours, its grid equals
    ``xs``/``ys`` exactly, its stored directions equal ``directions`` leaf for leaf and the
    identity attributes (``config``, ``direction_kind``, ``norm``, ``ignore``, ``bn_mode``,
    ``seed``) present on both sides agree; else :class:`ResultFileError` and the file is left
    untouched. Missing fields and done masks are then added (e.g. ``max_eig``/``min_eig``
    under ``done="eig_done"`` beside a finished loss surface) without touching stored values;
    a field added under an existing mask that already marks points resets that mask, since
    those points lack the new field. ``overwrite=True`` replaces any existing file.

    Args:
      path: the ``.h5`` file; missing parent directories are created.
      xs: x grid, shape ``(nx,)``.
      ys: y grid, shape ``(ny,)``, or ``None`` for a 1-D grid.
      fields: names of the per-point float datasets, e.g. ``("train_loss", "train_acc")``.
      done: name of the bool mask covering ``fields``.
      attrs: root attributes (``config`` as JSON, ``seed``, ``direction_kind``, ...).
      directions: ``[dx]`` or ``[dx, dy]`` parameter pytrees, one per grid axis.
      overwrite: replace an existing file instead of resuming it.
      dtype: float dtype of new field datasets (float32 default).

    Returns:
      The open :class:`GridFile` (``r+``); close it or use it as a context manager.

    Example:
      >>> g = GridFile.open("s.h5", xs=np.linspace(-1, 1, 51), fields=("train_loss",),
      ...                   attrs={"seed": 0, "norm": "filter"})
    """
    path = os.fspath(path)
    req = _request(xs, ys, fields, done, attrs, directions, dtype)
    if overwrite or not os.path.exists(path):
      _create_atomically(path, lambda f: _populate(f, req))
      h5 = _open_h5(path, "r+")
    else:
      with _open_h5(path, "r") as f:
        try:
          _verify(f, path, req)
        except (OSError, KeyError, RuntimeError) as exc:
          raise _h5_error(path, exc) from None
      h5 = _open_h5(path, "r+")
      try:
        _extend(h5, req, path)
      except BaseException:
        h5.close()
        raise
    return cls(h5, path, req.fields, req.done)

  @property
  def path(self) -> str:
    """The file's path."""
    return self._path

  @property
  def xs(self) -> np.ndarray:
    """The x grid, shape ``(nx,)``."""
    return self._grid.xs.copy()

  @property
  def ys(self) -> np.ndarray | None:
    """The y grid, shape ``(ny,)``, or ``None`` on a 1-D grid."""
    return None if self._grid.ys is None else self._grid.ys.copy()

  @property
  def grid(self) -> Grid:
    """The file's :class:`landscape.grid.Grid`."""
    return self._grid

  @property
  def shape(self) -> tuple[int, ...]:
    """``(ny, nx)`` or ``(nx,)``."""
    return self._grid.shape

  @property
  def fields(self) -> tuple[str, ...]:
    """The fields this writer stores at every :meth:`write`."""
    return self._fields

  @property
  def done(self) -> Bool[np.ndarray, "*grid"]:
    """A copy of the chosen done mask, shape :attr:`shape`."""
    return np.asarray(self._h5[self._done_name][()], dtype=bool)

  def write(self, flat_start: int, values: Mapping[str, Any],
            done: Bool[np.ndarray, "m"] | None = None) -> None:
    """Store a contiguous run of points in row-major flat order, mark them done, flush.

    Point ``p = flat_start + k`` goes to ``[p // nx, p % nx]`` (2-D) or ``[p]`` (1-D); a
    run may span several rows. NaN/inf values are stored as they are and marked done (a
    diverged point is computed).

    Args:
      flat_start: flat index of the run's first point.
      values: one array of shape ``(m,)`` per field of :attr:`fields`.
      done: optional ``(m,)`` bool mask; only points where it is True are written and
        marked done (e.g. to drop the padding of a last chunk).

    Example:
      >>> g.write(0, {"train_loss": np.ones(7)})
    """
    vals, mask, start, m = self._check_run(flat_start, values, done)
    _room_to_write(self._path, m * (len(vals) * 8 + 1), "the points computed so far are kept")
    for index, part in self._grid.rows(start, m):
      try:
        self._write_segment(index, {k: v[part] for k, v in vals.items()},
                            None if mask is None else mask[part])
      except (OSError, RuntimeError) as exc:
        raise self._write_error(exc) from None
    self.flush()

  def write_points(self, flat_indices: Any, values: Mapping[str, Any]) -> None:
    """Store the values of any set of points (e.g. a sweep chunk), mark them done, flush.

    The one way computed points reach a grid file: ``surface.sweep(..., done=g.done,
    on_chunk=g.write_points)`` streams a sweep into the file. The points are written as
    contiguous runs of :meth:`write`, in increasing flat order.

    Args:
      flat_indices: ``(m,)`` distinct flat indices ``p = j·nx + i``, in any order.
      values: one array of shape ``(m,)`` per field of :attr:`fields`, in the order of
        ``flat_indices``; other keys are refused.

    Example:
      >>> g.write_points(np.array([7, 3, 4]), {"train_loss": np.array([0.7, 0.3, 0.4])})
    """
    idx = np.asarray(flat_indices).reshape(-1)
    if idx.dtype.kind not in "iu":
      raise ConfigError(f"write_points() needs integer flat indices, got dtype {idx.dtype}")
    order = np.argsort(idx, kind="stable")
    idx = idx[order]
    if idx.size > 1 and np.any(np.diff(idx) == 0):
      raise ConfigError("write_points() got a flat index twice; pass distinct points")
    vals = {k: np.asarray(v).reshape(-1) for k, v in values.items()}
    bad = {k: v.size for k, v in vals.items() if v.size != idx.size}
    if bad:
      raise ConfigError(f"write_points() got {idx.size} indices but values of sizes {bad}; "
                        "pass one value per point for every field")
    for a, b in Grid.runs(idx):
      self.write(int(idx[a]), {k: v[order[a:b]] for k, v in vals.items()})

  def _write_error(self, exc: OSError) -> ResultFileError:
    return _write_failed(self._path, exc, "the points computed so far are kept")

  def _check_run(self, flat_start, values, done):
    missing = [n for n in self._fields if n not in values]
    unknown = [n for n in values if n not in self._fields]
    if missing or unknown:
      raise ConfigError(f"write() got fields {sorted(values)} but {self._path} is open for "
                        f"{list(self._fields)}; pass one array per field")
    vals = {k: np.asarray(values[k]).reshape(-1) for k in self._fields}
    sizes = {np.asarray(values[k]).size for k in self._fields}
    if len(sizes) != 1:
      raise ConfigError(f"write() values have different lengths {sorted(sizes)}; pass one "
                        "value per point for every field")
    m = sizes.pop()
    total = int(np.prod(self.shape))
    start = int(flat_start)
    if start != flat_start or start < 0 or start + m > total:
      raise ConfigError(f"write() run [{flat_start}, {flat_start}+{m}) lies outside the grid "
                        f"of {total} points; pass 0 <= flat_start <= {total} - m")
    mask = None
    if done is not None:
      mask = np.asarray(done, dtype=bool).reshape(-1)
      if mask.size != m:
        raise ConfigError(f"write() done mask has {mask.size} entries for {m} points; pass "
                          "one bool per point")
    return vals, mask, start, m

  def _write_segment(self, index: tuple, values: dict[str, np.ndarray],
                     mask: np.ndarray | None) -> None:
    mark = self._h5[self._done_name]
    if mask is None or mask.all():
      for name, v in values.items():
        self._h5[name][index] = v
      mark[index] = True
    elif mask.any():
      for name, v in values.items():
        ds = self._h5[name]
        ds[index] = np.where(mask, v.astype(ds.dtype), ds[index])
      mark[index] = mark[index] | mask

  def write_group(self, name: str, arrays: Mapping[str, Any],
                  attrs: Mapping[str, Any] | None = None, replace: bool = True) -> None:
    """(Re)write a group of arrays such as ``hessian``, ``critical`` or ``trajectory``.

    Args:
      name: group name (``"a/b"`` nests).
      arrays: dataset name -> array, scalar, or string / list of strings (stored as
        variable-length UTF-8).
      attrs: group attributes (dicts and lists JSON-encoded).
      replace: drop the existing group first; with ``False`` the given datasets are
        (re)written and the others kept.

    Example:
      >>> g.write_group("hessian", {"eigenvalues_largest": lam, "num_hvps": 13})
    """
    _room_to_write(self._path, sum(np.asarray(v).nbytes for v in arrays.values()),
                   "the points computed so far are kept")
    try:
      _write_group(self._h5, name, arrays, attrs, replace)
    except (OSError, RuntimeError) as exc:
      raise self._write_error(exc) from None
    self.flush()

  def flush(self) -> None:
    """Flush buffered writes to disk."""
    try:
      self._h5.flush()
    except (OSError, RuntimeError) as exc:
      raise self._write_error(exc) from None

  def close(self) -> None:
    """Flush and close the file (idempotent)."""
    _close(self._h5, self._path, "the points computed so far are kept")

  def __enter__(self) -> GridFile:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()

  def __repr__(self) -> str:
    return (f"GridFile({self._path!r}, {_plane_str(self._grid.xs, self._grid.ys)}, "
            f"fields={list(self._fields)}, done={self._done_name!r})")


def write_group(path: str | os.PathLike, name: str, arrays: Mapping[str, Any],
                attrs: Mapping[str, Any] | None = None, replace: bool = True) -> None:
  """Write a group (``hessian``, ``critical``, ``trajectory``) into an existing result file.

  The file is rewritten as a whole (a copy, changed, renamed onto ``path``), so a killed
  process or a full disk leaves the old file or the new one, never a half-written group.

  Args:
    path: a landscape result file (refused if foreign or missing).
    name, arrays, attrs: as :meth:`GridFile.write_group`.
    replace: drop the existing group first; with ``False`` the given datasets (and
      attributes) are (re)written and the group's other datasets kept, e.g. a trace that
      a probe of the eigenvalues alone did not recompute.

  Example:
    >>> write_group("surface.h5", "critical", {"coords": c, "kind": ["min", "saddle"]})
  """
  path = os.fspath(path)
  for part in name.split("/"):
    _check_name("group", part)
  _rewrite_atomically(path, lambda f: _write_group(f, name, arrays, attrs, replace))


def check_result_file(path: str | os.PathLike, *, writable: bool = True) -> str:
  """Refuse a path that is not an existing landscape result file we may add groups to.

  Called before a probe computes anything, so a foreign, corrupt or read-only file is
  reported at once, not after the computation.
  """
  path = os.fspath(path)
  with _open_h5(path, "r") as f:
    fmt = _decode_attr(f.attrs.get("format"))
    if fmt != FORMAT:
      raise ResultFileError(f"{path} is not a landscape result file (format="
                            f"{'missing' if fmt is None else _short(fmt)}); sweep one with "
                            "`landscape surface --run DIR` and pass that file")
    _check_format(f, path)
  if writable:
    directory = os.path.dirname(path) or "."
    if not os.access(path, os.W_OK) or not os.access(directory, os.W_OK | os.X_OK):
      raise ResultFileError(f"cannot add results to {path}: it or its directory is not "
                            "writable; fix the permissions or copy the file elsewhere")
  return path


# ----------------------------------------------------------------------------- reading


@dataclasses.dataclass
class Result:
  """Everything of a result file but the directions, in memory.

  Attributes:
    path: the file read.
    attrs: root attributes, JSON ones decoded (``config`` -> dict).
    xs: x grid ``(nx,)``; ys: y grid ``(ny,)`` or ``None``.
    fields: grid datasets ``(ny, nx)`` or ``(nx,)`` by name (``train_loss``, ``max_eig``,
      ...), ``value[j, i]`` at ``(x[i], y[j])``; NaN where not computed.
    done: done masks by name (``{"done": ..., "eig_done": ...}``).
    groups: ``hessian``, ``critical``, ``trajectory``, ... as name -> array (nested groups
      as ``"sub/name"``).
    is_original_layout: read from a tomgoldstein/loss-landscape file.
    field_done: field name -> the name of the done mask covering it.
    group_attrs: group name -> its decoded attributes (nested groups as ``"sub/name"``).
  """

  path: str
  attrs: dict[str, Any]
  xs: np.ndarray
  ys: np.ndarray | None
  fields: dict[str, np.ndarray]
  done: dict[str, np.ndarray]
  groups: dict[str, dict[str, np.ndarray]]
  is_original_layout: bool = False
  field_done: dict[str, str] = dataclasses.field(default_factory=dict)
  group_attrs: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

  @property
  def grid(self) -> Grid:
    """The file's :class:`landscape.grid.Grid`."""
    return Grid(self.xs, self.ys)

  @property
  def ndim(self) -> int:
    """1 for a line, 2 for a plane."""
    return self.grid.ndim

  @property
  def shape(self) -> tuple[int, ...]:
    """``(ny, nx)`` or ``(nx,)``."""
    return self.grid.shape

  def done_for(self, name: str) -> np.ndarray | None:
    """The mask of computed points of field ``name``: the done mask that covers it (the
    eigenvalue maps have their own), ``None`` when the file has none."""
    key = self.field_done.get(name) or (
        "eig_done" if name in _ORIGINAL_EIG and "eig_done" in self.done else "done")
    return self.done.get(key)


def load(path: str | os.PathLike) -> Result:
  """Read a result file (ours, or the original tool's layout) into memory.

  Grid values are returned as ``(ny, nx)`` arrays with ``value[j, i]`` at ``(x[i], y[j])``.
  Original-layout files (no ``format`` attribute) are reshaped from their flat order and
  get done masks from the original scheduler's rule (see the module docstring).

  Args:
    path: the ``.h5`` file.

  Returns:
    A :class:`Result`.

  Example:
    >>> r = load("results/default/landscape.h5"); r.fields["train_loss"].shape   # (ny, nx)
  """
  path = os.fspath(path)
  with _open_h5(path, "r") as f:
    try:
      return _load(f, path)
    except (OSError, KeyError, RuntimeError) as exc:
      raise _h5_error(path, exc) from None


def _load(f: h5py.File, path: str) -> Result:
  if not isinstance(f.get(_X), h5py.Dataset):
    names = sorted(f.keys())
    raise ResultFileError(f"{path} is not a loss-surface file: it has no xcoordinates (found "
                          f"datasets: {_short_list(names)}); pass a surface file")
  ours = _decode_attr(f.attrs.get("format")) == FORMAT
  if ours:
    _check_format(f, path)
  xs = _read_coords(f[_X], path)
  ys = _read_coords(f[_Y], path) if isinstance(f.get(_Y), h5py.Dataset) else None
  shape = Grid(xs, ys).shape
  result = Result(path=path, attrs=_attrs_dict(f), xs=xs, ys=ys, fields={}, done={},
                  groups={}, is_original_layout=not ours)
  if ours:
    _load_ours(f, result, shape)
  else:
    _load_original(f, result, shape)
  return result


def is_trajectory(path: str | os.PathLike) -> bool:
  """Whether ``path`` is a training trajectory file (:class:`TrajectoryWriter`)."""
  path = os.fspath(path)
  if not os.path.isfile(path) or not h5py.is_hdf5(path):
    return False
  with _open_h5(path, "r") as f:
    return _decode_attr(f.attrs.get("kind")) == _TRAJECTORY_KIND


def load_trajectory(path: str | os.PathLike) -> Result:
  """A training trajectory file as a :class:`Result` without a grid (empty ``xs``): its
  groups other than the parameter snapshots, e.g. ``curvature`` (the Hessian eigenvalues
  tracked during training), for the ``sharpness`` figure of ``landscape plot``.

  Example:
    >>> load_trajectory("results/run/trajectory.h5").groups["curvature"]["lambda_max"]
  """
  path = os.fspath(path)
  with _open_h5(path, "r") as f:
    if _decode_attr(f.attrs.get("kind")) != _TRAJECTORY_KIND:
      raise ResultFileError(f"{path} is not a landscape trajectory file; pass the run's "
                            "trajectory.h5")
    try:
      _check_format(f, path)
      result = Result(path=path, attrs=_attrs_dict(f), xs=np.zeros(0), ys=None, fields={},
                      done={}, groups={})
      for name, obj in f.items():
        if isinstance(obj, h5py.Group) and name != "params":
          result.groups[name] = _read_group(obj)
          result.group_attrs[name] = _attrs_dict(obj)
    except (OSError, KeyError, RuntimeError) as exc:
      raise _h5_error(path, exc) from None
  return result


def _numeric(ds: h5py.Dataset) -> bool:
  return ds.dtype.kind in "biuf"


def _read_coords(ds: h5py.Dataset, path: str) -> np.ndarray:
  if not _numeric(ds) or ds.dtype.kind == "b" or ds.size == 0:
    raise ResultFileError(f"{path}: {ds.name.lstrip('/')} holds {ds.size} values of dtype "
                          f"{ds.dtype}, not numeric grid coordinates; pass a surface file")
  arr = np.asarray(ds[()], dtype=np.float64).reshape(-1)
  if not np.all(np.isfinite(arr)):
    raise ResultFileError(f"{path}: {ds.name.lstrip('/')} holds non-finite coordinates; "
                          "pass a surface file with finite grid coordinates")
  return arr


def _bad_field(path: str, name: str, ds: h5py.Dataset, shape: tuple[int, ...]) -> ResultFileError:
  what = (f"dtype {ds.dtype}, not numbers" if not _numeric(ds)
          else f"shape {ds.shape}, which does not match the grid's {shape}")
  return ResultFileError(f"{path}: grid dataset {name!r} has {what} (ny = len(ycoordinates), "
                         "nx = len(xcoordinates)); fix or remove that dataset")


def _load_ours(f: h5py.File, result: Result, shape: tuple[int, ...]) -> None:
  for name, obj in f.items():
    if isinstance(obj, h5py.Group):
      if name != _DIRECTIONS:
        result.groups[name] = _read_group(obj)
        result.group_attrs[name] = _attrs_dict(obj)
        obj.visititems(lambda sub, o, top=name: result.group_attrs.__setitem__(
            f"{top}/{sub}", _attrs_dict(o)) if isinstance(o, h5py.Group) else None)
    elif name not in (_X, _Y) and ("done" in obj.attrs or name == "done") and (
        obj.shape != shape or not _numeric(obj)):
      raise _bad_field(result.path, name, obj, shape)
    elif name not in (_X, _Y) and obj.shape == shape and _numeric(obj):
      if obj.dtype == np.bool_:
        result.done[name] = np.asarray(obj[()], dtype=bool)
      else:
        result.fields[name] = np.asarray(obj[()])
        result.field_done[name] = str(_decode_attr(obj.attrs.get("done", "done")))


_ORIGINAL_EIG = ("max_eig", "min_eig")
_ORIGINAL_LOSS = ("train_loss", "test_loss", "loss_vals")
_ORIGINAL_GRID = (*_ORIGINAL_LOSS, *_ORIGINAL_EIG, "train_acc", "test_acc", "acc_vals")


def _load_original(f: h5py.File, result: Result, shape: tuple[int, ...]) -> None:
  size = int(np.prod(shape))
  for name, obj in f.items():
    if isinstance(obj, h5py.Group) or name in (_X, _Y):
      continue
    if obj.ndim == len(shape) and obj.size == size and _numeric(obj):
      result.fields[name] = np.asarray(obj[()], dtype=np.float64).reshape(shape)
    elif obj.ndim == 0:  # e.g. dir_file, the path of the direction file
      result.attrs[name] = _decode_attr(obj[()])
    elif name in _ORIGINAL_GRID or (obj.size == size and obj.ndim == len(shape)):
      raise _bad_field(result.path, name, obj, shape)
  if not result.fields:
    names = [n for n in f if n not in (_X, _Y)]
    raise ResultFileError(f"{result.path} holds no numeric dataset of the grid's shape {shape} "
                          f"(datasets: {_short_list(names)}); pass a surface file")
  # The original's scheduler treats a point as unfilled where its value is <= 0 (files are
  # initialized to -1; min_eig to +1).
  loss = next((n for n in _ORIGINAL_LOSS if n in result.fields), None)
  masks = {}
  if loss is not None:
    masks["done"] = ~(result.fields[loss] <= 0)
  if "max_eig" in result.fields:
    masks["eig_done"] = ~(result.fields["max_eig"] <= 0)
  for name, values in result.fields.items():
    owner = "eig_done" if name in _ORIGINAL_EIG else "done"
    if owner in masks:
      result.fields[name] = np.where(masks[owner], values, np.nan)
      result.field_done[name] = owner
    elif name not in _ORIGINAL_EIG:
      result.fields[name] = np.where(values == -1, np.nan, values)
  result.done.update(masks)


def read_directions(path: str | os.PathLike, like: PyTree) -> list[PyTree]:
  """The stored directions ``[dx]`` or ``[dx, dy]``, rebuilt with ``like``'s structure.

  Leaves are matched by their stored keystr ``path`` attribute, so the order of storage
  does not matter; every leaf is cast to the dtype of ``like``'s leaf.

  Args:
    path: a landscape result file written with ``directions``.
    like: a pytree of the model's parameters (arrays or ``jax.ShapeDtypeStruct``s).

  Returns:
    One NumPy-leaved pytree per grid axis.

  Example:
    >>> dx, dy = read_directions("surface.h5", params)
  """
  path = os.fspath(path)
  with _open_h5(path, "r") as f:
    _check_format(f, path)
    if _DIRECTIONS not in f or "x" not in f[_DIRECTIONS]:
      raise ResultFileError(f"{path} stores no directions (group directions/x); recompute the "
                            "surface with `landscape surface`")
    out = []
    for axis in _AXES:
      if axis not in f[_DIRECTIONS]:
        break
      datasets, treedef, likes = _match_leaves(f[_DIRECTIONS][axis], like, path,
                                               f"direction {axis}")
      leaves = []
      for ds, (leaf_path, shape, dtype) in zip(datasets, likes):
        if ds.shape != shape:
          raise ResultFileError(f"{path}: direction {axis} leaf {leaf_path} has shape "
                                f"{ds.shape}, but `like` has {shape}; pass a `like` "
                                "pytree of the same model")
        leaves.append(_cast(ds[()], dtype))
      out.append(_unflatten(treedef, leaves))
    return out


def read_arrays(path: str | os.PathLike, keys: Sequence[str]) -> dict[str, np.ndarray]:
  """Arrays of a user dataset file (``.h5`` with keys such as ``x_train``, ``y_train``).

  Args:
    path: the HDF5 file.
    keys: dataset names (``"group/name"`` reaches into groups).

  Returns:
    ``{key: array}`` in memory.

  Raises:
    DataError: the file is missing or unreadable, or lacks some keys (all named).

  Example:
    >>> arrs = read_arrays("data/my.h5", ["x_train", "y_train"])
  """
  path = os.fspath(path)
  with _open_h5(path, "r", error=DataError) as f:
    missing = [k for k in keys if not isinstance(f.get(k), h5py.Dataset)]
    if missing:
      available = []
      f.visititems(lambda n, o: available.append(n) if isinstance(o, h5py.Dataset) else None)
      raise DataError(f"dataset file {path} lacks keys {missing}; available keys: "
                      f"{_short_list(available)}; fix the keys or the file")
    try:
      return {k: _read_array(f[k]) for k in keys}
    except (OSError, RuntimeError) as exc:
      raise _h5_error(path, exc, DataError) from None


# ----------------------------------------------------------------------------- trajectories


def _trajectory_leaves(f: h5py.File, path: str, like: PyTree):
  _check_format(f, path)
  if _decode_attr(f.attrs.get("kind")) != _TRAJECTORY_KIND or "params" not in f or (
      "epochs" not in f):
    raise ResultFileError(f"{path} is not a landscape trajectory file (no params/epochs); "
                          "pass the run's trajectory.h5")
  datasets, treedef, likes = _match_leaves(f["params"], like, path, "trajectory")
  for ds, (leaf_path, shape, _) in zip(datasets, likes):
    if ds.shape[1:] != shape:
      raise ResultFileError(f"{path}: trajectory leaf {leaf_path} has shape "
                            f"{ds.shape[1:]}, but `like` has {shape}; pass a `like` "
                            "pytree of the same model")
  return datasets, treedef, likes


class TrajectoryWriter:
  """Appends parameter snapshots of a training run to an HDF5 trajectory file.

  Layout: root attrs ``format``, ``kind = "trajectory"``, ...; dataset ``epochs`` ``(T,)``;
  group ``params`` with one dataset ``(T, *leaf.shape)`` per leaf (``"0000"``, ...,
  ``attrs["path"]`` its keystr), all appendable. Every :meth:`append` first drops stored
  snapshots with ``epoch >=`` the new one, so a run resumed from an earlier checkpoint does
  not duplicate epochs, then flushes.

  One process writes (the trainer on host 0).

  Args:
    path: the ``.h5`` file.
    like: a pytree of the model's parameters (fixes leaf paths, shapes and dtypes).
    resume: append to an existing compatible file; ``False`` starts a new trajectory,
      replacing any file at ``path``.

  Example:
    >>> with TrajectoryWriter("run/trajectory.h5", params, resume=False) as w:
    ...   w.append(0, params)

  References:
    Li et al., "Visualizing the Loss Landscape of Neural Nets", NeurIPS 2018 (§7, PCA
    directions of the optimization trajectory).
  """

  def __init__(self, path: str | os.PathLike, like: PyTree, *, resume: bool):
    self._path = os.fspath(path)
    specs, _ = _specs(like)
    self._paths = [p for p, _, _ in specs]
    if resume and os.path.exists(self._path):
      with _open_h5(self._path, "r") as f:
        _trajectory_leaves(f, self._path, like)
    else:
      _create_atomically(self._path, lambda f: self._populate(f, specs))
    self._h5 = _open_h5(self._path, "r+")
    by_path = {_leaf_path(ds): ds for ds in _leaf_datasets(self._h5["params"])}
    self._datasets = [by_path[p] for p in self._paths]

  @staticmethod
  def _populate(f: h5py.File, specs: list[tuple[str, tuple[int, ...], np.dtype]]) -> None:
    _write_provenance(f, kind=_TRAJECTORY_KIND)
    f.create_dataset("epochs", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(256,))
    group = f.create_group("params")
    for i, (leaf_path, shape, dtype) in enumerate(specs):
      stored = np.dtype(np.float32) if dtype.kind == "V" else dtype
      ds = group.create_dataset(f"{i:04d}", shape=(0, *shape), maxshape=(None, *shape),
                                dtype=stored, chunks=(1, *(max(d, 1) for d in shape)))
      ds.attrs["path"] = leaf_path
      if stored != dtype:
        ds.attrs["dtype"] = dtype.name

  @property
  def path(self) -> str:
    return self._path

  @property
  def epochs(self) -> np.ndarray:
    """The stored epochs, shape ``(T,)``."""
    return np.asarray(self._h5["epochs"][()])

  def append(self, epoch: int, params: PyTree) -> None:
    """Store the snapshot of ``epoch``, dropping stored ones with ``epoch >=`` it; flush.

    Args:
      epoch: the epoch number of the snapshot.
      params: a pytree like the writer's ``like``.
    """
    leaves, _ = _flatten(params)
    paths = [p for p, _ in leaves]
    if paths != self._paths:
      first = next((p for p, q in zip(paths, self._paths) if p != q), None) or (
          set(paths) ^ set(self._paths))
      raise ConfigError(f"append() params differ from the trajectory's leaves at {first}; "
                        "pass parameters of the same model")
    epochs = self._h5["epochs"]
    stored = epochs[()]
    keep = int(np.argmax(stored >= epoch)) if np.any(stored >= epoch) else stored.size
    for ds, (leaf_path, leaf) in zip(self._datasets, leaves):
      arr = _storable(leaf)[0]
      if arr.shape != ds.shape[1:]:
        raise ConfigError(f"append() leaf {leaf_path} has shape {arr.shape}, the trajectory "
                          f"stores {ds.shape[1:]}; pass parameters of the same model")
    _room_to_write(self._path, sum(_storable(leaf)[0].nbytes for _, leaf in leaves),
                   "the checkpoints are kept")
    try:
      for ds, (_, leaf) in zip(self._datasets, leaves):
        ds.resize(keep + 1, axis=0)
        ds[keep] = _storable(leaf)[0]
      epochs.resize(keep + 1, axis=0)
      epochs[keep] = int(epoch)
      self._h5.flush()
    except (OSError, RuntimeError) as exc:
      raise _write_failed(self._path, exc, "the checkpoints are kept") from None

  def write_group(self, name: str, arrays: Mapping[str, Any],
                  attrs: Mapping[str, Any] | None = None) -> None:
    """(Re)write a group of per-step arrays beside the snapshots, e.g. ``curvature``
    (the Hessian eigenvalues tracked during training); the group is replaced whole, then
    the file is flushed (as :meth:`append`).

    Args:
      name: group name (not ``params``).
      arrays: dataset name -> array.
      attrs: group attributes (dicts and lists JSON-encoded).
    """
    if name.split("/")[0] == "params":
      raise ConfigError("group 'params' holds the snapshots; choose another group name")
    _room_to_write(self._path, sum(np.asarray(v).nbytes for v in arrays.values()),
                   "the checkpoints are kept")
    try:
      _write_group(self._h5, name, arrays, attrs, True)
    except (OSError, RuntimeError) as exc:
      raise _write_failed(self._path, exc, "the checkpoints are kept") from None

  def close(self) -> None:
    """Flush and close the file (idempotent)."""
    _close(self._h5, self._path, "the checkpoints are kept")

  def __enter__(self) -> TrajectoryWriter:
    return self

  def __exit__(self, *exc_info) -> None:
    self.close()


def read_trajectory_group(path: str | os.PathLike, name: str
                          ) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
  """The arrays and attributes of group ``name`` of a trajectory file (e.g. ``curvature``),
  or None when the file has no such group."""
  path = os.fspath(path)
  with _open_h5(path, "r") as f:
    if _decode_attr(f.attrs.get("kind")) != _TRAJECTORY_KIND:
      raise ResultFileError(f"{path} is not a landscape trajectory file; pass the run's "
                            "trajectory.h5")
    group = f.get(name)
    if not isinstance(group, h5py.Group):
      return None
    try:
      return _read_group(group), _attrs_dict(group)
    except (OSError, KeyError, RuntimeError) as exc:
      raise _h5_error(path, exc) from None


def read_trajectory(path: str | os.PathLike, like: PyTree) -> tuple[np.ndarray, list[PyTree]]:
  """The stored epochs ``(T,)`` and parameter snapshots, rebuilt with ``like``'s structure.

  Args:
    path: a trajectory file written by :class:`TrajectoryWriter`.
    like: a pytree of the model's parameters; leaves are matched by keystr path and cast
      to its dtypes.

  Returns:
    ``(epochs, params_list)`` with ``len(params_list) == T``.

  Example:
    >>> epochs, snaps = read_trajectory("run/trajectory.h5", params)
  """
  path = os.fspath(path)
  with _open_h5(path, "r") as f:
    try:
      datasets, treedef, likes = _trajectory_leaves(f, path, like)
      epochs = np.asarray(f["epochs"][()])
      stacks = [_cast(ds[()], dtype) for ds, (_, _, dtype) in zip(datasets, likes)]
    except (OSError, KeyError, RuntimeError) as exc:
      raise _h5_error(path, exc) from None
  snaps = [_unflatten(treedef, [s[t] for s in stacks]) for t in range(epochs.size)]
  return epochs, snaps

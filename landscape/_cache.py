"""JAX's persistent compilation cache for the ``landscape`` commands.

Every command compiles its functions (a training step, a sweep chunk, the Lanczos step
of the Hessian probes) from scratch, and on a 2-core CPU that is often most of a short
command's time. With the cache, a second ``landscape hessian`` or ``landscape surface``
on the same model loads the compiled executables from disk instead.

* Directory: ``$LANDSCAPE_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/landscape/jax``
  (``~/.cache/landscape/jax``).
* Off: ``LANDSCAPE_NO_CACHE=1`` (any non-empty value but ``0``).
* A directory that cannot be created or written is a warning, and the command runs
  without the cache.

Only the CLI turns it on (:func:`enable`); a research script that imports the library
decides for itself (``jax.config.update("jax_compilation_cache_dir", ...)``).
Entries are keyed by JAX on the computation, the JAX/XLA versions, the flags and the
device, so a stale entry is never used; the directory may be deleted at any time.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax

from landscape import _progress


def cache_dir() -> Path | None:
  """The cache directory the commands use, or ``None`` when it is switched off."""
  if os.environ.get("LANDSCAPE_NO_CACHE", "") not in ("", "0"):
    return None
  explicit = os.environ.get("LANDSCAPE_CACHE_DIR")
  if explicit:
    return Path(explicit).expanduser()
  base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
  return Path(base) / "landscape" / "jax"


def enable() -> Path | None:
  """Point JAX's persistent compilation cache at :func:`cache_dir`; returns it (or ``None``)."""
  path = cache_dir()
  if path is None:
    return None
  try:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".write-test-{os.getpid()}"
    probe.write_bytes(b"")
    probe.unlink()
  except OSError as e:
    _progress.warn(f"compilation cache {path} is not writable ({e.strerror or e}); running "
                   "without it (set LANDSCAPE_CACHE_DIR to a writable directory, or "
                   "LANDSCAPE_NO_CACHE=1 to silence this)")
    return None
  jax.config.update("jax_compilation_cache_dir", str(path))
  # Cache every executable: most of ours compile in well under JAX's default 1 s
  # threshold, and together they are most of a short command's time.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return path

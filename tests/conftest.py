"""Test-suite settings: fast CPU compiles, float32 by default, x64 where asked."""

import os

# Compilation dominates a CPU suite: skip XLA's backend optimizations, tests only.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")
# Tiny dense linear algebra (eigh of 80x80) is slower with OpenBLAS threads on 2 cores.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
# The commands' persistent compilation cache (landscape._cache): a fresh directory per
# session, never the user's; subprocesses (CLI and script tests) share it.
if "LANDSCAPE_CACHE_DIR" not in os.environ:
  import atexit
  import shutil
  import tempfile
  os.environ["LANDSCAPE_CACHE_DIR"] = tempfile.mkdtemp(prefix="landscape-test-cache-")
  atexit.register(shutil.rmtree, os.environ["LANDSCAPE_CACHE_DIR"], ignore_errors=True)

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("landscape", deadline=None, max_examples=25,
                                     print_blob=True)
hypothesis.settings.load_profile("landscape")

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
import jax  # noqa: E402
import pytest  # noqa: E402

from landscape import _cache  # noqa: E402

# Commands called in-process (cli.main) run without the persistent cache: it is a process-wide
# JAX setting, and with it on every later compile of the session is serialized to disk (once,
# on jax 0.10.2, a segfault inside jax's cache write in an unrelated float64 test).
# Subprocesses (CLI, scripts) still share the session's cache; the cache's own tests use the
# real function (REAL_CACHE_ENABLE).
REAL_CACHE_ENABLE = _cache.enable
_cache.enable = lambda: None

hypothesis.settings.register_profile("landscape", deadline=None, max_examples=25,
                                     print_blob=True)
hypothesis.settings.load_profile("landscape")


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
  """Drop every compiled executable after each test module.

  One pytest process compiles thousands of XLA executables, and each keeps memory mappings
  for its code; with them all kept, the full suite crossed Linux's ``vm.max_map_count``
  (65530) late in the session and XLA's compiler segfaulted in whatever test came next.
  """
  yield
  jax.clear_caches()

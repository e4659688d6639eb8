"""Test-suite settings: fast CPU compiles, float32 by default, x64 where asked."""

import os

# Compilation dominates a CPU suite: skip XLA's backend optimizations, tests only.
os.environ.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("MPLBACKEND", "Agg")

import hypothesis  # noqa: E402

hypothesis.settings.register_profile("landscape", deadline=None, max_examples=25,
                                     print_blob=True)
hypothesis.settings.load_profile("landscape")

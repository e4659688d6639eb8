"""`landscape hessian --operator ... --blocks ...` end to end: the HDF5 layout, the block
spectra against a dense block Hessian, the figures, `info`, and the one-line refusals."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from landscape import operators, pipeline

from cli_helpers import assert_user_error, cli, ok

TINY = ["--set", "train.epochs=1", "--set", "data.n_train=128", "--set", "data.n_test=64",
        "--set", "model.kwargs.features=[4]", "--set", "model.kwargs.dense=8"]
PROBES = ["--k", "2", "--set", "hessian.trace_samples=9", "--set", "hessian.density_runs=2",
          "--set", "hessian.density_steps=10", "--set", "hessian.n_samples=128",
          "--set", "hessian.num_steps=60"]


@pytest.fixture(scope="module")
def probed(tmp_path_factory) -> Path:
  run = tmp_path_factory.mktemp("lab") / "run"
  ok("train", "--out", run, *TINY)
  ok("surface", "--run", run, "--x=-1:1:3", "--y=-1:1:3")
  out = ok("hessian", "--run", run, "--operator", "hessian,ggn,residual", "--blocks", "layer",
           *PROBES)
  assert "negative spectral mass" in out and "Gauss-Newton block stem_conv" in out, out
  return run


def _sha(path: Path) -> str:
  return hashlib.sha256(path.read_bytes()).hexdigest()


def test_layout_of_operators_and_blocks(probed):
  with h5py.File(probed / "landscape.h5", "r") as f:
    h = f["hessian"]
    assert [s.decode() if isinstance(s, bytes) else s for s in h["block_names"][()]] == [
        "hidden", "out", "stem_conv"]   # the model's modules, in parameter-leaf order
    for group in ("hessian", "hessian/ggn", "hessian/residual"):
      g = f[group]
      for name in ("eigenvalues_largest", "eigenvalues_smallest", "trace", "density",
                   "negative_mass", "num_hvps"):
        assert name in g, (group, name)
      assert g.attrs["operator"] == (group.split("/")[-1] if "/" in group else "hessian")
      for block in ("hidden", "out", "stem_conv"):
        b = g[f"blocks/{block}"]
        assert "eigenvalues_largest" in b and "trace" in b and "density" in b
        # lists are stored JSON-encoded, as every list attribute of a result file
        assert json.loads(b.attrs["paths"]) == [f"{block}/bias", f"{block}/kernel"]
    # the Gauss-Newton matrix is positive semidefinite (cross-entropy is convex in the
    # logits): its smallest Ritz value is >= -(rounding) relative to its largest
    g = f["hessian/ggn"]
    top = float(g["eigenvalues_largest"][0])
    assert float(g["eigenvalues_smallest"][0]) >= -1e-4 * top
    assert float(g["negative_mass"][()]) <= 1e-3 * float(f["hessian/negative_mass"][()]) + 1e-9
    # A ReLU/max-pool network is piecewise linear in the parameters of any one layer, so the
    # model-curvature part R = H - G of every single-layer block is zero (a.e.): H_BB = G_BB.
    # Nonzero here would mean the block restriction or the G/R split is wrong.
    scale = float(f["hessian/eigenvalues_largest"][0])
    for block in ("hidden", "out", "stem_conv"):
      r = f[f"hessian/residual/blocks/{block}"]
      assert np.max(np.abs(r["eigenvalues_largest"][()])) <= 1e-5 * scale
      np.testing.assert_allclose(f[f"hessian/blocks/{block}/eigenvalues_largest"][()],
                                 f[f"hessian/ggn/blocks/{block}/eigenvalues_largest"][()],
                                 rtol=1e-4)
    # ... while the whole R is indefinite and carries H's negative curvature
    assert float(f["hessian/residual/eigenvalues_smallest"][0]) < -1e-3 * scale


def test_block_eigenvalues_match_the_dense_block_hessian(probed):
  run = pipeline.open_run(probed)
  obj = run.objective("eval")
  data = run.data("train", 128)
  index = operators.resolve_blocks(obj.params, "layer")["stem_conv"]
  loss_b, params_b = operators.restrict(obj.loss_fn, obj.params, index)
  flat, unravel = ravel_pytree(params_b)
  dense = np.linalg.eigvalsh(np.asarray(
      jax.hessian(lambda f: loss_b(unravel(f), data))(flat), np.float64))
  with h5py.File(probed / "landscape.h5", "r") as f:
    stored = f["hessian/blocks/stem_conv/eigenvalues_largest"][()]
    bottom = f["hessian/blocks/stem_conv/eigenvalues_smallest"][()]
  scale = np.max(np.abs(dense))
  # float32 Hessians (the stored probes and this dense reference) agree to ~1e-4 of the scale
  np.testing.assert_allclose(stored, dense[::-1][:2], atol=1e-3 * scale)
  np.testing.assert_allclose(bottom, dense[:2], atol=1e-3 * scale)


def test_info_and_figures(probed):
  text = ok("info", probed / "landscape.h5")
  assert "  ggn (operator)" in text and "block stem_conv" in text and "negative mass" in text
  out = ok("plot", probed / "landscape.h5", "--kind", "blocks,operators", "--format", "png")
  assert "blocks" in out and "operators" in out
  figs = sorted(p.name for p in (probed / "figures").glob("*.png"))
  assert figs == ["landscape_blocks.png", "landscape_operators.png"]
  assert all((probed / "figures" / n).stat().st_size > 5000 for n in figs)


@pytest.mark.parametrize("args,mentions", [
    (["--blocks", "{conv: 'conv*'}"], ["pattern 'conv*' matches no parameter",
                                       "hidden/bias, hidden/kernel, out/bias"]),
    (["--blocks", "rows"], ["--blocks 'rows'", "--blocks layer"]),
    (["--operator", "gauss"], ["'gauss'", "ggn"]),
    (["--operator", "ggn,ggn"], ["names an operator twice"]),
])
def test_bad_operator_or_block_is_one_line_and_changes_nothing(probed, args, mentions):
  before = _sha(probed / "landscape.h5")
  rc, _, err = cli("hessian", "--run", probed, *args, *PROBES)
  assert_user_error(rc, err, *mentions)
  assert _sha(probed / "landscape.h5") == before


def test_config_keys_select_operators_and_named_blocks(probed):
  ok("hessian", "--run", probed, "--set", "hessian.operators=[fisher]", "--set",
     "hessian.blocks={first: 'stem_conv/*', rest: ['hidden/*', 'out/*']}", "--no-density",
     "--no-trace", *PROBES)
  with h5py.File(probed / "landscape.h5", "r") as f:
    assert json.loads(f["hessian/fisher/blocks/rest"].attrs["paths"]) == [
        "hidden/bias", "hidden/kernel", "out/bias", "out/kernel"]
    assert f["hessian/fisher"].attrs["operator"] == "fisher"
    assert float(f["hessian/fisher/eigenvalues_smallest"][0]) >= -1e-4 * float(
        f["hessian/fisher/eigenvalues_largest"][0])

"""Tests of landscape.grid.nonconvexity on synthetic surfaces with known answers."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest

from landscape import io, pipeline
from landscape.errors import ConfigError, DataError
from landscape.grid import Grid, NonConvexity, nonconvexity


@dataclasses.dataclass
class _Res:
  """A minimal stand-in of landscape.io.Result (fields, done_for, groups, grid)."""
  xs: np.ndarray
  ys: np.ndarray | None
  fields: dict
  done: dict = dataclasses.field(default_factory=dict)
  groups: dict = dataclasses.field(default_factory=dict)
  attrs: dict = dataclasses.field(default_factory=dict)

  @property
  def grid(self) -> Grid:
    return Grid(self.xs, self.ys)

  def done_for(self, name):
    return self.done.get("eig_done" if "eig" in name else "done")


def _plane(f, xs, ys, name="train_loss"):
  x, y = np.meshgrid(xs, ys)
  return _Res(np.asarray(xs, float), np.asarray(ys, float), {name: f(x, y)})


def _add_map(res, max_eig, min_eig, *, residual=1e-6, tol=0.01):
  shape = res.grid.shape
  res.fields["max_eig"] = np.broadcast_to(np.asarray(max_eig, float), shape).copy()
  res.fields["min_eig"] = np.broadcast_to(np.asarray(min_eig, float), shape).copy()
  r = np.broadcast_to(np.asarray(residual, float), shape).copy()
  res.fields["max_eig_residual"] = r
  res.fields["min_eig_residual"] = r.copy()
  res.fields["eig_steps"] = np.full(shape, 30.0)
  res.done["eig_done"] = np.ones(shape, dtype=bool)
  res.groups["curvature_map"] = {"tol": np.float64(tol), "max_steps": np.int64(64),
                                 "warm_start": np.int64(1), "num_samples": np.int64(256)}
  return res


XS = np.linspace(-1, 1, 21)
YS = np.linspace(-1, 1, 17)


# ---------------------------------------------------------------- known surfaces


def test_convex_bowl_is_convex_everywhere():
  res = _add_map(_plane(lambda x, y: x ** 2 + 2 * y ** 2, XS, YS), 4.0, 0.2)  # ratio 0.05
  res.done["done"] = np.ones(res.grid.shape, dtype=bool)
  res.fields["train_loss"][3, 17] = 50.0   # garbage under done=False: never used
  res.done["done"][3, 17] = False
  m = nonconvexity(res, radius=1.0)
  assert isinstance(m, NonConvexity) and m.field == "train_loss"
  assert m.ratio_fraction == 0.0
  assert (m.minima, m.saddles, m.maxima) == (1, 0, 0)
  assert m.indefinite_fraction == 0.0
  assert m.num_map_points == m.num_converged == 21 * 17
  assert m.residuals_known and m.tol == 0.01 and m.has_map
  # Not computed: the point itself and the nodes whose stencil reaches it drop out.
  assert 0 < m.num_points < 21 * 17 - 1


def test_bowl_ratio_above_threshold_counts_every_point():
  res = _add_map(_plane(lambda x, y: x ** 2 + 2 * y ** 2, XS, YS), 4.0, -0.8)  # |ratio| 0.2
  assert nonconvexity(res).ratio_fraction == 1.0
  assert nonconvexity(res, threshold=0.25).ratio_fraction == 0.0


def test_saddle_is_indefinite_everywhere():
  m = nonconvexity(_plane(lambda x, y: x ** 2 - y ** 2, XS, YS))
  assert m.indefinite_fraction == 1.0
  assert (m.minima, m.saddles, m.maxima) == (0, 1, 0)
  assert m.num_points == 11 * 9          # |x| <= 0.5, |y| <= 0.5: 11 x 9 nodes
  assert m.central_shape == (9, 11)
  assert not m.has_map and math.isnan(m.ratio_fraction) and m.tol is None


A = np.pi                     # egg crate sin(πx)·sin(πy), period 2
EGG_XS = np.linspace(-2.5, 2.5, 200)   # h ≈ 0.025, nodes off the lines det = 0
EGG_YS = np.linspace(-2.5, 2.5, 200)


def _egg_hessian(x, y):
  sx, sy, cx, cy = np.sin(A * x), np.sin(A * y), np.cos(A * x), np.cos(A * y)
  return -A ** 2 * sx * sy, A ** 2 * cx * cy, -A ** 2 * sx * sy   # fxx, fxy, fyy


def _egg_critical_points(half_x, half_y):
  """Critical points of sin(πx)sin(πy) in |x| <= half_x, |y| <= half_y, analytically.

  ∇f = π(cos πx sin πy, sin πx cos πy) vanishes at the integers (f = 0, Hessian
  [[0, ±π²], [±π², 0]]: saddles) and at the half-integers (f = ±1: maxima at +1,
  minima at −1).
  """
  ints = lambda h: np.arange(-np.floor(h), np.floor(h) + 1)          # noqa: E731
  halves = lambda h: np.arange(-np.floor(h - 0.5) - 0.5, np.floor(h - 0.5) + 1)  # noqa: E731
  saddles = ints(half_x).size * ints(half_y).size
  hx, hy = np.meshgrid(halves(half_x), halves(half_y))
  value = np.sin(A * hx) * np.sin(A * hy)
  return int(np.sum(value < 0)), saddles, int(np.sum(value > 0))


def test_egg_crate_critical_points_and_roughness_match_the_analytic_ones():
  res = _plane(lambda x, y: np.sin(A * x) * np.sin(A * y), EGG_XS, EGG_YS)
  m = nonconvexity(res, radius=0.5)
  expected = _egg_critical_points(1.25, 1.25)
  assert expected == (2, 9, 2)
  assert (m.minima, m.saddles, m.maxima) == expected
  # Area fraction where det Hess = −π⁴ cos π(x+y) cos π(x−y) < 0, on a very fine grid.
  fine = np.linspace(-1.25, 1.25, 2001)
  fxx, fxy, fyy = _egg_hessian(*np.meshgrid(fine, fine))
  area = np.mean(fxx * fyy - fxy ** 2 < 0)
  assert abs(area - 0.6) < 0.01      # far from ½: a swapped sign would read 0.4
  # Nodes within h/2 of the lines det = 0 (length 2√2 per unit area) may go either way.
  h = EGG_XS[1] - EGG_XS[0]
  assert abs(m.indefinite_fraction - area) <= 2 * math.sqrt(2) * h / 2
  # At the same nodes the closed form agrees up to the O(h²) error of the stencil.
  central = EGG_XS[np.abs(EGG_XS) <= 1.25]
  fxx, fxy, fyy = _egg_hessian(*np.meshgrid(central, central))
  assert m.num_points == central.size ** 2
  assert abs(m.indefinite_fraction - np.mean(fxx * fyy - fxy ** 2 < 0)) <= 2 / m.num_points


def test_egg_crate_ratio_fraction_from_its_exact_eigenvalues():
  res = _plane(lambda x, y: np.sin(A * x) * np.sin(A * y), EGG_XS, EGG_YS)
  x, y = np.meshgrid(EGG_XS, EGG_YS)
  fxx, fxy, _ = _egg_hessian(x, y)
  lmax, lmin = fxx + np.abs(fxy), fxx - np.abs(fxy)
  _add_map(res, lmax, lmin, residual=1e-6 * np.abs(lmax))
  m = nonconvexity(res, threshold=0.3)
  central = (np.abs(x) <= 1.25) & (np.abs(y) <= 1.25)
  ratio = np.abs(lmin / lmax)[central]
  assert m.num_map_points == central.sum()
  assert m.ratio_fraction == pytest.approx(np.mean(ratio > 0.3), abs=1e-12)
  assert 0.2 < m.ratio_fraction < 0.99


# ------------------------------------------------------------------ convergence


def _bowl_with_unconverged():
  """Converged points: |ratio| 0.05; four unconverged points: |ratio| 0.9."""
  res = _plane(lambda x, y: x ** 2 + 2 * y ** 2, XS, YS)
  lmin = np.full(res.grid.shape, 0.2)
  r = np.full(res.grid.shape, 1e-6)
  for j, i in ((8, 10), (7, 9), (9, 11), (8, 8)):       # central points
    lmin[j, i], r[j, i] = -3.6, 0.4                     # r = 0.1·|λmax| > 0.01·|λmax|
  return _add_map(res, 4.0, lmin, residual=r)


def test_unconverged_points_are_left_out_of_the_ratio():
  res = _bowl_with_unconverged()
  m = nonconvexity(res)
  assert m.ratio_fraction == 0.0
  assert (m.num_map_points, m.num_converged) == (11 * 9, 11 * 9 - 4)
  assert m.tol == 0.01 and m.residuals_known
  # A looser tolerance (explicit) admits them: the answer changes.
  m = nonconvexity(res, tol=0.2)
  assert m.ratio_fraction == pytest.approx(4 / 99) and m.num_converged == 99


@pytest.mark.parametrize("case", ["tol_nan", "no_group", "no_residuals"])
def test_without_a_tolerance_or_residuals_every_computed_point_counts(case):
  res = _bowl_with_unconverged()
  if case == "tol_nan":
    res.groups["curvature_map"]["tol"] = np.float64(np.nan)
  elif case == "no_group":
    del res.groups["curvature_map"]
  else:
    for k in ("max_eig_residual", "min_eig_residual", "eig_steps"):
      del res.fields[k]
  m = nonconvexity(res)
  assert m.ratio_fraction == pytest.approx(4 / 99) and m.num_converged == 99
  assert m.tol is None and m.residuals_known == (case != "no_residuals")
  if case == "no_residuals":  # an explicit tol cannot be applied without residuals
    assert nonconvexity(res, tol=0.01).ratio_fraction == pytest.approx(4 / 99)


def test_map_points_not_computed_are_left_out():
  res = _bowl_with_unconverged()
  res.done["eig_done"][:, :10] = False        # the left half (x < 0) not computed
  res.fields["min_eig"][:, :10] = -40.0       # garbage there
  m = nonconvexity(res)
  assert m.num_map_points == 6 * 9 and m.ratio_fraction == 0.0


# ---------------------------------------------------------------- central region


def test_radius_selects_the_central_points():
  # (x² − 1)² + y²: minima at (±1, 0), a saddle at the origin.
  xs, ys = np.linspace(-3, 3, 61), np.linspace(-1, 1, 21)
  res = _plane(lambda x, y: (x ** 2 - 1) ** 2 + y ** 2, xs, ys)
  x, _ = np.meshgrid(xs, ys)
  _add_map(res, 4.0, np.where(np.abs(x) <= 0.75, 0.2, -2.0))   # ratio 0.05 inside, 0.5 out
  whole, half, quarter = (nonconvexity(res, radius=r) for r in (1.0, 0.5, 0.25))
  assert (whole.minima, whole.saddles, whole.maxima) == (2, 1, 0)
  assert (half.minima, half.saddles) == (2, 1)              # |x| <= 1.5
  assert (quarter.minima, quarter.saddles) == (0, 1)        # |x| <= 0.75
  assert whole.central_shape == (21, 61) and quarter.central_shape == (5, 15)
  assert quarter.ratio_fraction == 0.0
  assert half.ratio_fraction == pytest.approx(1 - 15 / 31)  # |x| <= 1.5: 31 columns
  assert whole.ratio_fraction == pytest.approx(1 - 15 / 61)
  assert whole.num_map_points == 61 * 21 and quarter.num_map_points == 15 * 5


# ------------------------------------------------------------------------ errors


def test_one_d_results_are_refused():
  res = _Res(XS, None, {"train_loss": XS ** 2})
  with pytest.raises(ConfigError, match="needs a 2-D surface.*1-D line of 21 points"):
    nonconvexity(res)


def test_a_central_region_under_3x3_is_refused():
  res = _plane(lambda x, y: x ** 2 + y ** 2, np.linspace(-1, 1, 5), np.linspace(-1, 1, 5))
  with pytest.raises(DataError, match=r"holds 1 x 1 points.*at least 3 x 3"):
    nonconvexity(res, radius=0.4)
  assert nonconvexity(res, radius=0.5).central_shape == (3, 3)


@pytest.mark.parametrize("kw,match", [
    ({"field": "test_loss"}, "no field 'test_loss'.*fields: train_loss"),
    ({"field": "max_eig"}, "curvature-map dataset"),
    ({"radius": 0.0}, r"radius=0.0 must be in \(0, 1\]"),
    ({"radius": 1.5}, r"radius=1.5 must be in \(0, 1\]"),
    ({"threshold": -0.1}, "threshold=-0.1"),
    ({"tol": 0.0}, "tol=0.0 must be a positive"),
])
def test_bad_arguments_are_refused(kw, match):
  res = _add_map(_plane(lambda x, y: x ** 2 + y ** 2, XS, YS), 2.0, 1.0)
  with pytest.raises(ConfigError, match=match):
    nonconvexity(res, **kw)


def test_field_default_and_missing_loss():
  res = _plane(lambda x, y: x ** 2 - y ** 2, XS, YS, name="loss")
  res.fields["train_loss"] = res.fields["loss"] * 0 + (XS[None, :] ** 2 + YS[:, None] ** 2)
  assert nonconvexity(res).field == "train_loss"
  assert nonconvexity(res, field="loss").indefinite_fraction == 1.0
  res = _add_map(_plane(lambda x, y: x, XS, YS, name="acc"), 1.0, 1.0)
  with pytest.raises(ConfigError, match="no loss field.*pass field="):
    nonconvexity(res)


def test_as_dict_is_json_ready():
  d = nonconvexity(_plane(lambda x, y: x ** 2 - y ** 2, XS, YS)).as_dict()
  assert d["ratio_fraction"] is None and d["indefinite_fraction"] == 1.0
  assert d["central_shape"] == [9, 11]
  assert json.loads(json.dumps(d, allow_nan=False)) == d


# ------------------------------------------------------------- landscape info


def _write_file(path, *, residuals=True, tol=0.01):
  """An 11 x 11 saddle x² − y² with a map: central (5 x 5) |ratio| 0.05, except 0.5 at
  (5, 5), (4, 6) (not converged) and (6, 4) (converged); (0, 0) unconverged, outside."""
  xs, ys = np.linspace(-1, 1, 11), np.linspace(-1, 1, 11)
  x, y = np.meshgrid(xs, ys)
  with io.GridFile.open(path, xs=xs, ys=ys, fields=["train_loss"]) as g:
    g.write_points(np.arange(x.size), {"train_loss": (x ** 2 - y ** 2).ravel()})
  fields = ["max_eig", "min_eig"] + (["max_eig_residual", "min_eig_residual", "eig_steps"]
                                     if residuals else [])
  lmin = np.full(x.shape, 0.1)
  r = np.full(x.shape, 1e-5)
  for at in ((5, 5), (4, 6), (0, 0)):
    lmin[at], r[at] = -1.0, 1.0
  lmin[6, 4] = -1.0
  values = {"max_eig": np.full(x.size, 2.0), "min_eig": lmin.ravel(),
            "max_eig_residual": r.ravel(), "min_eig_residual": np.full(x.size, 1e-5),
            "eig_steps": np.full(x.size, 12.0)}
  with io.GridFile.open(path, xs=xs, ys=ys, fields=fields, done="eig_done") as g:
    if residuals:
      g.write_group("curvature_map", {"tol": tol, "max_steps": 64, "warm_start": 1,
                                      "num_samples": 256})
    g.write_points(np.arange(x.size), {k: values[k] for k in fields})
  return path


def test_info_reports_convergence_and_nonconvexity(tmp_path):
  out = pipeline.run_info(_write_file(tmp_path / "s.h5"))
  lines = out.splitlines()
  assert ("curvature map     118/121 points converged (tol 0.01, max 64 steps, warm start)"
          in lines), out
  assert ("non-convexity     train_loss, central 5 x 5 points (|x|, |y| <= 0.5·max of each "
          "axis)") in lines, out
  # 1 of the 23 converged central points has |ratio| > 0.1 (the 2 unconverged are left out).
  assert (f"  eig_ratio       {1 / 23:.3g}  (fraction of 23 converged (tol 0.01) of 25 map "
          "points with |min_eig/max_eig| > 0.1)") in lines, out
  assert ("  indefinite      1  (fraction of 25 points where the plane's finite-difference "
          "Hessian has det < 0)") in lines, out
  assert "  critical        0 minima, 1 saddles, 0 maxima" in lines, out
  # The lines a script splits into "key value" still do.
  assert dict(line.split(None, 1) for line in lines[2:] if line.strip())


def test_info_of_an_old_map_says_residuals_are_not_stored(tmp_path):
  out = pipeline.run_info(_write_file(tmp_path / "old.h5", residuals=False))
  assert ("curvature map     121 points computed, residuals not stored (computed before "
          "they were recorded)") in out.splitlines()
  assert (f"eig_ratio       {3 / 25:.3g}  (fraction of 25, convergence unknown, map points "
          "with") in out, out


def test_info_of_a_map_without_tolerance(tmp_path):
  out = pipeline.run_info(_write_file(tmp_path / "fixed.h5", tol=np.nan))
  assert "curvature map     121 points computed, no tolerance (64 Lanczos steps each)" in out
  assert f"eig_ratio       {3 / 25:.3g}  (fraction of 25 map points with" in out, out

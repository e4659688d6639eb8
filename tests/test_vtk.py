"""Tests of landscape.vtk: the .vts file parsed back with xml.etree, against NumPy formulas."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from landscape.errors import ConfigError, DataError
from landscape.vtk import LOG_OFFSET, resample_bilinear, write_vts

EPS = np.finfo(np.float64).eps
NX, NY = 5, 3
XS = np.array([-1.0, -0.5, 0.25, 0.5, 2.0])  # non-uniform
YS = np.array([-2.0, 0.0, 1.0])


def _z():
  x, y = np.meshgrid(XS, YS)
  return 1.0 + x ** 2 + 3.0 * y + 10.0 * x * y  # z[j, i] at (XS[i], YS[j])


def _decode(node, root):
  """Values of a DataArray: base64 'binary' (UInt64 byte-count header) or 'ascii'."""
  dtype = {"Float64": "<f8", "UInt8": "u1"}[node.get("type")]
  comps = int(node.get("NumberOfComponents", "1"))
  if node.get("format") == "ascii":
    values = np.array(node.text.split(), dtype=float).astype(dtype)
  else:
    assert root.get("header_type") == "UInt64" and root.get("byte_order") == "LittleEndian"
    raw = base64.b64decode(node.text.strip())
    size = int(np.frombuffer(raw[:8], "<u8")[0])
    assert size == len(raw) - 8
    values = np.frombuffer(raw[8:], dtype)
  return values.reshape(-1, comps) if comps > 1 else values


def _read(path):
  root = ET.parse(path).getroot()
  grid = root.find("StructuredGrid")
  piece = grid.find("Piece")
  arrays = {a.get("Name"): _decode(a, root) for a in piece.find("PointData")}
  points = _decode(piece.find("Points").find("DataArray"), root)
  return root, grid, piece, arrays, points


@pytest.mark.parametrize("encoding", ["binary", "ascii"])
def test_nonsquare_grid_layout_and_values(tmp_path, encoding):
  z = _z()
  path = write_vts(tmp_path / "s.vts", XS, YS, z, encoding=encoding)
  root, grid, piece, arrays, points = _read(path)
  assert root.get("type") == "StructuredGrid"
  assert grid.get("WholeExtent") == f"0 {NX - 1} 0 {NY - 1} 0 0" == piece.get("Extent")
  assert piece.find("PointData").get("Scalars") == "train_loss"
  assert points.shape == (NX * NY, 3)
  for j in range(NY):
    for i in range(NX):
      k = j * NX + i  # VTK order: x fastest
      assert tuple(points[k]) == (XS[i], YS[j], z[j, i])
      assert arrays["train_loss"][k] == z[j, i]
      assert arrays["height"][k] == z[j, i]
  assert arrays["valid"].tolist() == [1] * (NX * NY)


def test_zmax_then_log_as_the_original(tmp_path):
  z = _z()
  zmax = 5.0
  _, _, _, arrays, points = _read(write_vts(tmp_path / "s.vts", XS, YS, z, log=True,
                                            zmax=zmax))
  with np.errstate(invalid="ignore"):
    expected = np.log(np.minimum(z, zmax) + 0.1)  # h52vtp.py: clip, then log(z + 0.1)
  assert LOG_OFFSET == 0.1
  valid = np.isfinite(expected.ravel())
  assert (~valid).any() and (z > zmax).any()  # the test exercises both branches
  np.testing.assert_allclose(points[valid, 2], expected.ravel()[valid], rtol=4 * EPS)
  assert np.isnan(points[~valid, 2]).all()  # log of a value <= -0.1 is written as NaN
  np.testing.assert_array_equal(arrays["valid"], valid.astype(np.uint8))
  np.testing.assert_array_equal(arrays["train_loss"], z.ravel())  # the loss is unclipped


def test_nan_inf_and_masked_points(tmp_path):
  z = np.ma.masked_array(_z(), mask=np.zeros((NY, NX), dtype=bool))
  z[0, 1] = np.nan
  z[2, 3] = np.inf
  z[1, 4] = np.ma.masked
  _, _, _, arrays, points = _read(write_vts(tmp_path / "s.vts", XS, YS, z))
  bad = [0 * NX + 1, 2 * NX + 3, 1 * NX + 4]
  assert np.isnan(points[bad, 2]).all()
  assert arrays["valid"][bad].tolist() == [0, 0, 0] and arrays["valid"].sum() == NX * NY - 3
  assert np.isinf(arrays["train_loss"][2 * NX + 3])
  _, _, _, arrays, _ = _read(write_vts(tmp_path / "c.vts", XS, YS, z, zmax=4.0))
  assert arrays["height"][2 * NX + 3] == 4.0 and arrays["valid"][2 * NX + 3] == 1


def test_interp_resamples_bilinearly(tmp_path):
  scipy_interp = pytest.importorskip("scipy.interpolate")
  z = _z()
  n = 7
  _, grid, _, arrays, points = _read(write_vts(tmp_path / "s.vts", XS, YS, z, interp=n))
  assert grid.get("WholeExtent") == f"0 {n - 1} 0 {n - 1} 0 0"
  xq, yq = np.linspace(-1, 2, n), np.linspace(-2, 1, n)
  gx, gy = np.meshgrid(xq, yq)
  np.testing.assert_allclose(points[:, 0], gx.ravel(), rtol=EPS, atol=EPS)
  np.testing.assert_allclose(points[:, 1], gy.ravel(), rtol=EPS, atol=EPS)
  ref = scipy_interp.RegularGridInterpolator((YS, XS), z, method="linear")
  expected = ref(np.stack([gy.ravel(), gx.ravel()], axis=1))
  np.testing.assert_allclose(arrays["train_loss"], expected, rtol=1e3 * EPS, atol=1e3 * EPS)


@given(coef=hnp.arrays(np.float64, 4, elements=st.floats(-5, 5)),
       steps_x=hnp.arrays(np.float64, st.integers(2, 6), elements=st.floats(0.1, 2.0)),
       steps_y=hnp.arrays(np.float64, st.integers(2, 6), elements=st.floats(0.1, 2.0)),
       q=hnp.arrays(np.float64, (2, 5), elements=st.floats(0, 1)))
def test_bilinear_reproduces_bilinear_functions(coef, steps_x, steps_y, q):
  xs, ys = np.cumsum(steps_x), np.cumsum(steps_y)
  f = lambda x, y: coef[0] + coef[1] * x + coef[2] * y + coef[3] * x * y  # noqa: E731
  gx, gy = np.meshgrid(xs, ys)
  xq = xs[0] + q[0] * (xs[-1] - xs[0])
  yq = ys[0] + q[1] * (ys[-1] - ys[0])
  got = resample_bilinear(xs, ys, f(gx, gy), xq, yq)
  qx, qy = np.meshgrid(xq, yq)
  scale = 1 + np.abs(coef).sum() * (1 + xs[-1]) * (1 + ys[-1])
  np.testing.assert_allclose(got, f(qx, qy), rtol=0, atol=64 * EPS * scale)
  # Decreasing coordinates describe the same surface.
  flipped = resample_bilinear(xs[::-1], ys[::-1], f(gx, gy)[::-1, ::-1], xq, yq)
  np.testing.assert_allclose(flipped, got, rtol=0, atol=64 * EPS * scale)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"z": np.zeros((NX, NY))}, DataError, r"z has shape \(5, 3\)"),
    ({"interp": 1}, ConfigError, "interp=1"),
    ({"interp": 2.5}, ConfigError, "interp=2.5"),
    ({"zmax": float("nan")}, ConfigError, "zmax"),
    ({"encoding": "hex"}, ConfigError, "encoding='hex'"),
    ({"field_name": "valid"}, ConfigError, "field_name='valid'"),
    ({"xs": np.array([0.0, 1.0, 1.0, 2.0, 3.0])}, DataError, "xs is not strictly monotonic"),
])
def test_bad_input_is_a_one_line_error(tmp_path, kwargs, error, match):
  args = {"xs": XS, "ys": YS, "z": _z(), **kwargs}
  with pytest.raises(error, match=match):
    write_vts(tmp_path / "s.vts", args.pop("xs"), args.pop("ys"), args.pop("z"), **args)
  assert not (tmp_path / "s.vts").exists()


def test_pyvista_reads_the_file(tmp_path):
  pv = pytest.importorskip("pyvista")
  z = _z()
  mesh = pv.read(write_vts(tmp_path / "s.vts", XS, YS, z))
  assert mesh.dimensions == (NX, NY, 1)
  np.testing.assert_array_equal(mesh.points[2 * NX + 3], [XS[3], YS[2], z[2, 3]])
  np.testing.assert_array_equal(mesh.point_data["train_loss"], z.ravel())

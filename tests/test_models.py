"""Tests of landscape.models: registry, shapes, one SGD step, stem/head protocol, counts, errors."""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import landscape.models as lm
from landscape.errors import ConfigError, DataError

EPS = float(np.finfo(np.float32).eps)
IMAGE_ONLY = ("resnet", "vgg")  # name prefixes of models that need (n, H, W, C) images

# (id, name, kwargs, input shape, num_outputs): every architecture on each input kind it
# promises (flat features, 8x8 digits, 1-D signals, 32x32x3 CIFAR), tiny batches.
CASES = [
    ("linear-flat", "linear", {}, (4, 64), 1),
    ("mlp-digits-tanh", "mlp", {"widths": (16, 8), "activation": "tanh"}, (4, 8, 8, 1), 10),
    ("cnn-digits", "cnn", {}, (4, 8, 8, 1), 10),
    ("cnn-cifar-bn", "cnn", {"features": (8, 16), "dense": 32, "batchnorm": True},
     (2, 32, 32, 3), 10),
    ("cnn-1d-bn", "cnn", {"batchnorm": True, "activation": "elu"}, (4, 40), 10),
    ("resnet20", "resnet20", {}, (2, 32, 32, 3), 10),
    ("resnet20-noshort", "resnet20_noshort", {}, (2, 32, 32, 3), 10),
    ("vgg9", "vgg9", {}, (2, 32, 32, 3), 10),
]
CASE_IDS = [c[0] for c in CASES]


@functools.cache
def _built(case_id: str):
  """(model, x, variables) for a case, built once per session."""
  _, name, kwargs, shape, k = next(c for c in CASES if c[0] == case_id)
  model = lm.get(name, num_outputs=k, **kwargs)
  x = jnp.asarray(np.random.default_rng(1).standard_normal(shape, np.float32))
  return model, x, lm.init(model, jax.random.key(0), x)


def _has_bn(variables) -> bool:
  return "batch_stats" in variables


# --- shapes and one training step ------------------------------------------------------

@pytest.mark.parametrize("case_id", CASE_IDS)
def test_init_output_shape_and_one_sgd_step(case_id):
  model, x, variables = _built(case_id)
  n, k = x.shape[0], next(c[4] for c in CASES if c[0] == case_id)
  labels = jnp.arange(n) % k
  # Cross-entropy for classifiers; squared error for the regression case (k = 1, where a
  # one-class softmax is constant).
  objective = (optax.softmax_cross_entropy_with_integer_labels if k > 1 else
               lambda out, y: optax.squared_error(out[:, 0], y + 1.0))
  has_bn = _has_bn(variables)
  tx = optax.sgd(1e-2)

  @jax.jit
  def step(params, stats):
    def loss_fn(p):
      out = model.apply({"params": p, **stats}, x, train=True,
                        mutable=["batch_stats"] if has_bn else False)
      logits, new_stats = out if has_bn else (out, stats)
      assert logits.shape == (n, k)  # static shapes: checked while tracing
      return objective(logits, labels).mean(), new_stats
    (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    new_params = optax.apply_updates(params, updates)
    moved = (optax.tree.norm(optax.tree.sub(new_params, params)),
             optax.tree.norm(optax.tree.sub(new_stats, stats)))
    return loss, new_params, new_stats, moved

  stats = {"batch_stats": variables["batch_stats"]} if has_bn else {}
  loss0, params1, stats1, (params_moved, stats_moved) = step(variables["params"], stats)
  loss1 = step(params1, stats1)[0]
  loss0, loss1 = float(loss0), float(loss1)
  assert np.isfinite(loss0) and np.isfinite(loss1)
  assert float(params_moved) > 0
  # A small gradient step on the same batch lowers the loss (a wrong gradient would not).
  assert loss1 < loss0
  # BatchNorm running means start at 0 and move towards the batch means in train mode.
  assert (float(stats_moved) > 0) == has_bn


@functools.cache
def _abstract(name: str, shape: tuple[int, ...] | None = None, **kwargs):
  """(variables, outputs) of initialization as shapes only: traced once, never compiled."""
  model = lm.get(name, num_outputs=10, **kwargs)
  shape = shape or ((2, 32, 32, 3) if name.startswith(IMAGE_ONLY) else (2, 8, 8, 1))
  out, variables = jax.eval_shape(functools.partial(model.init_with_output, train=False),
                                  jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
  return variables, out


@pytest.mark.parametrize("name", lm.names())
def test_every_registered_name_traces_to_n_by_k(name):
  variables, out = _abstract(name)
  assert out.shape == (2, 10) and out.dtype == jnp.float32
  assert lm.num_params(variables) > 0


@pytest.mark.parametrize("name,shape", [
    ("linear", (3, 64)), ("linear", (3, 8, 8, 1)), ("mlp", (3, 64)), ("mlp", (3, 8, 8, 1)),
    ("cnn", (3, 8, 8, 1)), ("cnn", (3, 32, 32, 3)), ("cnn", (3, 40)), ("cnn", (3, 40, 2)),
    ("cnn", (3, 7, 5, 1)),
])
def test_every_input_layout_traces_to_n_by_k(name, shape):
  _, out = _abstract(name, shape)
  assert out.shape == (3, 10)


# --- stem/head factorization -----------------------------------------------------------

@functools.cache
def _call_and_split(case_id: str):
  """Per train mode: ``(__call__(x), head(stem(x)))`` via ``apply(method=...)``, one compile."""
  model, x, variables = _built(case_id)
  mutable = ["batch_stats"] if _has_bn(variables) else False

  @jax.jit
  def both(variables):
    out = {}
    for train in (False, True):
      z = model.apply(variables, x, method="stem")
      out[train] = (model.apply(variables, x, train, mutable=mutable),
                    model.apply(variables, z, train, method="head", mutable=mutable))
    return out
  return both(variables)


@pytest.mark.parametrize("case_id", CASE_IDS)
@pytest.mark.parametrize("train", [False, True])
def test_call_equals_head_of_stem(case_id, train):
  _, x, variables = _built(case_id)
  full, split = _call_and_split(case_id)[train]
  k = next(c[4] for c in CASES if c[0] == case_id)
  has_bn = _has_bn(variables)
  assert (full[0] if has_bn else full).shape == (x.shape[0], k)
  # The same operations in the same order: equal up to a few roundings (XLA may fuse the
  # two paths differently).
  for a, b in zip(jax.tree.leaves(full), jax.tree.leaves(split), strict=True):
    np.testing.assert_allclose(a, b, rtol=8 * EPS, atol=8 * EPS * float(np.abs(a).max()))
  if has_bn:  # head updates the running statistics in train mode only, as __call__ does
    moved = optax.tree.norm(optax.tree.sub(split[1]["batch_stats"], variables["batch_stats"]))
    assert (float(moved) > 0) == train


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_stem_reads_only_stem_param_keys(case_id):
  model, x, variables = _built(case_id)
  keys = lm.stem_param_keys(model)
  assert keys and set(keys) <= set(variables["params"])
  only_stem = {"params": {key: variables["params"][key] for key in keys}}
  np.testing.assert_array_equal(model.apply(only_stem, x, method="stem"),
                                model.apply(variables, x, method="stem"))


def _stem(model, stem_params, x):
  return model.apply({"params": stem_params}, x, method="stem")


@functools.cache
def _linearity_probe(case_id: str):
  """``(θ_s, jit (d1, d2, a, b) -> (|lhs - rhs|, bound))`` for the stem identity of a case."""
  model, x, variables = _built(case_id)
  theta = {key: variables["params"][key] for key in lm.stem_param_keys(model)}
  kernel = next(v["kernel"] for v in theta.values())
  fan_in = math.prod(kernel.shape[:-1]) + 1  # products summed per output, bias included
  absolute = lambda tree: jax.tree.map(jnp.abs, tree)

  @jax.jit
  def probe(d1, d2, a, b):
    lhs = _stem(model, optax.tree.add(theta, optax.tree.scale(a, d1), optax.tree.scale(b, d2)), x)
    rhs = _stem(model, theta, x) + a * _stem(model, d1, x) + b * _stem(model, d2, x)
    # Rounding bound for sums of fan_in products (Higham: gamma_n |x||w| per evaluation,
    # on both sides) plus the few roundings of the combinations: (fan_in + 4) eps times the
    # cancellation-free magnitude stem(|x|; |θ| + |a||d1| + |b||d2|). A stem with any
    # nonlinearity (ReLU, BatchNorm) misses it by orders of magnitude (test below).
    coefficients = optax.tree.add(absolute(theta), optax.tree.scale(jnp.abs(a), absolute(d1)),
                                  optax.tree.scale(jnp.abs(b), absolute(d2)))
    magnitude = _stem(model, coefficients, jnp.abs(x))
    return jnp.abs(lhs - rhs), (fan_in + 4) * EPS * magnitude
  return theta, probe


@pytest.mark.parametrize("case_id", CASE_IDS)
@settings(max_examples=8)
@given(a=st.floats(-3.0, 3.0), b=st.floats(-3.0, 3.0), seed=st.integers(0, 2**16))
def test_stem_is_linear_in_its_params(case_id, a, b, seed):
  theta, probe = _linearity_probe(case_id)
  rng = np.random.default_rng(seed)
  d1, d2 = (jax.tree.map(lambda w: rng.standard_normal(w.shape, np.float32), theta)
            for _ in range(2))
  err, bound = probe(d1, d2, np.float32(a), np.float32(b))
  assert np.all(err <= bound)


def test_stem_linearity_bound_detects_a_nonlinear_layer():
  # The bound above is tight enough to see a nonlinearity: ReLU after the MLP's first layer
  # breaks stem(θ + d) = stem(θ) + stem(d) (here d = -2θ) far beyond it.
  model, x, variables = _built("mlp-digits-tanh")
  theta = {"stem_dense": variables["params"]["stem_dense"]}
  relu_stem = lambda p: nn.relu(_stem(model, p, x))
  d = optax.tree.scale(-2.0, theta)
  err = jnp.abs(relu_stem(optax.tree.add(theta, d)) - relu_stem(theta) - relu_stem(d))
  assert float(err.max()) > 1e3 * EPS * float(jnp.abs(relu_stem(theta)).max())


# --- parameter counts and collections ---------------------------------------------------

def _resnet_count(depth: int, skip: bool, k: int = 10, w: int = 16, c: int = 3) -> int:
  """Closed-form count of the CIFAR ResNet with BatchNorm (He et al. 2016, option B)."""
  n = (depth - 2) // 6
  conv = lambda cin, cout, ks=3: ks * ks * cin * cout
  bn = lambda ch: 2 * ch
  total = conv(c, w) + bn(w) + 4 * w * k + k  # stem conv, its BN, the Dense classifier
  for stage, cout in enumerate((w, 2 * w, 4 * w)):
    cin = w if stage == 0 else cout // 2
    for i in range(n):
      ci = cin if i == 0 else cout
      total += conv(ci, cout) + bn(cout) + conv(cout, cout) + bn(cout)
      if skip and ci != cout:
        total += conv(ci, cout, 1) + bn(cout)
  return total


@pytest.mark.parametrize("depth,skip,expected", [
    (20, True, 272_474), (20, False, 269_722),
    (56, True, 855_770), (56, False, 853_018),
    (110, True, 1_730_714), (110, False, 1_727_962),
])
def test_resnet_param_counts_match_pytorch_reference(depth, skip, expected):
  assert _resnet_count(depth, skip) == expected  # the table in the resnet module docstring
  name = f"resnet{depth}" + ("" if skip else "_noshort")
  assert lm.get(name, num_outputs=10) == lm.get("resnet", num_outputs=10, depth=depth, skip=skip)
  variables, _ = _abstract(name)
  assert lm.num_params(variables) == expected
  assert lm.num_params(variables["params"]) == expected
  # Removing the shortcuts removes exactly the two 1x1 projections and their BN.
  assert skip or expected == _resnet_count(depth, True) - (16 * 32 + 64 + 32 * 64 + 128)


@pytest.mark.parametrize("batchnorm,expected", [(True, 2_789_706), (False, 2_786_890)])
def test_vgg9_param_count_matches_pytorch_reference(batchnorm, expected):
  variables, _ = _abstract("vgg9", batchnorm=batchnorm)
  convs = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256)]
  count = sum(9 * i * o + o for i, o in convs) + (256 * 16 * 256 + 256) + (256 * 10 + 10)
  count += 2 * (sum(o for _, o in convs) + 256) if batchnorm else 0
  assert lm.num_params(variables) == count == expected


@settings(max_examples=15)
@given(widths=st.lists(st.integers(1, 9), max_size=3), d=st.integers(1, 9),
       k=st.integers(1, 4))
def test_mlp_param_count_is_sum_of_dense_layers(widths, d, k):
  model = lm.get("mlp", num_outputs=k, widths=widths)
  variables = jax.eval_shape(lambda key: lm.init(model, key, jnp.zeros((1, d))),
                             jax.random.key(0))
  sizes = [d, *widths, k]
  assert lm.num_params(variables) == sum((i + 1) * o for i, o in zip(sizes, sizes[1:]))


@pytest.mark.parametrize("name,kwargs,has_stats", [
    ("linear", {}, False),
    ("mlp", {}, False),
    ("cnn", {}, False),
    ("cnn", {"batchnorm": True}, True),
    ("resnet20", {}, True),
    ("resnet20", {"batchnorm": False}, False),
    ("resnet56_noshort", {"batchnorm": False}, False),
    ("vgg9", {}, True),
    ("vgg9", {"batchnorm": False}, False),
])
def test_batch_stats_only_for_batchnorm_models(name, kwargs, has_stats):
  variables, _ = _abstract(name, **kwargs)
  assert ("batch_stats" in variables) == has_stats
  assert set(variables) <= {"params", "batch_stats"}
  if name.startswith("resnet"):  # convolutions carry a bias exactly when there is no BN
    assert ("bias" in variables["params"]["stem_conv"]) == (not has_stats)


def test_num_params_counts_leaves():
  params = {"a": {"kernel": np.zeros((3, 4)), "bias": np.zeros(4)}, "b": np.zeros((2, 2, 2))}
  assert lm.num_params(params) == 12 + 4 + 8
  assert lm.num_params({"params": params, "batch_stats": {"mean": np.zeros(100)}}) == 24


# --- building blocks against references -------------------------------------------------

@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_max_pool2_matches_flax_max_pool(padding):
  from landscape.models._common import max_pool2
  shapes = [(2, 8, 8, 3), (2, 7, 5, 2), (2, 40, 3), (2, 5, 1, 2), (2, 1, 1, 4)]
  rng = np.random.default_rng(0)
  xs = [rng.standard_normal(shape, np.float32) for shape in shapes]

  def reference(v):
    window = tuple(2 if s >= 2 else 1 for s in v.shape[1:-1])
    return nn.max_pool(v, window, strides=window, padding=padding) if 2 in window else v

  @jax.jit
  def values_and_grads(xs):
    out = []
    for f in (lambda v: max_pool2(v, padding), reference):
      out.append([(f(v), jax.grad(lambda u: jnp.sum(f(u) ** 2))(v)) for v in xs])
    return out
  ours, ref = values_and_grads(xs)
  for (y, g), (y_ref, g_ref) in zip(ours, ref, strict=True):
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(g, g_ref)  # 2 * max routed to the argmax: exact


@pytest.mark.parametrize("shape,strides", [((2, 6, 5, 3), 2), ((2, 9, 2), 1)])
def test_conv_nd_matches_flax_conv(shape, strides):
  from landscape.models._common import ConvND
  x = np.random.default_rng(0).standard_normal(shape, np.float32)
  ours = ConvND(4, kernel_size=3, strides=strides)
  variables = ours.init(jax.random.key(1), x)
  spatial = len(shape) - 2
  assert variables["params"]["kernel"].shape == (3,) * spatial + (shape[-1], 4)
  ref = nn.Conv(4, (3,) * spatial, strides=strides, padding="SAME")
  # Sums of fan_in + 1 products on both sides: |difference| <= 2 gamma_n |x| * |w|.
  fan_in = 3**spatial * shape[-1] + 1
  magnitude = ref.apply(jax.tree.map(jnp.abs, variables), jnp.abs(x))
  assert np.all(np.abs(ours.apply(variables, x) - ref.apply(variables, x))
                <= fan_in * EPS * magnitude)


def test_batchnorm_running_mean_has_momentum_0_9():
  # ResNet: stem_bn normalizes the stem output z, so after one train-mode pass from the
  # initial mean 0 its running mean is 0.9 * 0 + 0.1 * mean_{n,h,w}(z).
  model, x, variables = _built("resnet20")
  z = np.asarray(model.apply(variables, x, method="stem"), np.float64)
  _, split = _call_and_split("resnet20")[True]
  np.testing.assert_allclose(split[1]["batch_stats"]["stem_bn"]["mean"],
                             0.1 * z.mean(axis=(0, 1, 2)), rtol=64 * EPS, atol=64 * EPS)


@pytest.mark.parametrize("skip", [True, False])
def test_noshort_resnet_has_no_path_around_its_blocks(skip):
  # Zero the last BN of every block: a block's residual branch then outputs 0, so with
  # shortcuts the input still reaches the classifier, and without them nothing does (the
  # logits are the classifier bias whatever the input).
  model = lm.get("resnet", num_outputs=3, depth=8, width=4, skip=skip)
  x = np.random.default_rng(1).standard_normal((2, 8, 8, 3), np.float32)
  # NumPy values on the initialized structure (no JAX RNG to compile): weights N(0, 0.5²),
  # BN running statistics at their initial mean 0 / variance 1.
  abstract = jax.eval_shape(lambda key: lm.init(model, key, x), jax.random.key(1))
  rng = np.random.default_rng(0)
  variables = jax.tree.map(lambda s: 0.5 * rng.standard_normal(s.shape, s.dtype), abstract)
  variables["batch_stats"] = jax.tree.map_with_path(
      lambda path, s: np.full(s.shape, float(path[-1].key == "var"), s.dtype),
      abstract["batch_stats"])
  params = {k: ({**v, "bn2": jax.tree.map(np.zeros_like, v["bn2"])} if k.startswith("blocks")
                else v) for k, v in variables["params"].items()}
  out = np.asarray(jax.jit(model.apply)({**variables, "params": params}, x))
  if skip:  # different inputs, different logits
    assert np.abs(out[0] - out[1]).max() > 1e3 * EPS * np.abs(out).max()
  else:
    np.testing.assert_array_equal(out, np.broadcast_to(params["out"]["bias"], out.shape))


# --- errors -------------------------------------------------------------------------------

@pytest.mark.parametrize("name,kwargs,needle", [
    ("resnet21", {}, "resnet21"),
    ("nope", {}, "vgg9"),
    (42, {}, "42"),
    (["mlp"], {}, "['mlp']"),
    ("mlp", {"width": (3,)}, "widths"),
    ("mlp", {"activation": "swish"}, "swish"),
    ("mlp", {"widths": (64, -1)}, "-1"),
    ("mlp", {"widths": "64"}, "widths"),
    ("linear", {"widths": (3,)}, "num_outputs"),
    ("cnn", {"features": ()}, "features"),
    ("cnn", {"kernel_size": 0}, "kernel_size"),
    ("cnn", {"batchnorm": "yes"}, "batchnorm"),
    ("cnn", {"dense": 2.5}, "2.5"),
    ("resnet", {"depth": 21}, "21"),
    ("resnet", {"skip": 1}, "skip"),
    ("resnet20", {"depth": 56}, "depth"),
    ("resnet56_noshort", {"activation": "tanh"}, "width"),
    ("vgg9", {"batchnorm": None}, "batchnorm"),
    ("vgg9", {"num_outputs": 0}, "num_outputs"),
])
def test_bad_names_and_kwargs_raise_one_line_config_error(name, kwargs, needle):
  kwargs = {"num_outputs": 10, **kwargs}
  with pytest.raises(ConfigError) as info:
    lm.get(name, **kwargs)
  message = str(info.value)
  assert "\n" not in message and needle in message


@pytest.mark.parametrize("name,shape", [("resnet20", (2, 64)), ("vgg9", (2, 8, 8)),
                                        ("cnn", (2, 4, 4, 4, 1)), ("mlp", (5,)),
                                        ("linear", (0, 3))])
def test_wrong_input_rank_raises_data_error(name, shape):
  with pytest.raises(DataError, match=r"shape"):
    lm.init(lm.get(name, num_outputs=3), jax.random.key(0), np.zeros(shape, np.float32))


def test_stem_param_keys_of_a_foreign_module_is_config_error():
  with pytest.raises(ConfigError, match="Dense"):
    lm.stem_param_keys(nn.Dense(3))


def test_names_are_sorted_and_include_the_paper_models():
  names = lm.names()
  assert list(names) == sorted(names)
  assert {"linear", "mlp", "cnn", "resnet", "vgg9", "resnet20", "resnet56", "resnet110",
          "resnet20_noshort", "resnet56_noshort", "resnet110_noshort"} <= set(names)
  assert lm.get("ResNet20", num_outputs=10).depth == 20  # case-insensitive


@pytest.mark.parametrize("skip", [True, False])
def test_resmlp_is_the_dense_basic_block_network(skip):
  """ResMLP without BatchNorm against a NumPy forward pass of its definition; parameter
  counts in closed form (BatchNorm: no hidden biases, a scale and a bias per unit)."""
  m = lm.get("resmlp", num_outputs=3, depth=6, width=5, skip=skip, batchnorm=False)
  x = np.random.default_rng(0).normal(size=(7, 4)).astype(np.float32)
  variables = lm.init(m, jax.random.key(0), x)
  p = jax.tree.map(np.asarray, variables["params"])
  relu = lambda a: np.maximum(a, 0)  # noqa: E731
  h = relu(x @ p["stem_dense"]["kernel"] + p["stem_dense"]["bias"])
  for b in range(2):
    blk = p[f"blocks_{b}"]
    y = relu(h @ blk["dense1"]["kernel"] + blk["dense1"]["bias"])
    y = y @ blk["dense2"]["kernel"] + blk["dense2"]["bias"]
    h = relu(y + h if skip else y)
  want = h @ p["out"]["kernel"] + p["out"]["bias"]
  np.testing.assert_allclose(np.asarray(m.apply(variables, x)), want, rtol=1e-5, atol=1e-6)
  assert lm.num_params(variables) == 4 * 5 + 5 + 2 * 2 * (5 * 5 + 5) + 5 * 3 + 3
  bn = lm.get("resmlp", num_outputs=10, depth=20, width=32, skip=skip)
  assert lm.num_params(lm.init(bn, jax.random.key(0), np.zeros((2, 40), np.float32))) == (
      40 * 32 + 2 * 32 + 9 * (2 * 32 * 32 + 2 * 2 * 32) + 32 * 10 + 10)


def test_resmlp_refuses_an_odd_depth():
  with pytest.raises(ConfigError, match="2n\\+2"):
    lm.get("resmlp", num_outputs=3, depth=7)

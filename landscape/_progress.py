"""Progress of long steps: a tqdm bar on a terminal, periodic log lines otherwise.

* :class:`Progress` reports ``done/total``, the rate and the ETA of a step: on a
  terminal (``sys.stderr.isatty()``) as a tqdm bar on stderr; otherwise as log lines
  (stdout by default) at the first update :data:`FIRST` seconds or more after the
  start, then at least every :data:`INTERVAL` seconds (a background heartbeat covers
  updates that are far apart) and at the end; a step done within :data:`FIRST`
  seconds logs nothing::

    curvature map: rows 12/31 (372/961 points), 2.1 points/s, ETA 4m05s

* :func:`tick` reports from inside compiled code (``lax.while_loop``/``fori_loop``/
  ``scan`` bodies): a ``jax.debug.callback`` to a module-level dispatcher that
  forwards to the innermost open ``Progress(..., ticks=True)`` at run time, and does
  nothing when none is open (jitted functions are cached across calls, so the traced
  code never holds a reporter). Under ``vmap`` a callback whose operands are all
  unbatched (a loop counter, say) fires once per step, not once per mapped element;
  one with batched operands fires once per element.

* :func:`reporting` is the scope in which the library functions (surface sweeps,
  Hessian probes, critical-point scans) report: outside it they are silent (a
  notebook user calling ``surface.evaluate`` gets no lines); the pipeline opens it.

* :func:`warn` writes ``landscape: warning: ...`` to stderr; progress and results go
  to stdout.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax

INTERVAL = 10.0   # seconds between log lines off a terminal (patch it in tests)
FIRST = 1.0       # the first line comes with the first update this long after the start;
                  # a step that ends sooner logs nothing (min(FIRST, interval) is used)

Log = Callable[[str], None]
_scopes: list[Log] = []          # reporting() scopes, innermost last (main thread)
_steps: list["Progress"] = []    # open Progress(ticks=True), innermost last
_steps_lock = threading.Lock()


def warn(message: str) -> None:
  """``landscape: warning: message`` on stderr."""
  print(f"landscape: warning: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def reporting(log: Log = print) -> Iterator[None]:
  """Let the library functions called inside report progress through ``log``."""
  _scopes.append(log)
  try:
    yield
  finally:
    _scopes.remove(log)


def reports(fn: Callable) -> Callable:
  """Decorate a pipeline step ``fn(..., log=print)``: it runs inside ``reporting(log)``."""
  @functools.wraps(fn)
  def wrapper(*args, **kwargs):
    with reporting(kwargs.get("log") or print):
      return fn(*args, **kwargs)
  return wrapper


def active() -> Log | None:
  """The ``log`` of the innermost :func:`reporting` scope, or ``None`` outside one."""
  return _scopes[-1] if _scopes else None


def _on_terminal() -> bool:
  try:
    return sys.stderr.isatty()
  except (AttributeError, ValueError):
    return False


def message(text: str, log: Log | None = None) -> None:
  """A line through ``log`` (default: the reporting scope's), above any open tqdm bar."""
  log = log or active()
  if log is None:
    return
  if _on_terminal() and log is print:
    from tqdm import tqdm
    tqdm.write(text, file=sys.stdout)
  else:
    log(text)


def format_seconds(s: float) -> str:
  """``4.2s``, ``42s``, ``4m05s``, ``1h02m``."""
  if not math.isfinite(s):
    return "?"
  if s < 10:
    return f"{s:.1f}s"
  s = int(round(s))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _format_rate(rate: float) -> str:
  return f"{rate:.0f}" if rate >= 100 else f"{rate:.3g}"


def _format_postfix(postfix: dict[str, Any]) -> str:
  parts = []
  for k, v in postfix.items():
    try:
      v = float(v)
      parts.append(f"{k} {v:.4g}")
    except (TypeError, ValueError):
      parts.append(f"{k} {v}")
  return ", ".join(parts)


class Progress:
  """Progress of one step with ``total`` units: a tqdm bar on a terminal, log lines otherwise.

  Args:
    total: units of the whole step (points, Lanczos steps, training steps, ...).
    unit: their name, plural (``"points"``).
    desc: what runs (``"curvature map"``), the start of every line.
    log: where log lines go (default: the :func:`reporting` scope's, else ``print``).
    interval: seconds between log lines (default :data:`INTERVAL`).
    initial: units already done (a resumed step); the rate counts only new ones.
    label: ``label(done, total) -> str`` replaces ``"done/total unit"`` in the lines
      (e.g. rows of a grid).
    cap: ``total`` is an upper bound (an early-stopping loop): lines say
      ``12 of at most 80 steps`` and the bar is completed at the end.
    ticks: receive :func:`tick` callbacks from compiled code while open.
    enabled: ``False``: a no-op (and no ticks received).
    final: log the final line (off a terminal); ``False`` where the caller logs its own.

  Use as a context manager; :meth:`update` adds units, :meth:`set` sets the count.
  """

  def __init__(self, total: int, unit: str = "steps", desc: str = "", *,
               log: Log | None = None, interval: float | None = None, initial: int = 0,
               label: Callable[[int, int], str] | None = None, cap: bool = False,
               ticks: bool = False, enabled: bool = True, final: bool = True):
    self.total, self.unit, self.desc = max(0, int(total)), unit, desc
    self.log = log or active() or print
    self.interval = INTERVAL if interval is None else float(interval)
    self._first = min(FIRST, self.interval)
    self.n = self.initial = int(initial)
    self.label, self.cap, self.ticks, self.enabled = label, cap, ticks, enabled
    self.final = final
    self.postfix: dict[str, Any] = {}
    self.text = ""
    self.bar = None
    self._lock = threading.RLock()
    self._t0 = time.monotonic()
    self._last_time: float | None = None   # when the last line was logged
    self._last_n: int | None = None        # the count it showed
    self._mark: tuple[float, int] | None = None   # (time, count) of the first update
    self._stop = threading.Event()
    self._heartbeat: threading.Thread | None = None
    self._closed = not enabled
    if not enabled:
      return
    if _on_terminal():
      from tqdm import tqdm
      self.bar = tqdm(total=self.total, initial=self.initial, unit=unit.rstrip("s") or unit,
                      desc=desc, file=sys.stderr, dynamic_ncols=True, leave=True)
    elif self.interval > 0:
      self._heartbeat = threading.Thread(target=self._beat, daemon=True,
                                         name=f"landscape-progress-{desc}")
      self._heartbeat.start()
    if ticks:
      with _steps_lock:
        _steps.append(self)

  # ------------------------------------------------------------------ updates

  def __enter__(self) -> "Progress":
    return self

  def __exit__(self, *exc) -> None:
    self.close()

  def update(self, n: int = 1, *, force: bool = False, text: str | None = None,
             **postfix: Any) -> None:
    """Add ``n`` units; ``text``/``postfix``: extra information shown after the rate."""
    self.set(self.n + n, force=force, text=text, **postfix)

  def set(self, n: int, *, force: bool = False, text: str | None = None,
          **postfix: Any) -> None:
    """Set the count to ``n``; ``force``: log a line now (off a terminal)."""
    if self._closed:
      return
    with self._lock:
      delta = int(n) - self.n
      self.n = int(n)
      if self._mark is None and self.n > self.initial:
        self._mark = (time.monotonic(), self.n)
      if text is not None:
        self.text = text
      if postfix:
        self.postfix = postfix
      if self.bar is not None:
        extra = self._extra()
        if extra:
          self.bar.set_postfix_str(extra, refresh=False)
        if delta:
          self.bar.update(delta)
        return
      now = time.monotonic()
      if (force or (self._last_time is None and now - self._t0 >= self._first)
          or (self._last_time is not None and now - self._last_time >= self.interval)):
        self._emit(now)

  def write(self, text: str) -> None:
    """A line through ``log`` (above the bar on a terminal)."""
    if self.bar is not None:
      from tqdm import tqdm
      tqdm.write(text, file=sys.stdout)
    else:
      self.log(text)

  def close(self) -> None:
    """End the step: the final line (off a terminal, unless just logged); the bar is closed."""
    if self._closed:
      return
    if self.ticks:
      try:
        jax.effects_barrier()   # the callbacks of a finished computation have all run
      except Exception:  # noqa: BLE001 - progress must never break a computation
        pass
    with self._lock:
      self._closed = True
      self._stop.set()
      if self.ticks:
        with _steps_lock:
          if self in _steps:
            _steps.remove(self)
      if self.bar is not None:
        if self.cap and self.n < self.total:
          self.bar.total = self.n
          self.bar.refresh()
        self.bar.close()
      else:
        now = time.monotonic()
        if self.final and self._last_n != self.n and (self._last_time is not None or (
            self.n > self.initial and now - self._t0 >= self._first)):
          self._emit(now)

  # ------------------------------------------------------------------ lines

  def _extra(self) -> str:
    """The bar's postfix: the label, ``text`` and ``postfix``."""
    parts = (self.label(self.n, self.total) if self.label else "", self.text,
             _format_postfix(self.postfix))
    return ", ".join(p for p in parts if p)

  def rate(self, now: float | None = None) -> float | None:
    """Units per second: since the first update once there are two (so that a compile
    before the first unit does not count), else since the start (``None`` with ``ticks``,
    whose first update comes after the loop's compile); ``None`` before any update."""
    now = time.monotonic() if now is None else now
    if self._mark is not None and self.n > self._mark[1] and now > self._mark[0]:
      return (self.n - self._mark[1]) / (now - self._mark[0])
    if self.ticks:   # the first tick comes after the compile of the loop: no rate from it
      return None
    done, elapsed = self.n - self.initial, now - self._t0
    return done / elapsed if done > 0 and elapsed > 0 else None

  def line(self, now: float | None = None) -> str:
    """The current log line."""
    now = time.monotonic() if now is None else now
    elapsed = now - self._t0
    n, total = self.n, self.total
    if self.label is not None:
      count = self.label(n, total)
    elif self.cap:
      count = f"{n} of at most {total} {self.unit}"
    else:
      count = f"{n}/{total} {self.unit}"
    parts = [count]
    rate = self.rate(now)
    if rate is not None:
      parts.append(f"{_format_rate(rate)} {self.unit}/s")
    if self._closed or n >= total:
      parts.append(f"in {format_seconds(elapsed)}")
    elif rate is not None:
      eta = format_seconds((total - n) / rate)
      parts.append(f"ETA <= {eta}" if self.cap else f"ETA {eta}")
    else:
      parts.append(f"{format_seconds(elapsed)} elapsed")
    for extra in (self.text, _format_postfix(self.postfix)):
      if extra:
        parts.append(extra)
    return f"{self.desc}: {', '.join(parts)}" if self.desc else ", ".join(parts)

  def _emit(self, now: float) -> None:
    self._last_time, self._last_n = now, self.n
    self.log(self.line(now))

  def _beat(self) -> None:
    while not self._stop.wait(self.interval):
      with self._lock:
        if self._closed:
          return
        now = time.monotonic()
        if now - (self._last_time if self._last_time is not None else self._t0) >= self.interval:
          self._emit(now)

  # ------------------------------------------------------------------ ticks

  def _tick(self, value: int, add: bool, postfix: dict[str, Any]) -> None:
    self.set(self.n + value if add else value, **postfix)


def progress(total: int, unit: str, desc: str, *, enabled: bool | None = None,
             **kwargs: Any) -> Progress:
  """A :class:`Progress` that reports only inside :func:`reporting` (or if ``enabled``)."""
  on = active() is not None if enabled is None else bool(enabled)
  return Progress(total, unit, desc, enabled=on, **kwargs)


# --------------------------------------------------------------- compiled code

def _current() -> Progress | None:
  with _steps_lock:
    return _steps[-1] if _steps else None


def _on_set(value, *deps, **postfix) -> None:
  _dispatch(value, False, postfix)


def _on_add(value, *deps, **postfix) -> None:
  _dispatch(value, True, postfix)


def _dispatch(value, add: bool, postfix: dict[str, Any]) -> None:
  reporter = _current()
  if reporter is None:
    return
  try:
    reporter._tick(int(value), add, {k: float(v) for k, v in postfix.items()})
  except Exception:  # noqa: BLE001 - progress must never break a computation
    pass


def tick(value, *, add: bool = False, after: Any = None, **postfix: Any) -> None:
  """From traced code: set (or with ``add``, advance) the innermost ticking :class:`Progress`.

  ``value`` is a scalar (a loop counter); ``after`` an array the callback waits for
  (so that it fires once that value is computed; pass a scalar, it is copied to the
  host); ``postfix`` scalars are shown after the rate. A no-op at run time when no
  ``Progress(..., ticks=True)`` is open. Keep the operands unbatched under ``vmap``
  (one call per step rather than per mapped element).
  """
  deps = () if after is None else (after,)
  jax.debug.callback(_on_add if add else _on_set, value, *deps, **postfix)

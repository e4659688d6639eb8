"""Running the ``landscape`` CLI from tests: in-process calls and the one-line-error check."""

import contextlib
import io
import os
import traceback

from landscape.cli import main


def cli(*argv: str | os.PathLike) -> tuple[int, str, str]:
  """``landscape ARGV`` in-process: (exit status, stdout, stderr).

  An exception escaping :func:`main` is what a real process shows as a traceback and
  exit status 1: it is reported that way instead of erroring the test.
  """
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      rc = main([os.fspath(a) for a in argv])
    except SystemExit as e:  # argparse: --help, usage errors
      rc = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception:  # noqa: BLE001 -- an uncaught error: a traceback in a shell
      traceback.print_exc()
      rc = 1
  return rc, out.getvalue(), err.getvalue()


def ok(*argv) -> str:
  """``landscape ARGV`` that must succeed; its stdout."""
  rc, out, err = cli(*argv)
  assert rc == 0, f"landscape {' '.join(map(str, argv))} -> {rc}\n{out}\n{err}"
  return out


def assert_user_error(rc: int, err: str, *mentions: str) -> str:
  """Exit 2 and exactly one stderr line 'landscape: error: ...' naming the bad value."""
  assert "Traceback" not in err, err
  assert rc == 2, f"exit {rc}: {err}"
  lines = err.strip().splitlines()
  assert len(lines) == 1, err
  assert lines[0].startswith("landscape: error: "), err
  for m in mentions:
    assert m in lines[0], (m, lines[0])
  return lines[0]


def subprocess_env() -> dict[str, str]:
  """The environment of a ``python -m landscape.cli`` subprocess: CPU, fast compiles, Agg."""
  env = dict(os.environ)
  env.setdefault("JAX_PLATFORMS", "cpu")
  env.setdefault("XLA_FLAGS", "--xla_backend_optimization_level=0")
  env.setdefault("MPLBACKEND", "Agg")
  return env

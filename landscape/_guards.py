"""Resource guards: refuse a request that cannot fit in memory or on disk, before it starts.

A grid of 10⁸ points, or a VTK export resampled to 100 000², is a typo more often than an
intent; run as asked, it is killed by the kernel hours later or fills the disk. Every
command that allocates per grid point or writes a file of a size it can predict asks
:func:`check_memory` / :func:`check_disk` first, with an estimate it derives from the
grid, the fields and the model, and refuses in one line: what it needs, what is free,
and how to shrink the request.
"""

from __future__ import annotations

import os
import shutil

from landscape.errors import ResultFileError

#: Fraction of the available memory / free disk a single request may plan to use.
MEMORY_FRACTION = 0.8
DISK_FRACTION = 0.95


def human(nbytes: float) -> str:
  """``1536`` -> ``'1.5 KiB'``."""
  value = float(nbytes)
  for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
    if abs(value) < 1024 or unit == "TiB":
      return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
    value /= 1024
  return f"{value:.1f} TiB"  # pragma: no cover


def available_memory() -> int:
  """Bytes of host memory available to a new allocation.

  The smallest of the kernel's MemAvailable (else the free pages), the cgroup v2 limit
  less its usage (containers, CI runners) and the address-space rlimit (``ulimit -v``).
  """
  limits = []
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          limits.append(int(line.split()[1]) * 1024)
  except (OSError, ValueError, IndexError):
    pass
  if not limits:
    try:
      limits.append(int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")))
    except (ValueError, OSError, AttributeError):
      pass
  try:
    with open("/sys/fs/cgroup/memory.max") as f:
      cap = f.read().strip()
    if cap != "max":
      with open("/sys/fs/cgroup/memory.current") as f:
        limits.append(int(cap) - int(f.read().strip()))
  except (OSError, ValueError):
    pass
  try:
    import resource
    soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    if soft != resource.RLIM_INFINITY:
      limits.append(int(soft))
  except (ImportError, OSError, ValueError):
    pass
  return max(0, min(limits)) if limits else 1 << 62   # unknown: do not refuse


def free_disk(directory: str | os.PathLike) -> int:
  """Free bytes on the file system of ``directory`` (or of its nearest existing ancestor)."""
  probe = os.path.abspath(os.fspath(directory))
  while not os.path.exists(probe):
    parent = os.path.dirname(probe)
    if parent == probe:
      break
    probe = parent
  try:
    return int(shutil.disk_usage(probe).free)
  except OSError:
    return 1 << 62


def check_memory(nbytes: int, what: str, fix: str) -> None:
  """Refuse ``what`` if it needs more than :data:`MEMORY_FRACTION` of the available memory."""
  avail = available_memory()
  if nbytes > MEMORY_FRACTION * avail:
    raise ResultFileError(f"{what} needs about {human(nbytes)} of memory but {human(avail)} "
                          f"is available; {fix}")


def check_disk(directory: str | os.PathLike, nbytes: int, what: str, fix: str) -> None:
  """Refuse ``what`` if it writes more than :data:`DISK_FRACTION` of the free disk."""
  free = free_disk(directory)
  if nbytes > DISK_FRACTION * free:
    raise ResultFileError(f"{what} needs about {human(nbytes)} of disk but {human(free)} is "
                          f"free in {os.fspath(directory)}; {fix}")


# Host bytes a sweep holds per grid point besides its fields: the float64 coordinates
# (2 x 8), the done mask and its copies, the to-do index (8) and the chunk list. Measured:
# ~85 B/point of peak RSS growth for a 4·10⁶-point 1-D `landscape surface` with 4 fields
# (this 2-core AMD EPYC), while a 10⁸-point one was killed at 22 GB (~220 B/point), so the
# estimate takes the larger rate.
SWEEP_BYTES_PER_POINT = 128
FIELD_BYTES_PER_POINT = 8 * 3   # float64 values, the chunk copies and the file's buffers


def sweep_memory(num_points: int, num_fields: int) -> int:
  """Estimated host bytes of a sweep of ``num_points`` storing ``num_fields`` per point."""
  return num_points * (SWEEP_BYTES_PER_POINT + FIELD_BYTES_PER_POINT * num_fields)


def grid_file_bytes(num_points: int, num_fields: int, field_bytes: int = 4) -> int:
  """Upper bound of a grid file's size: every field uncompressed plus the done mask."""
  return num_points * (num_fields * field_bytes + 1) + (1 << 20)


def check_grid(num_points: int, num_fields: int, directory: str | os.PathLike, *,
               what: str, extra_disk: int = 0, new_file: bool = True) -> None:
  """Refuse a sweep of ``num_points`` grid points that cannot fit in memory or on disk."""
  fix = ("use fewer grid points (the num of --x/--y min:max:num)")
  check_memory(sweep_memory(num_points, num_fields), what, fix)
  if new_file:
    check_disk(directory, grid_file_bytes(num_points, num_fields) + extra_disk, what, fix)

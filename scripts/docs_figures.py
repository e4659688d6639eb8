"""Smoke images of every plot kind for reviewers: docs/figures/*.png.

Runs the default experiment at a small size through the same pipeline as
``landscape run`` and renders each kind the results support, so a reviewer sees
what every figure looks like. Thin driver: no maths here.

  python scripts/docs_figures.py [--out docs/figures] [--work /tmp/landscape-docs]
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from landscape import io, pipeline, plotting


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument("--out", default="docs/figures")
  ap.add_argument("--work", default="/tmp/landscape-docs")
  ap.add_argument("--dpi", type=float, default=110)
  a = ap.parse_args(argv)
  work, out = Path(a.work), Path(a.out)
  shutil.rmtree(work, ignore_errors=True)
  out.mkdir(parents=True, exist_ok=True)
  run = work / "run"
  cfg = pipeline.resolve(None, ["hessian.n_samples=256", "critical.n_samples=128"])
  pipeline.run_train(cfg, run)
  main_h5 = pipeline.run_surface(run, overrides=["surface.x=-1:1:21", "surface.y=-1:1:21"])
  pipeline.run_hessian(main_h5, run_dir=run)
  pipeline.run_critical(main_h5, run_dir=run, starts=3,
                        overrides=["critical.max_steps=10", "critical.tol=1e-4"])
  curv = pipeline.run_surface(run, out=work / "curvature.h5",
                              overrides=["surface.x=-1:1:7", "surface.y=-1:1:7"])
  pipeline.run_hessian(curv, run_dir=run, trace=False, density=False, curvature=True,
                       overrides=["hessian.n_samples=128", "hessian.map_steps=10", "hessian.k=1"])
  pca = pipeline.run_surface(run, out=work / "pca.h5",
                             overrides=["surface.direction=pca", "surface.x=-8:4:13",
                                        "surface.y=-4:4:9"])
  interp = pipeline.run_surface(run, out=work / "interp.h5",
                                overrides=["surface.direction=target", "surface.targets=['0']",
                                           "surface.y=null", "surface.x=-0.5:1.5:41"])
  for path in (main_h5, curv, pca, interp):
    result = io.load(path)
    written = plotting.render_all(result, out, formats=("png",), dpi=a.dpi,
                                  stem=Path(path).stem)
    print(f"{path.name}: {', '.join(written)}")
  return 0


if __name__ == "__main__":
  raise SystemExit(main())

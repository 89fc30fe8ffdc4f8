"""Studies: grids of runs x seeds on Ray Tune, resumable, with one comparison report.

`load_sweep(path)` reads and validates a sweep file (no Ray needed); `run_sweep(spec, out)` runs
its trials on Ray (`pip install 'vaelab[sweep]'`), each an ordinary run directory OUT/<trial>,
and writes OUT/sweep.csv; `vaelab report OUT` draws the comparison page.
"""

from vaelab.sweep.spec import SweepError, SweepSpec, Trial, load_sweep, parse_sweep, sweep_names
from vaelab.sweep.runner import INSTALL_HINT, SweepResult, run_sweep

__all__ = ["INSTALL_HINT", "SweepError", "SweepResult", "SweepSpec", "Trial", "load_sweep",
           "parse_sweep", "run_sweep", "sweep_names"]

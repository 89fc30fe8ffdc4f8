"""Issue 35 (point 5), end to end: in a two-process DDP run (gloo, CPU) every rank trains on its
own shard of the domain batches. The fast pin of the shard itself is in tests/test_pins.py."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = textwrap.dedent('''
    import sys
    from pathlib import Path

    import numpy as np

    from vaelab.callbacks import Callback
    from vaelab.engine import fit
    from vaelab.factory import run_config_from_dict

    out = Path(sys.argv[1])


    class RecordBatches(Callback):
        """Records the index batches this rank draws; saves them as rank<r>.npy at the end."""

        def on_train_start(self, ctx):
            self.drawn, source = [], ctx.batches
            draw = source.next

            def next_recorded():
                index = draw()
                self.drawn.append(index.cpu().numpy())
                return index

            source.next = next_recorded

        def on_close(self, ctx):
            np.save(out / f"rank{ctx.fabric.global_rank}.npy", np.stack(self.drawn))


    config = {"name": "ddp", "seed": 11, "model": {"name": "burgess", "latent_dim": 2},
              "objective": {"name": "vae"},
              "data": {"name": "dsprites_domains", "limit": 64, "batches": "random"},
              "train": {"steps": 3, "batch_size": 4, "log_every": 3, "checkpoint_every": 0,
                        "metrics": [], "progress": False, "accelerator": "cpu", "devices": 2,
                        "strategy": "ddp"}}
    fit(run_config_from_dict(config), out / "ddp", callbacks=[RecordBatches()])
''')


@pytest.mark.heavy
def test_two_ddp_ranks_train_on_their_own_shards_of_the_domain_batches(tmp_path):
    import vaelab
    from vaelab.data.dsprites_domains import DSpritesDomainsConfig

    script = tmp_path / "ddp_shards.py"
    script.write_text(SCRIPT)
    result = subprocess.run([sys.executable, str(script), str(tmp_path)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1",
                                 "PYTHONPATH": os.pathsep.join(
                                     [str(ROOT), os.environ.get("PYTHONPATH", "")])})
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npy") for r in (0, 1)]
    assert ranks[0].shape == ranks[1].shape == (3, 4)
    assert all(not np.array_equal(a, b) for a, b in zip(*ranks))
    # Side by side, the two ranks' batches are the batch of 8 one process draws from the seed.
    data = vaelab.load_dataset("dsprites_domains", limit=64)
    single = data.batch_source(DSpritesDomainsConfig(limit=64, batches="random"), 8,
                               torch.Generator().manual_seed(11))
    for step in range(3):
        np.testing.assert_array_equal(np.concatenate([ranks[0][step], ranks[1][step]]),
                                      single.next().numpy())

"""The first screen of a run (issue 36, item 9): training draws the labelled traversal figure
(each latent's KL and the factor it encodes), and the report opens with the headline numbers."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from vaelab.cli import main

TOY = ["--set", "data.name=toy_squares", "--set", "train.steps=8", "--set", "train.batch_size=16",
       "--set", "train.log_every=4", "--set", "train.metrics=mig,dci_fast,active_units",
       "--set", "model.latent_dim=3", "--no-progress"]


def test_training_draws_the_labelled_traversals_and_the_report_leads_with_numbers(tmp_path,
                                                                                  capsys):
    assert main(["train", "--out", str(tmp_path), "--name", "r", *TOY]) == 0
    run = tmp_path / "r"
    figure = run / "prior_traversals.png"
    assert figure.is_file()
    assert "each latent's KL and the factor it encodes" in capsys.readouterr().err
    # labelled: wider than the bare grid (`--plain`), the row labels on its left
    assert main(["plot", str(run), "traversals", "--plain", "--out-dir", str(tmp_path / "b")]) == 0
    with Image.open(figure) as image, Image.open(tmp_path / "b" / "prior_traversals.png") as bare:
        assert image.width > bare.width + 40 and image.height >= bare.height
    # the same figure as `vaelab plot RUN traversals` draws (labels, KL order, factors)
    assert main(["plot", str(run), "traversals", "--out-dir", str(tmp_path / "p")]) == 0
    with Image.open(figure) as a, Image.open(tmp_path / "p" / "prior_traversals.png") as b:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))

    assert main(["plot", str(run), "all"]) == 0  # its own files under plots/: no clash
    assert main(["report", str(run)]) == 0
    page = (run / "report.html").read_text()
    head = page.index('id="headline-0"')
    assert head < page.index("<img") and head < page.index("<h3>")
    headline = page[head:page.index("</ul>", head)]
    scores = json.loads((run / "metrics.json").read_text())
    summary = json.loads((run / "summary.json").read_text())
    assert f"<b>MIG</b> {scores['mig']:.3f}" in headline
    assert f"<b>DCI disentanglement</b> {scores['dci_fast.disentanglement']:.3f}" in headline
    assert f"<b>active latents</b> {scores['active_units']:.3f}" in headline
    assert f"<b>reconstruction</b> {summary['final']['recon']:.4g}" in headline
    assert "learned nothing: 0" in headline and "at the first log row" in headline


def test_a_report_without_scores_names_the_command(tmp_path):
    args = [*TOY[:-5], "--set", "train.metrics=", "--no-progress"]
    assert main(["train", "--out", str(tmp_path), "--name", "r", *args]) == 0
    assert main(["report", str(tmp_path / "r")]) == 0
    page = (tmp_path / "r" / "report.html").read_text()
    assert "no disentanglement scores yet" in page and "vaelab eval" in page

"""Runs and checkpoints carry the vaelab version that wrote them (issue 36, item 6): a run from
a newer release is refused with a message that says so; an older one is read silently."""

from __future__ import annotations

import io
import json

import torch

import vaelab
from vaelab.cli import main
from vaelab.rundir import FORMAT_VERSION
from vaelab.runs import checkpoint_path, load_checkpoint

TOY = ["--set", "data.name=toy_squares", "--set", "train.steps=4", "--set", "train.batch_size=16",
       "--set", "train.metrics=", "--no-progress"]


def test_versions_are_written_newer_refused_older_read_silently(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--name", "r", *TOY]) == 0
    run = tmp_path / "r"
    stored = json.loads((run / "config.json").read_text())
    assert stored["vaelab_version"] == vaelab.__version__
    assert stored["format_version"] == FORMAT_VERSION
    state = load_checkpoint(checkpoint_path(run))
    assert state["vaelab_version"] == vaelab.__version__
    assert state["format_version"] == FORMAT_VERSION
    capsys.readouterr()

    # an older release's run: no version keys at all; read without a word
    older = {k: v for k, v in stored.items() if k not in ("vaelab_version", "format_version")}
    (run / "config.json").write_text(json.dumps(older))
    state.pop("vaelab_version"), state.pop("format_version")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    checkpoint_path(run).write_bytes(buffer.getvalue())
    assert main(["encode", str(run), "--limit", "8"]) == 0
    assert capsys.readouterr().err == ""
    assert vaelab.load_run(run).step == 4

    # a newer release's run: the message says so (not "unknown key 'format_version'")
    (run / "config.json").write_text(json.dumps({**stored, "vaelab_version": "9.1.0",
                                                 "format_version": FORMAT_VERSION + 1}))
    assert main(["eval", str(run)]) == 2
    err = capsys.readouterr().err
    assert "was written by vaelab 9.1.0" in err and "newer than this" in err
    assert "pip install -U vaelab" in err and "unknown key" not in err
    assert main(["train", "--resume", str(run)]) == 2
    assert "was written by vaelab 9.1.0" in capsys.readouterr().err
    assert main(["train", "--config", str(run / "config.json"), "--name", "again", "--out",
                 str(tmp_path)]) == 2
    assert "was written by vaelab 9.1.0" in capsys.readouterr().err

    # and a newer checkpoint under an older config
    (run / "config.json").write_text(json.dumps(stored))
    torch.save({**state, "vaelab_version": "9.1.0", "format_version": FORMAT_VERSION + 1},
               checkpoint_path(run))
    assert main(["plot", str(run), "samples"]) == 2
    assert "checkpoint" in (err := capsys.readouterr().err) and "vaelab 9.1.0" in err


def test_a_run_config_json_works_as_a_config_file(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path), "--name", "r", *TOY]) == 0
    assert main(["train", "--config", str(tmp_path / "r" / "config.json"), "--name", "copy",
                 "--out", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "copy" / "checkpoints" / "last.ckpt").is_file()

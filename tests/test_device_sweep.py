"""The GPU-lease driver runs jobs side by side: each job may only start once its anchor (the run whose dense
model and sensitivity it reuses) is done, and every result must carry the command a user would type."""
from __future__ import annotations

import shlex
from pathlib import Path

from benchmarks import device_sweep
from benchmarks.device_sweep import Job, jobs
from cli.main import app


def test_every_job_comes_after_its_anchor_and_none_twice():
    order = jobs(["rt-polarity", "qnli-squad", "snli", "squad-v1.1-dev"], [1, 2, 3])
    assert len(order) == len(set(order))
    seen = set()
    for job in order:
        assert job.is_anchor or job.anchor() in seen, job
        seen.add(job)
    anchors = [j for j in order if j.is_anchor]
    assert order[:len(anchors)] == anchors and len(anchors) == 12  # every anchor before any dependent job


def test_the_recorded_command_is_the_one_that_runs(tmp_path):
    from typer.testing import CliRunner

    job = Job("rt-polarity", "trim-2x", 0.3, 2)
    cmd = shlex.split(job.command())
    assert cmd[:2] == ["sensi-edge", "compress"]
    assert cmd[cmd.index("--trim-epochs") + 1] == "4" and cmd[cmd.index("--epochs") + 1] == "2"
    assert cmd[cmd.index("--data") + 1] == "../shared/data/rt-polarity"
    # the flags parse as the CLI's (a typo here would only surface on a paid GPU lease)
    res = CliRunner().invoke(app, ["compress", *job.flags(), "--data", str(tmp_path / "none"), "--output",
                                   str(tmp_path / "out")])
    assert res.exit_code == 2 and "data path" in res.stderr, res.stderr


def test_a_failed_anchor_drops_its_dependents_and_the_driver_ends(tmp_path):
    """A broken anchor must not leave the driver waiting for it until the deadline."""
    import argparse

    args = argparse.Namespace(results=tmp_path / "res", workdir=tmp_path / "work", tasks=["rt-polarity"], seeds=[1],
                              workers=2, threads=1, deadline=120, start_margin=0, data_root=tmp_path / "nodata",
                              extra="", tar=tmp_path / "res.tgz")
    device_sweep.run(args)  # every compress fails (no data): the anchor fails, the rest never start
    assert not list((tmp_path / "res").glob("*.json"))
    assert (tmp_path / "res.tgz").is_file()
    log = (tmp_path / "work" / "rt-polarity_default_b0.5_s1.log").read_text()
    assert "error:" in log and Path(tmp_path / "work" / "device_sweep.log").read_text().count("compress") == 1


def test_a_new_lease_runs_an_anchor_again_when_only_its_result_is_kept(tmp_path):
    """Results travel back from a lease, run folders do not: the next lease must rebuild the anchor's folder
    before any job reuses it, and leave the anchor's kept result untouched."""
    import argparse

    res = tmp_path / "res"
    res.mkdir()
    kept = res / "rt-polarity_default_b0.5_s1.json"
    kept.write_text('{"kept": true}\n')
    args = argparse.Namespace(results=res, workdir=tmp_path / "work", tasks=["rt-polarity"], seeds=[1], workers=2,
                              threads=1, deadline=120, start_margin=0, data_root=tmp_path / "nodata", extra="", tar=None)
    device_sweep.run(args)
    commands = (tmp_path / "work" / "device_sweep.log").read_text().splitlines()
    assert len(commands) == 1 and "--keep-intermediate" in commands[0] and "rt-polarity_default_b0.5_s1" in commands[0]
    assert kept.read_text() == '{"kept": true}\n'

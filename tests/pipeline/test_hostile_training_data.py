"""Hostile datasets against `dcgan train --data` (issue 30, item 1): training reads a user's data
with the code `dcgan balance` reads it with, so every protection the balance fuzzer checks
(tests/serving/test_hostile_datasets.py) must hold here too. The same Hypothesis builders make
malformed datasets in every format, with links inside and out and special files; reading them
for training either gives a dataset or one user-facing error, follows no link (the sentinel tree
the links point into is hashed before and after), changes nothing in the source, and keeps this
process's peak memory about where it was. A few of them go through the real command too.
"""

from __future__ import annotations

import resource
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from models.errors import UserFacingError
from pipeline.data.loading import load_dataset
from tests.serving.hostile import (
    FORMATS,
    HOSTILE,
    MAX_GROWTH_KB,
    SECRET,
    Scene,
    build,
    counts,
    run_cli,
    snapshot,
)
from tests.serving.hostile_mutations import CONTENT, CONTENT_CASES, link, special


def check_read(scene: Scene, exact: bool) -> None:
    """Read ``scene`` as the user's own data: a dataset or one user-facing line, nothing
    outside or in the source changed, no secret read into the images, memory bounded.
    ``exact``: the scene's only change was a link or special file, so a dataset read must be
    exactly the images built (content mutations may add valid images of their own)."""
    outside, source = snapshot(scene.outside), snapshot(scene.data)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        ds = load_dataset("hostile", str(scene.path))
    except UserFacingError as exc:
        event("refused")
        assert "\n" not in str(exc) and str(exc)
    else:
        event("read")
        # What was read is exactly the images built: nothing reached through a link, no file
        # swapped in (the victim's PNG would be one image more).
        together = np.concatenate([ds.train_images, ds.test_images])
        if exact:
            assert sorted(map(bytes, together)) == sorted(map(bytes, scene.images))
        assert SECRET not in together.tobytes()
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < MAX_GROWTH_KB, f"peak RSS grew {grown} KB"
    assert snapshot(scene.outside) == outside
    assert snapshot(scene.data) == source


@pytest.mark.parametrize("fmt", FORMATS)
@settings(HOSTILE, max_examples=10)
@given(data=st.data())
def test_links_and_special_files_are_never_followed_for_training(
    fmt: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-train-") as tmp:
        scene = build(Path(tmp), fmt, counts(data, most=4))
        data.draw(st.sampled_from([link, special]))(scene, data.draw)
        check_read(scene, exact=True)


@pytest.mark.parametrize(("fmt", "kind"), CONTENT_CASES)
@settings(HOSTILE, max_examples=2)
@given(data=st.data())
def test_malformed_training_data_is_one_error(fmt: str, kind: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-train-") as tmp:
        scene = build(Path(tmp), fmt, counts(data, most=4))
        mutate, _ = CONTENT[fmt]
        mutate(scene, data.draw, kind)
        check_read(scene, exact=False)


@pytest.mark.parametrize("fmt", FORMATS)
@settings(HOSTILE, max_examples=2)
@given(data=st.data())
def test_the_train_command_answers_hostile_data_in_one_line(fmt: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-train-") as tmp:
        scene = build(Path(tmp), fmt, counts(data, most=4))
        data.draw(st.sampled_from([link, special]))(scene, data.draw)
        outside = snapshot(scene.outside)
        out = scene.work / "run"
        code, _, stderr = run_cli(
            "train", "--dataset", "hostile", "--data", str(scene.path), "--epochs", "1",
            "--batch-size", "8", "--g-width", "8", "--d-width", "8", "--out", str(out), "--quiet",
        )  # fmt: skip
        event(f"exit {code}")
        lines = stderr.splitlines()
        assert code in (0, 2), stderr
        assert code == 0 or (len(lines) == 1 and lines[0].startswith("error: ")), stderr
        assert code == 0 or not out.exists()
        assert snapshot(scene.outside) == outside

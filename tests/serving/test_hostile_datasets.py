"""Hostile datasets against the real `dcgan balance` (issue 29, item 4).

Hypothesis builds small malformed datasets in every format (ImageFolder of PNGs, .npz, IDX plain
and gzipped, Parquet, save_to_disk) with links inside and out, FIFOs and sockets, truncated and
oversized headers, wrong modes, dtypes and shapes, journals of every shape and a killed run's
leftovers, and runs the command through the CLI's entry point (in-process) against a live
service. Whatever it is given: exit 0 or 2 with one line on stderr, nothing outside the output
changed (a sentinel tree that the links point into, hashed before and after), the source
unchanged (in place: only the files the command writes added), no secret in the output.
The regression tests for each finding of 2026-12-06 are in test_hostile_regressions.py.
"""

from __future__ import annotations

import os
import re
import resource
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from models.registry import LocalStore, ModelRegistry
from serving.api.app import create_app
from serving.tools.datasets import read_dataset
from tests.serving.conftest import MODEL
from tests.serving.conftest import settings as serve_settings
from tests.serving.hostile import (
    FORMATS,
    HOSTILE,
    MAX_GROWTH_KB,
    SECRET,
    SIZE,
    Scene,
    build,
    counts,
    run_cli,
    snapshot,
)
from tests.serving.hostile_mutations import (
    CONTENT,
    CONTENT_CASES,
    JOURNAL_SHAPES,
    journal,
    leftovers,
    link,
    special,
)
from tests.serving.live import serving


@pytest.fixture(scope="module")
def url(published_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    registry = ModelRegistry(LocalStore(published_registry), MODEL)
    cache_dir = tmp_path_factory.mktemp("hostile-cache")
    with serving(create_app(serve_settings(), registry, cache_dir=cache_dir)) as base:
        yield base


# --- the properties ---------------------------------------------------------------------------

WRITTEN_IN_PLACE = re.compile(
    r"[0-9]+(/dcgan-[^/]+\.png)?|metadata\.jsonl|README\.md|BALANCE_CARD\.md"
)
RECORDS = ("metadata.jsonl", "README.md", "BALANCE_CARD.md")


def draw_in_place(data: st.DataObject, fmt: str) -> bool:
    """--in-place is for ImageFolders (elsewhere refused up front, so drawn rarely there)."""
    choices = [False, True] if fmt == "imagefolder" else [False] * 5 + [True]
    return bool(data.draw(st.sampled_from(choices), label="in_place"))


@pytest.mark.parametrize("fmt", FORMATS)
@settings(HOSTILE, max_examples=15)
@given(data=st.data())
def test_links_and_special_files_are_refused_never_followed(
    fmt: str, url: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        scene = build(Path(tmp), fmt, counts(data))
        data.draw(st.sampled_from([link, special]))(scene, data.draw)
        if data.draw(st.booleans()):
            leftovers(scene, data.draw)
        check_run(scene, url, draw_in_place(data, fmt))


@pytest.mark.parametrize(("fmt", "kind"), CONTENT_CASES)
@settings(HOSTILE, max_examples=3)
@given(data=st.data())
def test_malformed_content_ends_in_one_line(
    fmt: str, kind: str, url: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        scene = build(Path(tmp), fmt, counts(data))
        mutate, _ = CONTENT[fmt]
        mutate(scene, data.draw, kind)
        check_run(scene, url, draw_in_place(data, fmt))


@pytest.mark.parametrize("shape", JOURNAL_SHAPES)
@settings(HOSTILE, max_examples=4)
@given(data=st.data())
def test_a_journal_of_any_shape_is_finished_or_refused(
    shape: str, url: str, data: st.DataObject
) -> None:
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        scene = build(Path(tmp), "imagefolder", counts(data))
        journal(scene, data.draw, shape)
        if data.draw(st.booleans()):
            leftovers(scene, data.draw)
        check_run(scene, url, data.draw(st.sampled_from([True, True, False]), label="in_place"))


def check_run(scene: Scene, url: str, in_place: bool) -> None:
    """Run `dcgan balance` on ``scene``: exit 0 or 2 with one line, nothing outside changed
    (links' targets included), the source unchanged (in place: only its own files added), no
    secret and no link in the output, and this process's peak memory about where it was."""
    outside, source = snapshot(scene.outside), snapshot(scene.data)
    around = {p.name for p in scene.work.iterdir()}
    args = ["balance", str(scene.path), "--url", url, "--seed", "1"]
    args += ["--in-place"] if in_place else ["--out", str(scene.out)]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    code, _, stderr = run_cli(*args)

    event(f"exit {code}{' in place' if in_place else ''}")
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak
    assert grown < MAX_GROWTH_KB, f"peak RSS grew {grown} KB"
    lines = stderr.splitlines()
    assert code in (0, 2) and len(lines) == (code == 2), stderr
    assert code == 0 or lines[0].startswith("error: "), stderr
    assert snapshot(scene.outside) == outside  # links' targets included
    left = {p.name for p in scene.work.iterdir()}
    assert left - around <= {"out"}
    assert all(name.startswith(".out.tmp-") for name in around - left)  # a killed run's
    if in_place:
        _only_written_in_place(source, snapshot(scene.data))
    else:
        assert snapshot(scene.data) == source
        assert code == 0 or not scene.out.exists()
    if scene.out.exists():
        _clean_output(scene)


def _only_written_in_place(before: dict[str, Any], after: dict[str, Any]) -> None:
    """The changes an in-place run may make: its own files added, its journal removed."""
    for key in before.keys() - after.keys():
        assert key.startswith(".dcgan-balance-"), f"{key} removed"
    for key in after.keys() - before.keys():
        assert WRITTEN_IN_PLACE.fullmatch(key) and after[key][0] != "link", f"{key} added"
    for key in before.keys() & after.keys():
        assert before[key] == after[key] or key in (
            "metadata.jsonl",
            "README.md",
            "BALANCE_CARD.md",
        )


def _clean_output(scene: Scene) -> None:
    """An output holds regular files only, no journal, no secret, and reads back balanced."""
    for directory, dirs, files in os.walk(scene.out):
        for name in dirs + files:
            path = Path(directory, name)
            mode = os.lstat(path).st_mode
            assert stat.S_ISDIR(mode) or stat.S_ISREG(mode), path
            assert not name.startswith(".dcgan-balance-"), path
            assert not stat.S_ISREG(mode) or SECRET not in path.read_bytes(), path
    named = {"imagefolder": "", "hf-disk": "", "idx-gz": scene.path.name.removesuffix(".gz")}
    balanced = read_dataset(scene.out / named.get(scene.fmt, scene.path.name), image_size=SIZE)
    assert len(set(balanced.counts(10))) == 1

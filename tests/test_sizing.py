"""The training budget in steps and the input scale/crop chosen from the labelled animals (issue 21)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from posezoo.training import sizing
from posezoo.training.api import resolve_config
from posezoo.training.project import load_project
from posezoo.training.run import create_run
from posezoo.training.synthetic import make_project


def test_scale_keeps_the_animal_a_fixed_share_of_the_crop() -> None:
    # openfield's mice (124 px, ears 13 px apart): the ears keep 8 px apart, so 0.64 and 192 crops
    # (the animal alone would ask for 0.52 in 160 crops)
    assert sizing.choose(124.0, 12.5, (480, 640)) == (0.64, 192)
    # an animal four times larger, its keypoints as far apart, is seen at a quarter of the scale
    # that context asks for (0.52 / 4), in 160 crops
    scale, crop = sizing.choose(496.0, 100.0, (1920, 2560))
    assert scale == pytest.approx(0.13) and crop == 160
    # a small animal in a large image is not enlarged past its own pixels
    assert sizing.choose(40.0, 10.0, (1200, 1600)) == (1.0, 160)
    # keypoints packed close together (27 on one animal) raise the scale; the crop grows to keep
    # the animal in view (at most MAX_CROP) and the batch shrinks to keep a step's cost
    scale, crop = sizing.choose(520.0, 12.0, (1350, 1500))
    assert 0.12 < scale <= sizing.MAX_DETAIL * 0.4 * 160 / 520 + 0.01 and crop > 160
    assert crop <= sizing.MAX_CROP and crop % 32 == 0
    assert sizing.batch_for(crop, crop, 100) < 8 and sizing.batch_for(160, 160, 100) == 8
    assert sizing.batch_for(160, 160, 5) == 5  # never more than the training frames


@pytest.fixture(scope="module")
def projects(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sizing")
    return {size: make_project(root / str(size), n_frames=12, video_frames=1, image_size=(640, 480),
                               animal_size=size, seed=3) for size in (1.0, 0.4)}


def test_runs_measure_their_animals_and_record_the_choice(projects: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    runs = {}
    for size, project in projects.items():
        runs[size] = create_run(project, resolve_config(None, "torch", {}), tmp_path / str(size))
        extent, _, image = sizing.measure(load_project(project), runs[size].split.train)
        assert image == (480, 640) and extent > 0
    printed = capsys.readouterr().out
    assert "input scale" in printed and "training crops 160x160" in printed
    big, small = runs[1.0].cfg, runs[0.4].cfg
    assert big.input.scale < small.input.scale  # the smaller animal is looked at closer
    assert small.input.scale == pytest.approx(min(1.0, 2.5 * big.input.scale), abs=0.05)
    # the run's config file holds the chosen values, so the spec, export and resume use them
    saved = yaml.safe_load((runs[1.0].path / "config.yaml").read_text())
    assert saved["input"]["scale"] == big.input.scale and saved["input"]["train_size"] == [160, 160]
    assert saved["train"]["batch_size"] == 8


def test_explicit_settings_win(projects: dict[str, Path], tmp_path: Path) -> None:
    cfg = resolve_config(None, "torch", {"scale": 0.25, "batch_size": 3})
    run = create_run(projects[1.0], cfg, tmp_path / "run")
    assert run.cfg.input.scale == 0.25 and run.cfg.train.batch_size == 3 and run.cfg.input.train_size == (160, 160)
    cfg = resolve_config(None, "torch", {"scale": 0.5, "input.train_size": [96, 128], "batch_size": 2})
    assert sizing.resolve(cfg, load_project(projects[1.0]), [0, 1])[1] is None  # nothing left to choose


def test_budget_is_steps_and_a_partial_last_epoch_stops_on_time(projects: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from posezoo.training.api import train

    # 10 training frames in batches of 4: 2 steps an epoch; 7 steps end half-way through epoch 3
    run = train(projects[1.0], output=tmp_path / "run", progress=False, steps=7, batch_size=4, eval_every=4,
                **{"input.train_size": [64, 64], "split.test_indices": [0, 1], "model.width": 0.25,
                   "train.threads": 1})
    with open(run / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["step"] for r in rows] == ["2", "4", "6", "7"]
    assert [bool(r["test_rmse"]) for r in rows] == [False, True, False, True]  # every 4 steps, and at the end
    assert float(rows[-1]["lr"]) < 0.1 * float(rows[0]["lr"])  # the schedule ran to its end
    assert json.loads((run / "metrics.json").read_text())["test"]["n_images"] == 2

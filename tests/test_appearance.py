"""What each animal looks like: colours read at its keypoints, kept beside the detections through
kills and resumes, and never taken from a file made for other detections."""
from __future__ import annotations

import numpy as np
import pytest

from posezoo.runtime.appearance import describe
from posezoo.runtime.geometry import Plan
from posezoo.runtime.io.appearance import AppearanceWriter, appearance_path, read_appearance_blocks

STATE = {"model_sha256": "ab" * 32, "video_bytes": 1234}


def test_colours_are_read_around_each_keypoint_in_tensor_pixels():
    tensor = np.zeros((2, 40, 60, 3), np.uint8)
    tensor[0, 10:20, 10:30] = (200, 100, 50)  # a patch of fur, in the tensor
    tensor[1] = 90
    plan = Plan(crop=(0, 120, 0, 80), resized=(40, 60), tensor=(40, 60))  # frames at twice the tensor's size
    coords = np.full((2, 2, 3, 3), np.nan)
    coords[0, 0, :, :2] = [[40, 30], [52, 28], [46, 34]]  # well inside the patch once halved
    coords[0, 1, 0, :2] = [200, 10]  # outside the tensor
    coords[1, 0, 0, :2] = [60, 40]
    out = describe(tensor, plan, coords)
    assert out.shape == (2, 2, 9) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, 0], [200, 100, 50] * 3)
    assert np.isnan(out[0, 1]).all()  # outside, or no keypoint at all
    np.testing.assert_array_equal(out[1, 0, :3], [90, 90, 90])
    assert np.isnan(out[1, 0, 3:]).all() and np.isnan(out[1, 1]).all()


def _write(tmp_path, frames: int, **kwargs) -> AppearanceWriter:
    w = AppearanceWriter(tmp_path / "v_detections.h5", STATE, **kwargs)
    for begin in range(0, frames, 4):
        w.append(np.full((min(4, frames - begin), 2, 6), begin, np.float32))
    return w


def test_a_resume_cuts_the_rows_the_detections_did_not_reach(tmp_path):
    _write(tmp_path, 12).release()  # killed: 12 rows here, the detections reached 8
    w = _write(tmp_path, 0, resume_frames=8)
    assert w.active and w.frames_written == 8
    w.append(np.full((4, 2, 6), 99, np.float32))
    w.close()
    blocks = read_appearance_blocks(tmp_path / "v_detections.h5", STATE, 12, rows=5)
    assert blocks is not None
    got = np.concatenate(list(blocks))
    assert got.shape == (12, 2, 6)
    np.testing.assert_array_equal(got[:, 0, 0], [0] * 4 + [4] * 4 + [99] * 4)
    assert not appearance_path(tmp_path / "v_detections.h5").with_name("v_detections.h5.appearance.partial").exists()


@pytest.mark.parametrize("left", ["fewer rows", "another state", "nothing"])
def test_descriptors_that_cannot_follow_the_detections_are_given_up(tmp_path, left):
    if left == "fewer rows":
        _write(tmp_path, 4).release()
    elif left == "another state":
        w = AppearanceWriter(tmp_path / "v_detections.h5", {**STATE, "video_bytes": 1})
        w.append(np.zeros((12, 2, 6), np.float32))
        w.release()
    w = _write(tmp_path, 0, resume_frames=8)
    assert not w.active  # tracking then goes by motion and size
    w.append(np.zeros((4, 2, 6), np.float32))
    w.close()
    assert not appearance_path(tmp_path / "v_detections.h5").exists()
    assert read_appearance_blocks(tmp_path / "v_detections.h5", STATE, 12) is None


def test_a_kill_between_the_two_renames_resumes_from_the_complete_file(tmp_path):
    _write(tmp_path, 8).close()  # renamed into place; the detections' own rename did not happen
    w = _write(tmp_path, 0, resume_frames=8)
    assert w.active and w.frames_written == 8
    w.close()
    assert read_appearance_blocks(tmp_path / "v_detections.h5", STATE, 8) is not None


def test_a_complete_file_is_only_read_for_its_own_detections(tmp_path):
    _write(tmp_path, 8).close()
    path = tmp_path / "v_detections.h5"
    assert read_appearance_blocks(path, STATE, 8) is not None
    assert read_appearance_blocks(path, STATE, 9) is None  # another number of rows
    assert read_appearance_blocks(path, {**STATE, "model_sha256": "cd" * 32}, 8) is None
    appearance_path(path).write_bytes(b"not HDF5")
    assert read_appearance_blocks(path, STATE, 8) is None

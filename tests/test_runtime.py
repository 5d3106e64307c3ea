"""The foundation end to end: spec in a real ONNX file, PoseModel geometry, errors."""
from __future__ import annotations

import json
import subprocess
import sys
import warnings

import numpy as np
import onnx
import pytest

from onnx_models import brightest_pixel_graph, make_pose_onnx, make_spec, paint_dots
from posezoo.runtime import PoseModel, SpecError, read_spec
from posezoo.runtime.geometry import prepare
from posezoo.runtime.session import ModelLoadError
from posezoo.runtime.spec import METADATA_KEY, InputSpec, PreprocessSpec, Spec, embed_spec

DOTS = {"red": (10, 20), "green": (31, 7), "blue": (68, 47)}


def test_light_imports_leave_out_frameworks():
    code = ("import sys, posezoo.runtime, posezoo.zoo; "
            "bad = {'torch', 'tensorflow'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_spec_round_trips_through_onnx_metadata(tmp_path):
    spec = make_spec(provenance={"backend": "test", "dataset": "x"})
    path = make_pose_onnx(tmp_path / "m.onnx", spec)
    back = read_spec(path)
    assert back == spec
    assert back.skeleton_indices() == [(0, 1)]


def test_predict_identity_geometry_bgr_and_rgb(tmp_path):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx"), device="cpu")
    assert model.keypoints == ["red", "green", "blue"] and model.device == "cpu"
    frame = paint_dots(np.zeros((50, 70, 3), np.uint8), DOTS, color="bgr")
    np.testing.assert_array_equal(model(frame).coords[0, 0, :, :2], np.array(list(DOTS.values()), np.float32))
    rgb = frame[..., ::-1].copy()
    np.testing.assert_array_equal(model.predict(rgb, color="rgb").coords, model.predict(frame).coords)
    # Feeding RGB as if it were BGR swaps red and blue: the colour order really is applied.
    swapped = model.predict(rgb, color="bgr").coords[0, 0]
    assert tuple(swapped[0, :2]) == DOTS["blue"] and tuple(swapped[2, :2]) == DOTS["red"]


def test_predict_half_scale_maps_back_to_frame_pixels(tmp_path):
    spec = make_spec(preprocess=PreprocessSpec(resize="scale", scale=0.5, interpolation="area"))
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx", spec))
    dots = {"red": (10, 20), "green": (40, 6), "blue": (98, 62)}  # even: 2x2 blocks map to one pixel
    frame = paint_dots(np.zeros((64, 100, 3), np.uint8), dots, block=2)
    kp = model.predict(frame).coords[0, 0]
    expected = np.array(list(dots.values()), np.float32) + 0.5  # centre of the 2x2 block
    np.testing.assert_allclose(kp[:, :2], expected, atol=1e-5)
    np.testing.assert_allclose(kp[:, 2], 1.0, atol=1e-6)


def test_batch_of_mixed_sizes_and_crop(tmp_path):
    spec = make_spec(preprocess=PreprocessSpec(resize="none", crop=[5, 90, 3, 60]))
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx", spec))
    a = paint_dots(np.zeros((60, 90, 3), np.uint8), DOTS)
    other = {"red": (50, 33), "green": (6, 4), "blue": (70, 50)}
    b = paint_dots(np.zeros((120, 200, 3), np.uint8), other)
    kp = model.predict([a, b, a]).coords[:, 0]
    np.testing.assert_array_equal(kp[0, :, :2], list(DOTS.values()))
    np.testing.assert_array_equal(kp[1, :, :2], list(other.values()))
    np.testing.assert_array_equal(kp[2], kp[0])
    # A dot outside the crop window cannot be found.
    c = paint_dots(np.zeros((60, 90, 3), np.uint8), {"red": (2, 1)})
    assert model(c).coords[0, 0, 0, 2] == 0.0


def test_fixed_size_letterbox_and_fixed_batch(tmp_path):
    spec = make_spec(input=InputSpec(size=[32, 48], dynamic_axes=[]),
                     preprocess=PreprocessSpec(resize="fit", interpolation="nearest"))
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx", spec, size=(32, 48), batch=1))
    frame = paint_dots(np.zeros((64, 64, 3), np.uint8), {"red": (20, 40)}, block=2)  # scale 0.5
    frames = np.stack([frame, frame])
    kp = model.predict(frames).coords[:, 0]
    assert kp.shape == (2, 3, 3)
    np.testing.assert_allclose(kp[:, 0, :2], [[20.5, 40.5]] * 2)


def test_prepare_pads_bottom_right_to_multiple():
    tensor, plan = prepare(np.full((50, 70, 3), 7, np.uint8), InputSpec(size_multiple=32),
                           PreprocessSpec(resize="none", pad_value=3))
    assert tensor.shape == (64, 96, 3) and plan.resized == (50, 70)
    assert (tensor[:50, :70] == 7).all() and (tensor[50:] == 3).all() and (tensor[:, 70:] == 3).all()


def test_unavailable_gpu_falls_back_with_one_warning(tmp_path):
    path = make_pose_onnx(tmp_path / "m.onnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = PoseModel.load(path, device="cuda:0")
    if "CUDAExecutionProvider" in model.session.get_providers():
        pytest.skip("a CUDA onnxruntime is present: the fallback cannot be exercised here")
    assert model.device == "cpu"
    msgs = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
    assert len(msgs) == 1 and "cuda:0" in msgs[0] and "runs on cpu" in msgs[0]
    with pytest.raises(ValueError, match="unknown device"):
        PoseModel.load(path, device="gpu7")


# -- bad input ------------------------------------------------------------------------------------
def test_missing_and_non_onnx_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.onnx"):
        PoseModel.load(tmp_path / "nope.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_text("this is not a model")
    with pytest.raises(ModelLoadError, match="junk.onnx"):
        PoseModel.load(junk)


def test_truncated_and_edited_files_are_refused(tmp_path):
    path = make_pose_onnx(tmp_path / "m.onnx")
    data = path.read_bytes()
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="truncated.onnx"):
        PoseModel.load(truncated)
    # An edited graph keeps its old spec and hash: refused.
    model = onnx.load(path)
    scale = next(n for n in model.graph.node if n.output[0] == "inv255")
    scale.attribute[0].t.CopyFrom(onnx.helper.make_tensor("inv255", onnx.TensorProto.FLOAT, [], [1.0]))
    edited = tmp_path / "edited.onnx"
    onnx.save(model, edited)
    with pytest.raises(ModelLoadError, match="modified after export"):
        PoseModel.load(edited)


def test_file_without_spec(tmp_path):
    path = tmp_path / "plain.onnx"
    onnx.save(brightest_pixel_graph(), path)
    with pytest.raises(SpecError, match=r"plain.onnx.*no posezoo spec"):
        PoseModel.load(path)


def _with_raw_spec(tmp_path, data: dict, name: str = "bad.onnx"):
    """A file whose spec text is ``data``, fingerprinted as if an exporter had written it."""
    from posezoo.runtime.onnxfile import text_sha256
    from posezoo.runtime.spec import SPEC_HASH_KEY

    model = brightest_pixel_graph()
    embed_spec(model, make_spec())
    props = {prop.key: prop for prop in model.metadata_props}
    props[METADATA_KEY].value = json.dumps(data)
    props[SPEC_HASH_KEY].value = text_sha256(props[METADATA_KEY].value)
    path = tmp_path / name
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(schema_version="2.0"), "schema_version 2.0 is not supported"),
    (lambda d: d.pop("keypoints"), "'keypoints' is missing"),
    (lambda d: d.update(pcutoff="high"), "'pcutoff' must be int or float"),
    (lambda d: d["input"].update(size_multiple="32"), "'input.size_multiple' must be int"),
    (lambda d: d["preprocess"].update(resize="stretch"), "'preprocess.resize' must be one of"),
    (lambda d: d["input"].update(colour="RGB"), "unknown keys"),
])
def test_bad_spec_fields_are_named(tmp_path, edit, message):
    data = make_spec().to_dict()
    edit(data)
    path = _with_raw_spec(tmp_path, data)
    with pytest.raises(SpecError, match=message) as info:
        PoseModel.load(path)
    assert "bad.onnx" in str(info.value)


def test_spec_that_does_not_match_graph(tmp_path):
    spec = make_spec()
    spec.outputs["keypoints"].name = "poses"
    model = brightest_pixel_graph()
    embed_spec(model, spec)
    onnx.save(model, tmp_path / "m.onnx")
    with pytest.raises(SpecError, match="outputs.keypoints.name"):
        PoseModel.load(tmp_path / "m.onnx")
    four = make_spec()
    four.keypoints = ["a", "b", "c", "d"]
    four.skeleton = []
    four.outputs = {}
    four.__post_init__()
    model = brightest_pixel_graph()
    embed_spec(model, four)
    onnx.save(model, tmp_path / "k.onnx")
    with pytest.raises(SpecError, match="lists 4 keypoints"):
        PoseModel.load(tmp_path / "k.onnx")


@pytest.mark.parametrize("frame, message", [
    (np.zeros((10, 10), np.uint8), r"shape \(10, 10\)"),
    (np.zeros((10, 10, 4), np.uint8), r"expected \(height, width, 3\)"),
    (np.zeros((10, 10, 3), np.float32), "dtype float32"),
    ("frame.png", "numpy array"),
])
def test_bad_frames(tmp_path, frame, message):
    model = PoseModel.load(make_pose_onnx(tmp_path / "m.onnx"))
    with pytest.raises((ValueError, TypeError), match=message):
        model.predict(frame)


def test_spec_validation_in_python():
    with pytest.raises(SpecError, match="skeleton"):
        Spec(name="x", keypoints=["a"], skeleton=[["a", "zz"]]).validate()

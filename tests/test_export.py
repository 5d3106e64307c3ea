"""Export: a trained run becomes one .onnx file that PoseModel alone runs like the framework."""
from __future__ import annotations

import numpy as np
import onnx
import pytest

pytest.importorskip("torch")

from posezoo.export import ExportError, export  # noqa: E402
from posezoo.runtime import PoseModel, read_spec  # noqa: E402
from posezoo.runtime.session import ModelLoadError  # noqa: E402
from posezoo.runtime.spec import SpecError  # noqa: E402
from posezoo.training.loop import load_predictor  # noqa: E402
from posezoo.training.run import load_run  # noqa: E402

QUIET = {"progress": lambda _msg: None}


def test_exported_model_matches_framework_on_frames(trained_run, exported_model):
    run = load_run(trained_run)
    frames = run.frames(list(range(0, 48, 5)))
    predict, _ = load_predictor(run)
    framework = predict(frames).coords
    model = PoseModel.load(exported_model, device="cpu")
    onnx_rgb = model.predict(frames, color="rgb").coords
    bgr = [f[..., ::-1].copy() for f in frames]
    np.testing.assert_allclose(model.predict(bgr).coords, onnx_rgb, atol=1e-4)
    assert np.abs(onnx_rgb[..., :2] - framework[..., :2]).max() < 0.05
    np.testing.assert_allclose(onnx_rgb[..., 2], framework[..., 2], atol=1e-4)
    # A frame of another size goes through the dynamic spatial axes.
    big = np.pad(frames[0], ((0, 40), (0, 24), (0, 0)))
    np.testing.assert_allclose(model.predict(big, color="rgb").xy, predict([big]).xy, atol=0.05)


def test_spec_carries_provenance_and_parity(trained_run, exported_model):
    spec = read_spec(exported_model)
    prov = spec.provenance
    assert spec.keypoints == ["snout", "leftear", "rightear", "tailbase"]
    assert prov["backend"] == "torch" and prov["model"] == "lite" and len(prov["weights_sha256"]) == 64
    assert prov["parity"]["passed"] and prov["parity"]["max_px_diff"] <= 0.5
    assert prov["dataset"]["n_test"] == 6
    assert np.isfinite(prov["metrics"]["export_test"]["rmse"])
    assert spec.decode.stride == load_run(trained_run).spec.decode.stride


def test_heatmaps_output_and_variants(tmp_path, trained_run):
    result = export(trained_run, tmp_path / "hm.onnx", heatmaps=True, int8=True, fp16=True, force=True, **QUIET)
    model = PoseModel.load(result.path)
    outputs = {o.name: o.shape for o in model.session.get_outputs()}
    assert set(outputs) == {"keypoints", "heatmaps"} and "heatmaps" in model.spec.outputs
    frame = load_run(trained_run).frames([0])[0]
    heat = model.session.run(["heatmaps"], {"frames": model.prepare([frame], "rgb").tensor})[0]
    assert heat.shape[1] == 4 and 0.0 <= heat.min() and heat.max() <= 1.0
    for name in ("fp16", "int8"):
        path = result.variants[name]
        assert path.name == f"hm.{name}.onnx"
        variant = PoseModel.load(path)
        acc = variant.spec.provenance["variant_accuracy"]
        assert variant.spec.provenance["precision"] == name and np.isfinite(acc["rmse_change_px"])
        assert variant.predict(frame, color="rgb").coords.shape == (1, 1, 4, 3)
    ops = {n.op_type for n in onnx.load(result.variants["int8"]).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops


def test_parity_gate_failure_leaves_no_file(tmp_path, trained_run):
    target = tmp_path / "refused.onnx"
    with pytest.raises(ExportError, match="parity gate failed"):
        export(trained_run, target, tolerance_px=-1.0, **QUIET)
    assert not target.exists() and not any(tmp_path.iterdir())


def test_edited_truncated_or_mismatched_exports_are_refused(tmp_path, exported_model):
    data = exported_model.read_bytes()
    (tmp_path / "cut.onnx").write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ModelLoadError, match="cut.onnx"):
        PoseModel.load(tmp_path / "cut.onnx")

    model = onnx.load(exported_model)
    weight = max(model.graph.initializer, key=lambda t: len(t.raw_data))
    raw = bytearray(weight.raw_data)
    raw[:4] = b"\x00\x00\x80\x7f"  # one weight becomes +inf; metadata untouched
    weight.raw_data = bytes(raw)
    onnx.save(model, tmp_path / "edited.onnx")
    with pytest.raises(ModelLoadError, match="modified after export"):
        PoseModel.load(tmp_path / "edited.onnx")

    from posezoo.runtime.spec import embed_spec

    model = onnx.load(exported_model)
    spec = read_spec(exported_model)
    spec.keypoints = spec.keypoints[:3]
    spec.skeleton, spec.body = [], None
    spec.outputs["keypoints"].shape = ["batch", 3, 3]
    embed_spec(model, spec)
    onnx.save(model, tmp_path / "mismatch.onnx")
    with pytest.raises(SpecError, match="lists 3 keypoints"):
        PoseModel.load(tmp_path / "mismatch.onnx")

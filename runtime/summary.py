"""A readable summary of a model's spec, provenance and graph (what `posezoo inspect` prints)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .model import PoseModel


def describe_model(model: PoseModel) -> str:
    """A readable summary of a model's spec and graph, for `posezoo inspect`."""
    spec = model.spec
    inp, pre, dec, prov = spec.input, spec.preprocess, spec.decode, spec.provenance
    size = "x".join(map(str, inp.size[::-1])) if inp.size else f"dynamic (padded to a multiple of {inp.size_multiple})"
    resize = {"none": "none", "scale": f"scale x{pre.scale:g}", "fit": "letterbox into the fixed size"}[pre.resize]
    lines = [
        f"model        {spec.name}   ({model.path}, {Path(model.path).stat().st_size / 1e6:.2f} MB)",
        f"spec         schema {spec.schema_version}",
        f"keypoints    {len(spec.keypoints)}: {', '.join(spec.keypoints)}",
        f"skeleton     {', '.join('-'.join(p) for p in spec.skeleton) or '(none)'}",
        f"pcutoff      {spec.pcutoff:g}",
        f"input        {inp.name}: {inp.dtype} {inp.layout} {inp.color}, size {size}, "
        f"dynamic axes: {', '.join(inp.dynamic_axes) or 'none'}",
        f"preprocess   crop {pre.crop or 'none'}; resize {resize} ({pre.interpolation}); pad value {pre.pad_value}",
        "outputs      " + "; ".join(f"{o.name} {o.shape}: {o.meaning}" for o in spec.outputs.values()),
        f"decode       {dec.method}, stride {dec.stride}, offset {dec.offset:g}, locref scale {dec.locref_scale:g}",
    ]
    if spec.multi is not None:  # a bottom-up multi-animal model: what assembly works with
        m, a = spec.multi, spec.assembly
        lines += [f"individuals  {len(m.individuals)}: {', '.join(m.individuals)} (up to {m.max_animals} animals a "
                  f"frame{', identity head' if m.identity else ''})",
                  f"unique       {', '.join(m.unique_keypoints) or '(none)'}",
                  f"paf graph    {len(m.graph)} edges: {', '.join('-'.join(e) for e in m.graph)}",
                  f"assembly     {m.candidates} candidates per keypoint; "
                  + _short({k: v for k, v in vars(a).items() if k not in ("nearest", "farthest")} if a else {})]
        if a is not None and a.nearest is not None:
            lines.append(f"body plan    one animal's keypoints within the labelled distances of "
                         f"{_pairs_known(a.nearest)} pairs (--no-body-check: affinity alone)")
    if spec.body is not None:  # what the runtime's body-plan check knows of the animal
        lines.append(f"body check   largest distances of {_pairs_known(spec.body.limit)} keypoint pairs; left/right: "
                     f"{', '.join('-'.join(p) for p in spec.body.pairs) or '(none)'} (--no-body-check: off)")
    for key in ("backend", "framework_versions", "model", "dataset", "train_config_sha256", "weights_sha256",
                "precision", "created"):
        if key in prov:
            lines.append(f"{key:<12} {_short(prov[key])}")
    for key in ("metrics", "parity", "variant_accuracy"):
        if key in prov:
            lines.append(f"{key:<12} {_short(prov[key])}")
    graph_in = ", ".join(f"{i.name} {i.type} {i.shape}" for i in model.session.get_inputs())
    graph_out = ", ".join(f"{o.name} {o.type} {o.shape}" for o in model.session.get_outputs())
    lines += [f"graph in     {graph_in}", f"graph out    {graph_out}"]
    return "\n".join(lines)


def _pairs_known(matrix: list[list[float | None]]) -> str:
    """How many keypoint pairs a symmetric distance matrix gives a value, as "N of M"."""
    k = len(matrix)
    return f"{sum(v is not None for row in matrix for v in row) // 2} of {k * (k - 1) // 2}"


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={_short(v)}" for k, v in value.items())
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)

"""The framework-side road from pixels to poses: the runtime's geometry -> a backend's network ->
the reference decoder -> `Poses` in frame pixels.

Training evaluates with it and export's parity gate compares the exported graph (through
`PoseModel`) against it, so both see exactly the pixels the runtime will feed the graph. Each
backend supplies only ``forward``: prepared uint8 frames -> heatmap probabilities and locref.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from posezoo.runtime import geometry
from posezoo.runtime.assemble import graph_indices, poses_from_candidates
from posezoo.runtime.body import check_body
from posezoo.runtime.poses import Poses
from posezoo.runtime.spec import Spec

from .data import decode, edge_affinities, peak_candidates

#: uint8 (N, H, W, 3) frames in the model's colour order -> probabilities (N, K, h, w) and
#: locref (N, K, 2, h, w), both numpy; a multi-animal network adds its part-affinity fields
#: (N, E, 2, h, w) and, with an identity head, identity probabilities (N, I, h, w).
Forward = Callable[[np.ndarray], tuple[np.ndarray, ...]]
#: RGB frames of any sizes -> their `Poses`.
Predictor = Callable[[Sequence[np.ndarray]], Poses]


def _batches(frames: Sequence[np.ndarray], spec: Spec, color: str,
             batch_size: int) -> Iterator[tuple[list[int], geometry.Plan, np.ndarray]]:
    """Frames grouped by size, ``batch_size`` at a time: (their indices, the plan, the input batch)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, frame in enumerate(frames):
        groups.setdefault(frame.shape[:2], []).append(i)
    swap = color.lower() != spec.input.color.lower()
    for (h, w), idx in groups.items():
        plan = geometry.plan(h, w, spec.input, spec.preprocess)
        for start in range(0, len(idx), batch_size):
            chunk = idx[start:start + batch_size]
            batch = np.empty((len(chunk), *plan.tensor, 3), np.uint8)
            for j, i in enumerate(chunk):
                geometry.apply(frames[i], plan, spec.preprocess, swap_rb=swap, out=batch[j])
            yield chunk, plan, batch


def predict_frames(forward: Forward, frames: Sequence[np.ndarray], spec: Spec, *, color: str = "rgb",
                   batch_size: int = 8) -> Poses:
    """Frames of any sizes (grouped by size, ``batch_size`` at a time) -> `Poses` in frame pixels."""
    if spec.multi is not None:
        return _predict_multi(forward, frames, spec, color=color, batch_size=batch_size)
    coords = np.empty((len(frames), 1, len(spec.keypoints), 3), np.float32)
    dec = spec.decode
    for chunk, plan, batch in _batches(frames, spec, color, batch_size):
        probs, locref = forward(batch)
        coords[chunk, 0] = plan.to_frame(decode(probs, locref, dec.stride, offset=dec.offset, locref_scale=dec.locref_scale))
    if spec.body is not None:
        coords = check_body(coords, spec)
    return Poses(coords, spec.keypoints, skeleton=spec.skeleton, scorer=spec.name, model=spec.name)


def multi_outputs(outputs: tuple[np.ndarray, ...], spec: Spec) -> dict[str, np.ndarray]:
    """A multi-animal network's outputs -> what its exported graph returns (input pixels): the
    reference the graph's in-graph peak finding and affinities are checked against."""
    assert spec.multi is not None
    dec, m = spec.decode, spec.multi
    probs, locref, paf = outputs[:3]
    cand = peak_candidates(probs, locref, m.candidates, dec.stride, offset=dec.offset, locref_scale=dec.locref_scale)
    out = {"candidates": cand,
           "affinities": edge_affinities(paf, cand, graph_indices(spec), dec.stride, offset=dec.offset,
                                         samples=m.paf_samples)}
    if m.identity:
        ident = outputs[3]  # (N, I, h, w) probabilities, gathered at each candidate's cell
        n, i, h, w = ident.shape
        col = np.clip(np.floor((cand[..., 0] - dec.offset) / dec.stride + 0.5), 0, w - 1).astype(np.int64)
        row = np.clip(np.floor((cand[..., 1] - dec.offset) / dec.stride + 0.5), 0, h - 1).astype(np.int64)
        flat = ident.reshape(n, i, h * w)
        cells = (row * w + col).reshape(n, 1, -1)
        out["identity"] = np.take_along_axis(flat, np.broadcast_to(cells, (n, i, cells.shape[-1])), -1) \
            .reshape(n, i, *cand.shape[1:3]).transpose(0, 2, 3, 1)
    return out


def _predict_multi(forward: Forward, frames: Sequence[np.ndarray], spec: Spec, *, color: str,
                   batch_size: int) -> Poses:
    parts: list[tuple[list[int], Poses]] = []
    for chunk, plan, batch in _batches(frames, spec, color, batch_size):
        out = multi_outputs(forward(batch), spec)
        parts.append((chunk, poses_from_candidates(spec, plan.to_frame(out["candidates"]), out["affinities"],
                                                   out.get("identity"))))
    first = parts[0][1]
    coords = np.full((len(frames), *first.coords.shape[1:]), np.nan, np.float32)
    unique = np.full((len(frames), *first.unique.shape[1:]), np.nan, np.float32) if first.unique is not None else None
    for chunk, poses in parts:
        coords[chunk] = poses.coords
        if unique is not None:
            unique[chunk] = poses.unique
    return Poses(coords, first.keypoints, first.individuals, unique=unique, unique_keypoints=first.unique_keypoints,
                 skeleton=first.skeleton, scorer=spec.name, model=spec.name)


def predictor(forward: Forward, spec: Spec) -> Predictor:
    """``predict_frames`` bound to one network and spec (RGB frames)."""
    return lambda frames: predict_frames(forward, frames, spec)

"""training.data: geometry keeps keypoints on their pixels, targets decode back, loader is reproducible."""
from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from posezoo.training.data import (AugmentConfig, BatchLoader, TargetConfig, augment, decode, flip_pairs,
                                   make_targets)

# Six markers whose colours differ in which channels are lit, so a bilinearly blended pixel
# (alpha * colour over black) still tells which marker it came from.
COLOURS = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]],
                   np.uint8)
NAMES = ["left_ear", "right_ear", "LeftPaw", "RightPaw", "snout", "tailbase"]
PAIRS = [(0, 1), (2, 3)]
RADIUS = 5
GEOMETRY_ONLY = dict(brightness=0.0, contrast=0.0, noise_std=0.0, motion_blur_prob=0.0)


def marker_image(rng: np.random.Generator, height: int = 300, width: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """Black image with a coloured disk centred on each integer keypoint, disks well apart."""
    kps: list[tuple[int, int]] = []
    while len(kps) < len(COLOURS):
        p = (int(rng.integers(20, width - 20)), int(rng.integers(20, height - 20)))
        if all(math.dist(p, q) > 6 * RADIUS for q in kps):
            kps.append(p)
    img = np.zeros((height, width, 3), np.uint8)
    for p, c in zip(kps, COLOURS):
        cv2.circle(img, p, RADIUS, tuple(int(v) for v in c), -1)
    return img, np.array(kps, np.float64)


def marker_centroid(img: np.ndarray, colour: np.ndarray) -> tuple[np.ndarray | None, float]:
    """Alpha-weighted centroid (x, y) of one marker colour and its alpha mass."""
    lit = img > 0
    mask = np.all(lit == (colour > 0), axis=2) & lit.any(axis=2)
    alpha = np.where(mask, img.max(axis=2) / 255.0, 0.0)
    mass = alpha.sum()
    if mass == 0:
        return None, 0.0
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    return np.array([(alpha * xs).sum() / mass, (alpha * ys).sum() / mass]), float(mass)


@pytest.mark.parametrize("flip", [0.0, 1.0])
def test_keypoints_stay_on_their_pixels(flip: float) -> None:
    cfg = AugmentConfig(rotation=45, scale=(0.7, 1.4), translation=0.4, flip_prob=flip, **GEOMETRY_ONLY)
    sizes = [(128, 128), (96, 256), (160, 224), (320, 416)]
    margin = RADIUS * 1.4 + 2
    checked = lost = 0
    angle_changes = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        img, kps = marker_image(rng)
        H, W = sizes[seed % len(sizes)]
        out, moved = augment(img, kps, (H, W), cfg, rng, PAIRS)
        assert out.shape == (H, W, 3) and out.dtype == np.uint8 and moved.shape == kps.shape
        source = list(range(len(kps)))
        if flip:
            for i, j in PAIRS:
                source[i], source[j] = j, i
        for k, src in enumerate(source):
            centre, _ = marker_centroid(out, COLOURS[src])
            if np.isnan(moved[k]).any():
                lost += 1
                # A keypoint reported lost must have left the crop: whatever of its marker is
                # still visible hugs the border.
                if centre is not None:
                    assert min(centre[0], W - 1 - centre[0], centre[1], H - 1 - centre[1]) < margin
                continue
            x, y = moved[k]
            if min(x, W - 1 - x, y, H - 1 - y) < margin:
                continue  # marker partly cut off: its centroid is biased, nothing to compare
            assert centre is not None, f"seed {seed}: marker {src} missing at keypoint {k}"
            np.testing.assert_allclose(centre, moved[k], atol=0.2, err_msg=f"seed {seed} keypoint {k}")
            assert np.array_equal(out[int(round(y)), int(round(x))], COLOURS[src])
            checked += 1
        if not np.isnan(moved[[4, 5]]).any():
            a0 = math.atan2(*(kps[5] - kps[4])[::-1])
            a1 = math.atan2(*(moved[5] - moved[4])[::-1].astype(float))
            angle_changes.append(abs((a1 - a0 + math.pi) % (2 * math.pi) - math.pi))
    # The sweep really exercised rotation (or mirroring), kept most markers, and cropped some.
    assert checked > 100 and lost > 0
    assert max(angle_changes) > math.radians(20)


def test_flip_mirrors_image_and_swaps_left_right() -> None:
    rng = np.random.default_rng(3)
    img, kps = marker_image(rng)
    still = AugmentConfig(rotation=0, scale=(1, 1), translation=0, flip_prob=0, **GEOMETRY_ONLY)
    mirror = AugmentConfig(rotation=0, scale=(1, 1), translation=0, flip_prob=1, **GEOMETRY_ONLY)
    a, ka = augment(img, kps, (224, 256), still, np.random.default_rng(0), PAIRS)
    b, kb = augment(img, kps, (224, 256), mirror, np.random.default_rng(0), PAIRS)
    assert np.array_equal(b, a[:, ::-1])
    swap = [1, 0, 3, 2, 4, 5]
    np.testing.assert_allclose(kb[:, 0], 255 - ka[swap, 0])
    np.testing.assert_allclose(kb[:, 1], ka[swap, 1])


def test_flip_pairs_inferred_and_explicit() -> None:
    assert flip_pairs(["snout", "leftear", "rightear", "tailbase"]) == [(1, 2)]
    names = ["l_ear", "R_EAR", "EarLeft", "earright", "front_left_paw", "front_right_paw", "paw-l", "paw-r",
             "nose", "leftonly"]
    assert flip_pairs(names) == [(0, 1), (2, 3), (4, 5), (6, 7)]
    assert flip_pairs(NAMES) == PAIRS
    # a capital L/R glued to a word pairs; the same letters inside words (Lick, Rat) or lower case
    # (pawl: a paw's "l"?) do not
    glued = ["EarL", "EarR", "LForepaw", "RForepaw", "Lick", "Rat", "pawl", "pawr", "wrist2L", "wrist2R"]
    assert flip_pairs(glued) == [(0, 1), (2, 3), (8, 9)]
    assert flip_pairs(["a", "b", "c"], pairs=[("c", "a")]) == [(0, 2)]
    with pytest.raises(ValueError, match="unknown bodypart 'z'"):
        flip_pairs(["a", "b"], pairs=[("a", "z")])
    with pytest.raises(ValueError, match="more than one flip pair"):
        flip_pairs(["a", "b", "c"], pairs=[("a", "b"), ("a", "c")])


def test_evaluation_crop_is_deterministic_and_exact() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)
    kps = np.array([[200.0, 100.5], [230.0, 140.0], [np.nan, np.nan]])
    cfg = AugmentConfig(enabled=False)
    out, moved = augment(img, kps, (128, 128), cfg, np.random.default_rng(1))
    again, _ = augment(img, kps, (128, 128), cfg, np.random.default_rng(2))
    assert np.array_equal(out, again)
    shift = kps[0] - moved[0]
    assert np.allclose(shift, np.round(shift))  # integer shift: pixels copied, not resampled
    x0, y0 = (int(v) for v in shift)
    assert np.array_equal(out, img[y0:y0 + 128, x0:x0 + 128])
    # The window is centred on the animal (keypoint box centre x = 215, y = 120.25).
    assert x0 == round(215 - 63.5) and y0 == round(120.25 - 63.5)
    assert np.isnan(moved[2]).all()
    # Full-size output is the identity; a larger output pads the image with zeros around it.
    same, k_same = augment(img, kps, (240, 320), cfg, np.random.default_rng(0))
    assert np.array_equal(same, img) and np.allclose(k_same[:2], kps[:2])
    big, k_big = augment(img, kps, (256, 384), cfg, np.random.default_rng(0))
    dx, dy = (int(v) for v in k_big[0] - kps[0])
    assert 0 <= dx <= 64 and 0 <= dy <= 16
    assert np.array_equal(big[dy:dy + 240, dx:dx + 320], img)
    assert big.sum(dtype=np.int64) == img.sum(dtype=np.int64)


def test_keypoints_outside_the_crop_become_nan() -> None:
    img = np.zeros((300, 400, 3), np.uint8)
    kps = np.array([[10.0, 150.0], [390.0, 150.0], [200.0, 150.0]])  # wider than the crop
    out, moved = augment(img, kps, (64, 64), AugmentConfig(enabled=False), np.random.default_rng(0))
    assert np.isnan(moved[0]).all() and np.isnan(moved[1]).all()
    # Centred window: offset 200 - 31.5 = 168.5 rounds up to 169 (and 150 - 31.5 to 119).
    np.testing.assert_allclose(moved[2], [31.0, 31.0])


def test_photometric_keeps_geometry_and_changes_pixels() -> None:
    rng = np.random.default_rng(5)
    img, kps = marker_image(rng)
    blur = AugmentConfig(rotation=0, scale=(1, 1), translation=0, flip_prob=0, brightness=0, contrast=0,
                         noise_std=0, motion_blur_prob=1.0, motion_blur_max_kernel=9)
    out, moved = augment(img, kps, (300, 400), blur, np.random.default_rng(1))
    assert not np.array_equal(out, img)
    for k in range(len(kps)):
        centre, _ = marker_centroid(out, COLOURS[k])
        np.testing.assert_allclose(centre, moved[k], atol=0.2)
    grey = np.full((64, 64, 3), 128, np.uint8)
    colour = AugmentConfig(rotation=0, scale=(1, 1), translation=0, flip_prob=0, brightness=0.2,
                           contrast=0.0, noise_std=0, motion_blur_prob=0)
    shifts = [augment(grey, np.full((1, 2), np.nan), (64, 64), colour, np.random.default_rng(s))[0].mean() - 128
              for s in range(20)]
    assert max(np.abs(shifts)) <= 0.2 * 255 + 1 and np.std(shifts) > 10
    noisy = AugmentConfig(rotation=0, scale=(1, 1), translation=0, flip_prob=0, brightness=0, contrast=0,
                          noise_std=20, motion_blur_prob=0)
    stds = [augment(grey, np.full((1, 2), np.nan), (64, 64), noisy, np.random.default_rng(s))[0].std()
            for s in range(20)]
    assert 0 < max(stds) <= 21


def test_make_targets_values() -> None:
    t = TargetConfig(stride=8)
    assert (t.sigma, t.locref_radius, t.locref_scale, t.offset) == (8.0, 16.0, 7.2, 3.5)
    kps = np.array([[50.0, 21.0], [np.nan, np.nan], [70.0, 300.0], [-0.5, 0.0]])
    out = make_targets(kps, (64, 96), t)
    assert out["heatmap"].shape == (4, 8, 12) and out["locref"].shape == (4, 2, 8, 12)
    assert out["locref_mask"].shape == (4, 8, 12) and out["weight"].shape == (4,)
    assert all(v.dtype == np.float32 for v in out.values())
    # an unlabelled keypoint teaches "absent" (an empty heatmap, weight 1), as in DeepLabCut, unless ignored;
    # one below the input is labelled: its Gaussian lies outside, so its heatmap here is empty too
    np.testing.assert_array_equal(out["weight"], [1, 1, 1, 1])
    ignored = make_targets(kps, (64, 96), TargetConfig(stride=8, unlabeled="ignore"))
    np.testing.assert_array_equal(ignored["weight"], [1, 0, 1, 1])
    np.testing.assert_array_equal(ignored["heatmap"], out["heatmap"])
    for k in (1, 2):
        assert not out["heatmap"][k].any() and not out["locref"][k].any() and not out["locref_mask"][k].any()
    # Keypoint (50, 21): nearest cell col round((50-3.5)/8) = 6 (x 51.5), row round(17.5/8) = 2 (y 19.5).
    hm = out["heatmap"][0]
    assert np.unravel_index(hm.argmax(), hm.shape) == (2, 6)
    d2 = (50 - 51.5) ** 2 + (21 - 19.5) ** 2
    assert hm[2, 6] == pytest.approx(math.exp(-d2 / (2 * 64)), rel=1e-6)
    assert out["locref"][0, :, 2, 6] == pytest.approx([-1.5 / 7.2, 1.5 / 7.2], rel=1e-6)
    # Mask: cells within 16 px. Cell (2, 8) is at x 67.5: 17.56 px away -> outside; (2, 7) inside.
    assert out["locref_mask"][0, 2, 7] == 1 and out["locref_mask"][0, 2, 8] == 0
    assert not out["locref"][0, :, 2, 8].any()
    assert int(out["locref_mask"][0].sum()) == sum(
        (50 - (c * 8 + 3.5)) ** 2 + (21 - (r * 8 + 3.5)) ** 2 <= 256 for r in range(8) for c in range(12))
    with pytest.raises(ValueError, match="multiples of the stride 8"):
        make_targets(kps, (60, 96), t)


def test_decode_recovers_make_targets() -> None:
    rng = np.random.default_rng(0)
    for stride in (4, 8, 16):
        t = TargetConfig(stride=stride)
        H, W = 128, 192
        kps = rng.uniform(-0.5, [W - 0.51, H - 0.51], size=(7, 2))
        kps[0] = [-0.5, -0.5]
        kps[1] = [W - 0.51, H - 0.51]
        out = make_targets(kps, (H, W), t)
        dec = decode(out["heatmap"][None], out["locref"][None], stride, offset=t.offset, locref_scale=t.locref_scale)
        assert dec.shape == (1, 7, 3) and dec.dtype == np.float32
        assert np.abs(dec[0, :, :2] - kps).max() < 0.01
        np.testing.assert_allclose(dec[0, :, 2], out["heatmap"].reshape(7, -1).max(axis=1))


def test_decode_formula_and_ties() -> None:
    hm = np.zeros((2, 1, 4, 5), np.float32)
    hm[0, 0, 1, 3] = 0.9
    hm[1, 0, 2, 1] = hm[1, 0, 3, 4] = 0.5  # tie: the first in row-major order wins
    lr = np.zeros((2, 1, 2, 4, 5), np.float32)
    lr[0, 0, :, 1, 3] = [0.5, -1.0]
    dec = decode(hm, lr, stride=8, offset=3.5, locref_scale=7.2)
    np.testing.assert_allclose(dec[0, 0], [3 * 8 + 3.5 + 3.6, 8 + 3.5 - 7.2, 0.9], rtol=1e-6)
    np.testing.assert_allclose(dec[1, 0], [8 + 3.5, 16 + 3.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(decode(hm, None, 8)[0, 0], [27.5, 11.5, 0.9], rtol=1e-6)
    with pytest.raises(ValueError, match="locref must have shape"):
        decode(hm, lr[:, :, :, :3], 8)


def make_loader(images, kps, **kw) -> BatchLoader:
    args = dict(indices=np.arange(len(kps)), batch_size=4, out_size=(96, 128), aug=AugmentConfig(),
                targets=TargetConfig(stride=8), flip_pairs=PAIRS, seed=7, workers=2, prefetch=2)
    args.update(kw)
    return BatchLoader(images, kps, **args)


@pytest.fixture(scope="module")
def marker_set() -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(11)
    pairs = [marker_image(rng, 160, 200) for _ in range(10)]
    kps = np.stack([k for _, k in pairs])
    kps[3, 2] = np.nan  # one unlabeled keypoint
    return [im for im, _ in pairs], kps


def test_loader_shapes_and_consistency(marker_set) -> None:
    images, kps = marker_set
    loader = make_loader(images, kps)
    assert len(loader) == 2
    batches = list(loader)
    assert len(batches) == 2
    b = batches[0]
    assert b["image"].shape == (4, 96, 128, 3) and b["image"].dtype == np.uint8
    assert b["heatmap"].shape == (4, 6, 12, 16) and b["heatmap"].dtype == np.float32
    assert b["locref"].shape == (4, 6, 2, 12, 16) and b["locref"].dtype == np.float32
    assert b["locref_mask"].shape == (4, 6, 12, 16) and b["weight"].shape == (4, 6)
    assert b["coords"].shape == (4, 6, 2) and b["coords"].dtype == np.float32
    for batch in batches:  # targets agree with the keypoints they came from
        dec = decode(batch["heatmap"], batch["locref"], 8)
        assert (batch["weight"] == 1).all()  # unlabelled and off-crop keypoints train an empty heatmap
        on = np.isfinite(batch["coords"]).all(axis=2)
        assert not batch["heatmap"][~on].any()
        assert np.abs(dec[..., :2][on] - batch["coords"][on]).max() < 0.01
    assert len(make_loader(images, kps, drop_last=False, batch_size=3)) == 4
    assert [len(x["image"]) for x in make_loader(images, kps, drop_last=False, batch_size=3)] == [3, 3, 3, 1]


def test_loader_is_a_function_of_seed_and_epoch(marker_set) -> None:
    images, kps = marker_set

    def epoch_of(loader: BatchLoader, epoch: int) -> list[dict[str, np.ndarray]]:
        loader.set_epoch(epoch)
        return list(loader)

    def same(a, b) -> bool:
        return all(np.array_equal(x[k], y[k], equal_nan=k != "image") for x, y in zip(a, b) for k in x)

    threaded = make_loader(images, kps, workers=2)
    inline = make_loader(images, kps, workers=0)
    e3 = epoch_of(threaded, 3)
    assert same(e3, epoch_of(inline, 3))  # thread scheduling does not matter
    assert same(e3, epoch_of(make_loader(images, kps, workers=2, prefetch=1), 3))
    assert not same(e3, epoch_of(threaded, 4))
    assert not same(e3, epoch_of(make_loader(images, kps, seed=8), 3))
    # Iterating advances the epoch, and set_epoch rewinds it (resume).
    threaded.set_epoch(3)
    list(threaded)
    assert threaded.epoch == 4 and same(list(threaded), epoch_of(inline, 4))
    assert same(e3, epoch_of(threaded, 3))
    # A partially consumed epoch stops its workers cleanly.
    it = iter(make_loader(images, kps))
    next(it)
    it.close()


def test_loader_callable_images_and_errors(marker_set, tmp_path: Path) -> None:
    images, kps = marker_set
    for i, im in enumerate(images):
        cv2.imwrite(str(tmp_path / f"{i}.png"), im[..., ::-1])

    def read(i: int) -> np.ndarray:
        return cv2.imread(str(tmp_path / f"{i}.png"))[..., ::-1]

    a = list(make_loader(read, kps, aug=AugmentConfig(enabled=False), shuffle=False))
    b = list(make_loader(images, kps, aug=AugmentConfig(enabled=False), shuffle=False))
    assert all(np.array_equal(x["image"], y["image"]) for x, y in zip(a, b))
    bad = list(images)
    bad[2] = images[2].astype(np.float32)
    with pytest.raises(ValueError, match="sample 2") as err:
        list(make_loader(bad, kps, shuffle=False, workers=2))
    assert "RGB uint8" in str(err.value)
    with pytest.raises(ValueError, match="multiples of the stride"):
        make_loader(images, kps, out_size=(90, 128))
    with pytest.raises(ValueError, match="larger than the 10 samples"):
        make_loader(images, kps, batch_size=11)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        make_loader(images, kps, indices=[0, 10])


def test_openfield_frames_through_the_loader(openfield_dir: Path) -> None:
    h5 = openfield_dir / "labeled-data" / "m4s1" / "CollectedData_Pranav.h5"
    table = pd.read_hdf(h5).sort_index()
    rows = table.iloc[:6]
    bodyparts = list(dict.fromkeys(rows.columns.get_level_values("bodyparts")))
    kps = rows.to_numpy(np.float64).reshape(len(rows), len(bodyparts), 2)
    images = [cv2.imread(str(openfield_dir / str(name)))[..., ::-1] for name in rows.index]
    assert flip_pairs(bodyparts) == [(1, 2)]
    pairs = flip_pairs(bodyparts)
    assert bodyparts == ["snout", "leftear", "rightear", "tailbase"] and pairs == [(1, 2)]

    def side(k: np.ndarray, part: int) -> np.ndarray:
        """Which side of the snout -> tailbase line a bodypart is on (sign of the cross product)."""
        axis, rel = k[:, 3] - k[:, 0], k[:, part] - k[:, 0]
        return np.sign(axis[:, 0] * rel[:, 1] - axis[:, 1] * rel[:, 0])

    src = side(kps, 1)
    assert np.all(src == -side(kps, 2))  # in these frames the ears straddle the body axis
    for swap, expect in ((pairs, src), ((), -src)):
        aug = AugmentConfig(flip_prob=1.0)
        loader = BatchLoader(images, kps, np.arange(6), batch_size=3, out_size=(256, 256), aug=aug,
                             targets=TargetConfig(stride=8), flip_pairs=swap, seed=0, shuffle=False)
        batches = list(loader)
        for batch in batches:
            # The open-field mouse fits a 256 px crop, so every labeled keypoint survives.
            assert batch["weight"].all()
            dec = decode(batch["heatmap"], batch["locref"], 8)
            assert np.abs(dec[..., :2] - batch["coords"]).max() < 0.01
        out = np.concatenate([b["coords"] for b in batches])
        # Mirroring flips handedness; swapping left/right restores it. Rotation never changes it.
        np.testing.assert_array_equal(side(out, 1), expect)

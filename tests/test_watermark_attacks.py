"""Watermark v2: the geometry search and the flat-area handling behind the harder attacks of
bench/watermark.py (rotation of non-square pictures, caption bars, screenshots, crops)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pixelmill.labels import watermark as wm
from pixelmill.labels import wm_grid
from pixelmill.labels.samples import generated_like

KEY = b"test key: not a real secret"


def _photo(name: str, size: tuple[int, int]) -> Image.Image:
    data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the test photos")
    arr = getattr(data, name)()
    arr = arr[0] if isinstance(arr, tuple) else arr  # stereo_motorcycle: (left, right, disparity)
    return Image.fromarray(arr).convert("RGB").resize(size, Image.Resampling.LANCZOS)


def _found(image: Image.Image) -> bool:
    det = wm.detect(image, [KEY])
    return det.found and det.text == "AI-GEN"


def test_rotation_on_the_grid_is_the_pixels_rotation():
    """The grid squeezes a W x H picture into a square: a rotation of the pixels is a rotation and a
    shear there, which the search must use (a plain rotation loses non-square pictures)."""
    w, h = 768, 512
    squeeze = np.diag([wm_grid.G / h, wm_grid.G / w])  # (row, column) of a pixel -> of the grid
    c, s = np.cos(np.radians(2)), np.sin(np.radians(2))
    in_pixels = np.array([[c, -s], [s, c]])
    assert np.allclose(squeeze @ in_pixels @ np.linalg.inv(squeeze), wm_grid._rotation(2, w / h))
    assert np.allclose(wm_grid._rotation(2, 1.0), in_pixels)
    assert not np.allclose(wm_grid._rotation(2, w / h), in_pixels)


@pytest.mark.parametrize("name", ["stereo_motorcycle", "page"])
def test_rotated_non_square_photo(name):
    marked = wm.embed(_photo(name, (768, 512)), "AI-GEN", key=KEY)
    assert _found(marked.rotate(2, Image.Resampling.BICUBIC))
    assert _found(marked.rotate(-2, Image.Resampling.BICUBIC))


def test_flat_areas_are_filled_and_weigh_nothing():
    rng = np.random.default_rng(0)
    y = 128 + 30 * np.sin(np.arange(wm_grid.G) / 7.0)[:, None] + rng.normal(0, 3, (wm_grid.G, wm_grid.G))
    y[-34:] = 18.0  # a dark caption bar over the bottom 13 %
    filled, keep = wm_grid._unflat(y)
    assert keep is not None and not keep[-34:].any() and keep[:-50].all()
    # the bar's step (about 110 grey levels) is gone: the fill continues the picture smoothly
    assert abs(filled[-30:].mean() - y[:-40].mean()) < 40
    assert np.abs(np.diff(y[-50:], axis=0)).max() > 90 and np.abs(np.diff(filled[-50:], axis=0)).max() < 40
    yb, w = wm_grid._analyse(y)
    assert (w[-34:] == 0).all() and (w[:-50] > 0).all()
    # nothing flat, or nearly everything flat (a blank picture): left alone
    assert wm_grid._unflat(y[:-40].copy())[1] is None
    assert wm_grid._unflat(np.full((wm_grid.G, wm_grid.G), 128.0))[1] is None


def test_clipped_mark_is_not_taken_for_flat_fill():
    """On black and white areas the mark is clipped to one side, leaving small flat patches: those stay."""
    img = Image.new("RGB", (512, 512), (0, 0, 0))
    ImageDraw.Draw(img).rectangle([0, 0, 255, 511], fill=(255, 255, 255))
    marked = wm.embed(img, "AI-GEN", key=KEY)
    _, keep = wm_grid._unflat(wm_grid._grid(marked))
    assert keep is None or keep.mean() > 0.9


@pytest.mark.parametrize("name", ["stereo_motorcycle", "page"])
def test_dark_caption_bar_on_busy_photo(name):
    """A dark bar's edge against a busy picture used to ring through the mark's band."""
    marked = wm.embed(_photo(name, (768, 512)), "AI-GEN", key=KEY)
    barred = marked.copy()
    draw = ImageDraw.Draw(barred)
    draw.rectangle([0, 512 - 67, 768, 512], fill=(18, 18, 18))
    draw.text((10, 512 - 59), "Caption text over the picture, 2026", fill=(255, 255, 255))
    assert _found(barred)


def test_unmarked_busy_pictures_stay_clean_under_the_wider_search():
    """Decoding several geometries per key must not let an unmarked picture through (CRC-32)."""
    pictures = [generated_like(384, 70, "scene"), _photo("stereo_motorcycle", (768, 512))]
    for im in pictures:
        det = wm.detect(im, [KEY, wm.DEMO_KEY])
        assert not det.found and det.key_id is None


def test_black_and_white_picture_is_read_at_its_own_geometry():
    """On a picture of pure black and white blobs the blobs' edges outscore the (clipped) sync at every
    shift; the original geometry at shift zero, tried without a search, still reads the mark."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the test pictures")
    blobs = data.binary_blobs(512, rng=0)
    img = Image.fromarray(np.repeat(blobs[..., None], 3, axis=2).astype(np.uint8) * 255, "RGB")
    marked = wm.embed(img, "AI-GEN", key=KEY)
    assert _found(marked)
    assert _found(marked.transpose(Image.Transpose.FLIP_LEFT_RIGHT))


def test_decodings_per_key_are_bounded():
    """The false-positive bound counts DECODINGS full and SHORT_DECODINGS short decodings per key: the
    search never yields more."""
    for im in (generated_like(384, 71, "scene"), _photo("gravel", (512, 512))):
        pair, lattices = wm._prepare(im)
        shorts = [short for *_, short in wm._candidates(pair, lattices, wm._basis(KEY))]
        assert wm.TRIED <= len(shorts) - sum(shorts) <= wm.DECODINGS == 15
        assert sum(shorts) <= wm.SHORT_DECODINGS == 96


def test_embedder_plans_for_crops():
    """On busy texture the picture's part of a reading changes when a strip is cropped away; the embedder
    plans for the crops in CROPS, so the bits read at those crops' geometries are far more often right."""
    from pixelmill.labels.wm_grid import _luma

    img = _photo("grass", (512, 512))
    basis = wm._basis(KEY)
    want = wm._bits(wm.payload_bytes("AI-GEN"))
    errors = {}
    for crops in (wm.CROPS, ()):
        y = _luma(np.asarray(wm.embed(img, "AI-GEN", key=KEY, crops=crops), dtype=np.float64))
        readings = [wm._measure(y, basis)] + wm._measure_cropped(y, basis)
        errors[len(crops)] = [int(((r[1:] > 0) != want).sum()) for r in readings]
    planned, unplanned = errors[len(wm.CROPS)], errors[0]
    assert planned[0] == 0 and unplanned[0] == 0  # the picture as it is reads right either way
    assert sum(planned[1:]) < 0.75 * sum(unplanned[1:])


def _rgb(im: Image.Image) -> np.ndarray:
    return np.asarray(im.convert("RGB"), dtype=np.float64)


def _psnr(a: Image.Image, b: Image.Image) -> float:
    return float(10 * np.log10(255.0**2 / ((_rgb(a) - _rgb(b)) ** 2).mean()))


def test_luminance_change_is_spread_by_the_luminance_weights():
    """PSNR counts R, G and B alike while the detector reads luminance: a change in proportion to the
    luminance weights moves luminance 1 / sqrt(0.746) = 1.16 times as far per unit of RMS error as the
    same change on all three channels."""
    img = generated_like(256, 3, "scene")
    luma = np.array([0.299, 0.587, 0.114])
    ratio = {}
    for name, channels in (("weighted", wm.CHANNELS), ("equal", np.ones(3))):
        marked = wm.embed(img, "AI-GEN", key=KEY, channels=channels)
        d = _rgb(marked) - _rgb(img)
        ratio[name] = float(np.sqrt(((d @ luma) ** 2).mean() / (d**2).mean()))
        assert 38.0 <= _psnr(img, marked) <= 38.4  # the budget is spent, not exceeded
        assert _found(marked)
        rms = np.sqrt((d**2).mean(axis=(0, 1)))
        if name == "weighted":
            assert rms[1] > 1.6 * rms[0] > 3 * rms[2]  # green carries most, blue least
    assert ratio["equal"] == pytest.approx(1.0, abs=0.03)
    assert ratio["weighted"] > 1.12


def test_marks_of_the_previous_embedder_are_still_read():
    """The layout is unchanged: a mark made the earlier way (the same change on R, G and B, RMS 3) reads."""
    img = _photo("astronaut", (512, 512))
    marked = wm.embed(img, "AI-GEN", key=KEY, channels=np.ones(3), rms=3.0)
    assert _found(marked)
    assert _found(marked.crop((0, 0, 512, 461)))


@pytest.mark.parametrize("kind", ["dark", "light"])
def test_budget_is_spent_on_pale_and_dark_pictures(kind):
    """Clipping near black or white leaves PSNR budget unspent: the change is scaled up (at most UPSCALE)."""
    img = generated_like(256, 4, kind)
    marked = wm.embed(img, "AI-GEN", key=KEY, rms=2.8)  # about 2 dB short of the budget before scaling
    assert 38.0 <= _psnr(img, marked) <= 38.4
    assert _found(marked)


def test_sub_pixel_shifts_around_the_sync_are_decoded():
    """The sync's peak on busy texture can sit a fraction of a pixel off the mark; the 8 nudged shifts are
    decoded with the short list (no more than SHORT_DECODINGS of them per key)."""
    sync = (5.0, False, np.zeros((wm.T, wm.T), complex), 10.25, 20.5)
    shifts = [(round(s[3] - 10.25, 3), round(s[4] - 20.5, 3)) for s in wm._nudged(sync)]
    step = wm.SHIFT_STEP
    grid = {(round(i * step, 3), round(j * step, 3)) for i in range(-2, 3) for j in range(-2, 3)}
    assert len(shifts) == 24 and set(shifts) == grid - {(0.0, 0.0)}
    assert max(np.hypot(*d) for d in shifts[:8]) < min(np.hypot(*d) for d in shifts[8:])  # nearest first
    # a mark read half a shift step off: right at the mark, worse at the offset
    img = _photo("grass", (512, 512))
    marked = wm.embed(img, "AI-GEN", key=KEY)
    pair, _ = wm._prepare(marked)
    basis = wm._basis(KEY)
    tile = wm._wfold(pair[0], pair[1], np.eye(2))
    spec = np.fft.fft2(tile - tile.mean())
    want = wm._bits(wm.payload_bytes("AI-GEN"))

    def errors(sy, sx):
        return int(((wm._project((0.0, False, spec, sy, sx), basis)[2][1:] > 0) != want).sum())

    assert errors(0, 0) <= 1 and errors(1.0, 1.0) >= 3  # the bits are right only near the exact place
    pulled = (5.0, False, spec, 2 * step, -step)  # a sync peak pulled off the mark: a nudge is back on it
    assert min(errors(r[3], r[4]) for r in wm._nudged(pulled)) == errors(0, 0)


def test_edges_weigh_less_than_calm_areas(monkeypatch):
    """Fold weights go as local band energy ** -WEIGHT_POWER (1.5): on a black-and-white picture the blobs'
    edges outscore the sync with weights of power 1; with 1.5 a rotated copy reads."""
    data = pytest.importorskip("skimage.data", reason="scikit-image (dev extra) ships the test pictures")
    blobs = data.binary_blobs(512, rng=0)
    img = Image.fromarray(np.repeat(blobs[..., None], 3, axis=2).astype(np.uint8) * 255, "RGB")
    key = b"blobs key 1"
    found = {}
    assert wm_grid.WEIGHT_POWER == 1.5
    for power in (1.5, 1.0):
        monkeypatch.setattr(wm_grid, "WEIGHT_POWER", power)
        marked = wm.embed(img, "AI-GEN", key=key)
        det = wm.detect(marked.rotate(2, Image.Resampling.BICUBIC), [key])
        found[power] = det.found and det.text == "AI-GEN"
    assert found == {1.5: True, 1.0: False}

"""Baseline for bench/watermark.py: invisible-watermark's dwtDct (the method SDXL uses) under the same attacks.

Not a pixelmill dependency. To run it, in the project venv (torch is already there; do not add torchvision):
    .venv/bin/pip install --no-deps invisible-watermark opencv-python-headless PyWavelets
    .venv/bin/python bench/watermark_dwtdct.py
Prints, per size and image kind, PSNR and min/mean fraction of the 48 payload bits read back right
("refused" where the library will not embed or decode: it needs images of at least 256 x 256).
"""

from __future__ import annotations

import io
import sys
import warnings

import numpy as np
from PIL import Image

from pixelmill.labels.samples import generated_like

try:
    import cv2
    from imwatermark import WatermarkDecoder, WatermarkEncoder
except ImportError as exc:
    sys.exit(f"needs invisible-watermark, opencv-python-headless and PyWavelets ({exc}); see the docstring")

PAYLOAD = b"AI-GEN"  # 48 bits, as SDXL uses
WANT = np.unpackbits(np.frombuffer(PAYLOAD, np.uint8))


def jpeg(img, quality=80):
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def half(img):
    return img.resize((img.width // 2, img.height // 2), Image.Resampling.BICUBIC)


ATTACKS = {"none": lambda x: x, "jpeg80": jpeg, "half": half, "jpeg80+half": lambda x: half(jpeg(x))}


def bits_right(img) -> float:
    try:
        got = WatermarkDecoder("bytes", 48).decode(cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR), "dwtDct")
    except Exception:  # noqa: BLE001 - it refuses images below 256 px
        return float("nan")
    bits = np.unpackbits(np.frombuffer(bytes(got)[:6].ljust(6, b"\0"), np.uint8))
    return float((bits == WANT).mean())


def main() -> int:
    warnings.simplefilter("ignore", RuntimeWarning)
    print("invisible-watermark dwtDct, 48 bits; bits right min/mean over 5 seeds")
    for size in (64, 128, 256, 512):
        for kind in ("scene", "upscaled", "light", "flat"):
            if kind == "upscaled" and size <= 64:
                continue
            res = {a: [] for a in ATTACKS}
            psnrs = []
            refused = None
            for seed in range(5):
                img = generated_like(size, seed, kind)
                enc = WatermarkEncoder()
                enc.set_watermark("bytes", PAYLOAD)
                try:
                    out = enc.encode(cv2.cvtColor(np.asarray(img), cv2.COLOR_RGB2BGR), "dwtDct")
                except Exception as exc:  # noqa: BLE001 - it refuses small images
                    refused = str(exc)[:70]
                    break
                marked = Image.fromarray(cv2.cvtColor(out, cv2.COLOR_BGR2RGB))
                a, b = np.asarray(img, float), np.asarray(marked, float)
                psnrs.append(10 * np.log10(255**2 / max(((a - b) ** 2).mean(), 1e-9)))
                for name, attack in ATTACKS.items():
                    res[name].append(bits_right(attack(marked)))
            if refused:
                print(f"{size:4} {kind:9} refused: {refused}")
                continue
            cells = " ".join(
                f"{n}=refused" if np.all(np.isnan(v)) else f"{n}={np.nanmin(v):.2f}/{np.nanmean(v):.2f}"
                for n, v in res.items())
            print(f"{size:4} {kind:9} psnr {np.mean(psnrs):5.1f} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Image checks: a diffusers safety checker's verdict, and an optional image classifier (NudeNet).

``nsfw_verdict(pipeline_output)`` reads diffusers' ``nsfw_content_detected`` (one flag per image; None
when the pipeline has no safety checker), so a flagged image is reported instead of passing on as the
all-black picture the checker leaves in its place.

``NudeNetClassifier`` is an optional extra (``pip install 'pixelmill[nudenet]'``, off by default): the
``nudenet`` wheel ships an ONNX detector; its package metadata says MIT but the LICENSE file inside the
wheel is the AGPL-3.0 text, so pixelmill never installs it for you. An image is flagged when an
"exposed" class is detected above the threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

EXPOSED = ("FEMALE_GENITALIA_EXPOSED", "MALE_GENITALIA_EXPOSED", "FEMALE_BREAST_EXPOSED", "BUTTOCKS_EXPOSED",
           "ANUS_EXPOSED")


def nsfw_verdict(output) -> list[bool] | None:
    """One bool per image from a diffusers pipeline output, or None when no safety checker ran."""
    flags = getattr(output, "nsfw_content_detected", None)
    if flags is None and isinstance(output, dict):
        flags = output.get("nsfw_content_detected")
    if flags is None:
        return None
    return [bool(f) for f in flags]


class ImageClassifierMissing(RuntimeError):
    pass


@dataclass
class ImageVerdict:
    flagged: bool
    detail: str = ""


class NudeNetClassifier:
    def __init__(self, threshold: float = 0.5):
        try:
            from nudenet import NudeDetector
        except ImportError:
            raise ImageClassifierMissing(
                "image_classifier 'nudenet' needs the optional extra: pip install 'pixelmill[nudenet]' "
                "(its wheel carries an AGPL-3.0 LICENSE file; check that it suits you)") from None
        self.detector = NudeDetector()
        self.threshold = threshold

    def check(self, path: str | Path) -> ImageVerdict:
        found = [d for d in self.detector.detect(str(path))
                 if d.get("class") in EXPOSED and float(d.get("score", 0)) >= self.threshold]
        if not found:
            return ImageVerdict(False)
        best = max(found, key=lambda d: d["score"])
        return ImageVerdict(True, f"{best['class']} {float(best['score']):.2f}")

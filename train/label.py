"""Labels on what ``rushes sample`` makes: a visible watermark in the frames and a signed C2PA manifest.

Usage (``rushes.train.sample.sample_to_file`` calls this once per output)::

    labelled_mp4(frames, "dog.mp4", fps, run_dir, model_config, LabelSettings())

The C2PA manifest (:mod:`rushes.media.provenance`) has one ``c2pa.created`` action with digital source type
``trainedAlgorithmicMedia`` and parameters naming the run and the model (its class and the sha256 of its
config). It is signed with ``--c2pa-key``/``--c2pa-cert`` (an EC P-256 key and its certificate chain, PEM,
leaf first); without them, with a per-user certificate generated once under ``~/.config/rushes/c2pa`` (or
``$RUSHES_C2PA_DIR``), and a line on stderr says the signature is self-signed. The visible mark ("AI
generated" by default) is drawn into the bottom-right corner of every frame before encoding; ``--no-visible-
watermark`` leaves the frames as sampled. ``rushes curate`` rejects such a file as ``ai_generated``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path

from rushes.settings import check, setting


@dataclass(frozen=True)
class LabelSettings:
    """How ``rushes sample`` labels its outputs as generated."""

    c2pa_key: str | None = setting(None, "private key (PEM, EC P-256) that signs the output's C2PA manifest",
                                   metavar="FILE", shown="a per-user self-signed key, generated once")
    c2pa_cert: str | None = setting(None, "certificate chain (PEM, leaf first) of --c2pa-key", metavar="FILE",
                                    shown="the per-user self-signed chain")
    visible_watermark: bool = setting(True, "leave out the visible 'AI generated' mark in the frames",
                                      flag="--no-visible-watermark")
    watermark_text: str = setting("AI generated", "text of the visible mark", cli=False)

    def __post_init__(self) -> None:
        check(self)
        if (self.c2pa_key is None) != (self.c2pa_cert is None):
            from rushes.settings import invalid

            raise invalid(self, "c2pa_key", "--c2pa-key and --c2pa-cert go together: give both, or neither for the "
                          "per-user self-signed certificate")


def draw_watermark(frames, text: str = "AI generated"):
    """(T, H, W, 3) uint8 frames with ``text`` blended (75% white, dark outline) into the bottom-right corner."""
    import cv2

    _, h, w, _ = frames.shape
    height = max(6, round(min(h, w) / 12))
    font = cv2.FONT_HERSHEY_SIMPLEX
    thick = max(1, height // 8)
    scale = cv2.getFontScaleFromHeight(font, height, thick)
    (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    while tw > w - 4 and scale > 0.1:  # a narrow frame: shrink until it fits
        scale *= 0.8
        (tw, th), _ = cv2.getTextSize(text, font, scale, thick)
    margin = max(2, height // 3)
    org = (max(0, w - tw - margin), h - margin)
    out = frames.copy()
    for frame in out:
        layer = frame.copy()
        cv2.putText(layer, text, org, font, scale, (0, 0, 0), thick + 2, cv2.LINE_AA)
        cv2.putText(layer, text, org, font, scale, (255, 255, 255), thick, cv2.LINE_AA)
        cv2.addWeighted(layer, 0.75, frame, 0.25, 0, dst=frame)
    return out


def _credentials(settings: LabelSettings):
    from rushes.media.provenance import Credentials

    if settings.c2pa_key is not None:
        return Credentials.load(settings.c2pa_key, settings.c2pa_cert)
    creds = Credentials.user_default()
    folder = os.environ.get("RUSHES_C2PA_DIR") or "~/.config/rushes/c2pa"
    print(f"rushes sample: C2PA manifest signed with the self-signed per-user certificate in {folder} (no "
          f"--c2pa-key/--c2pa-cert given): it validates but names no signer others trust", file=sys.stderr)
    return creds


def check_label(settings: LabelSettings | None):
    """The signing credentials of ``settings``, loaded at once: a key or certificate that cannot sign fails before
    a long sampling run (pass them to :func:`labelled_mp4` as ``creds``)."""
    return _credentials(settings or LabelSettings())


def labelled_mp4(frames, out, fps: float, run_dir, model_config, settings: LabelSettings | None,
                 write, creds=None) -> Path:
    """Write ``frames`` to ``out`` with ``write(frames, path, fps)``, labelled per ``settings`` (default:
    watermark on, self-signed C2PA); atomic: ``out`` appears only once signed."""
    from rushes.media.provenance import sign_mp4
    from rushes.versions import package_version

    settings = settings or LabelSettings()
    creds = creds or _credentials(settings)  # before any work: a bad key fails at once
    if settings.visible_watermark:
        frames = draw_watermark(frames, settings.watermark_text)
    out = Path(out)
    raw = out.with_name(f".{out.name}.raw.mp4")
    signed = out.with_name(f".{out.name}.signed.mp4")
    config = asdict(model_config) if is_dataclass(model_config) else model_config
    params = {"run": str(run_dir), "model": f"rushes {type(model_config).__name__}",
              "model_config_sha256": hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()
                                                    ).hexdigest(),
              "visible_watermark": settings.visible_watermark}
    try:
        write(frames, raw, fps)
        sign_mp4(raw, signed, creds, params, title=out.name, version=package_version("rushes"))
        os.replace(signed, out)
    finally:
        for leftover in (raw, signed):
            leftover.unlink(missing_ok=True)
    return out

"""Grey-level test clips: a source video whose frame level tells the source second it came from.

The source video is 12 one-second shots of solid grey at levels 10, 30, ..., 230, so the level of a
decoded frame says which source second it came from; every 2-second clip therefore sees two levels
no other clip sees, in a known order. Used by the caption tests and bench/caption.py.
"""

from __future__ import annotations

from pathlib import Path

from rushes.manifests import store
from rushes.manifests.ids import make_id
from rushes.media.ffmpeg import run_ffmpeg
from rushes.testing.synth import make_cut_video

LEVELS = [10 + 20 * i for i in range(12)]
FPS = 10
SIZE = (96, 64)


def level_at(t: float) -> int:
    """Grey level shown at source time ``t``."""
    return LEVELS[int(t)]


def make_grey_video(path: Path) -> Path:
    """12 s, 10 fps, 96x64 H.264: one solid grey level per second (see LEVELS)."""
    sources = [f"color=c=0x{v:02x}{v:02x}{v:02x}:size={{w}}x{{h}}:rate={{fps}}" for v in LEVELS]
    make_cut_video(path, [1.0] * len(LEVELS), fps=FPS, size=SIZE, sources=sources)
    return path


def cut_clip_file(src: Path, dst: Path, start_s: float, end_s: float) -> None:
    """Re-encode [start_s, end_s) of ``src`` to ``dst`` starting at time 0 (what curate writes)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    run_ffmpeg(["-ss", f"{start_s}", "-i", str(src), "-t", f"{end_s - start_s}", "-c:v", "libx264",
                "-preset", "ultrafast", "-crf", "10", "-pix_fmt", "yuv420p", "-an", "-y", str(dst)],
               timeout_s=60, whitelist=None)


def make_run(out: Path, video: Path, spans: list[tuple[float, float]], encoded: set[int] = frozenset(),
             rejected: set[int] = frozenset()) -> list[str]:
    """Write videos + clips manifests into ``out``: one clip per span; ``encoded`` indices get a clip file
    under OUT/media, the rest point at the source span. Returns the clip ids in span order."""
    video_id = make_id("video", str(video))
    store.write_part(out, "videos", [{"video_id": video_id, "path": str(video), "status": "ok",
                                      "width_px": SIZE[0], "height_px": SIZE[1], "fps": float(FPS)}],
                     part_name="part-0")
    rows, ids = [], []
    for i, (start, end) in enumerate(spans):
        clip_id = make_id(video_id, start, end)
        clip_path = None
        if i in encoded:
            clip_path = f"media/{clip_id}.mp4"
            cut_clip_file(video, out / clip_path, start, end)
        rows.append({"clip_id": clip_id, "video_id": video_id, "clip_path": clip_path, "start_s": start,
                     "end_s": end, "duration_s": end - start, "width_px": SIZE[0], "height_px": SIZE[1],
                     "fps": float(FPS), "keep": i not in rejected,
                     "reject_reason": "too_short" if i in rejected else None})
        ids.append(clip_id)
    store.write_part(out, "clips", rows, part_name="part-0")
    return ids

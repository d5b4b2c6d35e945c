"""Write a few small synthetic videos (hard cuts at known frames, a static shot, a black opening) for the
quick start when ../shared/footage is not beside the checkout. Usage: python examples/make_footage.py DIR"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from synth import make_cut_video  # noqa: E402


def main(out: str) -> None:
    d = Path(out)
    d.mkdir(parents=True, exist_ok=True)
    make_cut_video(d / "three_shots.mp4", [3.0, 4.0, 2.5], fps=25, size=(640, 360))
    make_cut_video(d / "black_open.mp4", [2.5, 5.0], fps=24, size=(480, 270),
                   sources=["color=c=black:size={w}x{h}:rate={fps}", "testsrc2=size={w}x{h}:rate={fps}"])
    make_cut_video(d / "short_shots.mp4", [1.0, 0.8, 6.0], fps=30, size=(320, 240))
    print(f"wrote 3 example videos to {d}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/example_footage")

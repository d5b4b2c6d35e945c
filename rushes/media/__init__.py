"""Outside media tools shared by the stages: ffmpeg/ffprobe executables (ffmpeg.py) and PyAV decoding
(frames.py). Stages import ``manifests`` and ``media``, never each other."""

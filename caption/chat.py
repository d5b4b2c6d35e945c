"""The one owner of the OpenAI-compatible chat-completions protocol (``--engine openai``).

Each clip is one request to ``ENDPOINT/chat/completions``: the clip's frames as base64 PNG ``image_url`` parts (PNG
is lossless, so the server decodes exactly the pixels hashed into ``frames_sha256``) followed by the prompt text.
Requests of a batch run concurrently on a bounded thread pool (``request_concurrency``); one that times out (no byte
for ``request_timeout_s``), cannot connect, or gets HTTP 408/409/429/5xx is retried up to ``request_retries`` times
with exponential backoff and jitter (``Retry-After`` is honoured). Each result is tied to its clip by the future that
sent it, never by the order answers arrive in.

The API key is read from the environment variable named by ``api_key_env`` on the driver and travels to the actors
inside :class:`Secret`, whose ``repr`` hides it; it is only ever put in the ``Authorization`` header, never in a
message, a log line, a config file or a row. Redirects are refused rather than followed with the key.

Usage::

    ping("http://localhost:8000/v1", key)             # driver: EngineUnavailableError when down or refused
    cap = ChatCaptioner(cfg, resolved, api_key=Secret(key))
    results = cap.generate(clips, prompt.text, sampling)  # Generation or the request's exception, per clip
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from rushes.caption.engine import EngineUnavailableError, Generation, Sampling, sampling_of
from rushes.caption.frames import ClipFrames

RETRYABLE_STATUS = (408, 409, 429, 500, 502, 503, 504)
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 30.0
_ERROR_BODY_CHARS = 300


class Secret:
    """A value that must not be printed: ``repr``/``str`` show ``***``; :meth:`reveal` gives it."""

    def __init__(self, value: str | None):
        self._value = value

    def reveal(self) -> str | None:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)" if self._value else "Secret(None)"

    __str__ = __repr__


class RequestError(RuntimeError):
    """A chat request failed; ``retryable`` when trying again may help (timeouts, 429, 5xx)."""

    def __init__(self, message: str, status: int | None = None, retryable: bool = False,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.retryable, self.retry_after_s = status, retryable, retry_after_s


def base_url(endpoint: str) -> str:
    """``http://host:8000/v1`` from either that or ``.../v1/chat/completions``."""
    url = endpoint.rstrip("/")
    suffix = "/chat/completions"
    return url[: -len(suffix)] if url.endswith(suffix) else url


def safe_url(url: str) -> str:
    """``url`` without user info and query string: what messages may show."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def png_data_url(rgb: np.ndarray) -> str:
    """A (H, W, 3) uint8 RGB frame as a ``data:image/png;base64,...`` URL."""
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise ValueError(f"cannot encode a frame of shape {rgb.shape} as PNG")
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def request_body(model: str, clip: ClipFrames, prompt_text: str, sampling: Sampling) -> dict:
    """The chat-completions request for one clip: its frames as images, then the prompt."""
    images = [{"type": "image_url", "image_url": {"url": png_data_url(frame)}} for frame in clip.rgb]
    body = {"model": model, "messages": [{"role": "user", "content": [*images, {"type": "text", "text": prompt_text}]}],
            "max_tokens": sampling.max_new_tokens, "temperature": sampling.temperature, "top_p": sampling.top_p,
            "seed": sampling.seed, "n": 1, "stream": False}
    return body


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Redirects are refused: following one would send the Authorization header to wherever it points."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        raise RequestError(f"{safe_url(req.full_url)} redirected (HTTP {code}) to {safe_url(newurl)}: point "
                           f"--endpoint at the final URL", code)


_OPENER = urllib.request.build_opener(_NoRedirect)


def _headers(api_key: str | None) -> dict:
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    return headers


def _http(url: str, body: dict | None, api_key: str | None, timeout_s: float) -> tuple[dict, dict]:
    """One HTTP call (POST with a JSON body, else GET); (parsed JSON, response headers) or :class:`RequestError`."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=_headers(api_key), method="POST" if data else "GET")
    where = safe_url(url)
    try:
        with _OPENER.open(req, timeout=timeout_s) as resp:
            raw, headers = resp.read(), dict(resp.headers.items())
    except urllib.error.HTTPError as exc:
        detail = exc.read()[:_ERROR_BODY_CHARS].decode("utf-8", "replace").strip()
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        raise RequestError(f"{where} answered HTTP {exc.code}: {detail or exc.reason}", exc.code,
                           exc.code in RETRYABLE_STATUS, _seconds(retry_after)) from None
    except (TimeoutError, socket.timeout) as exc:
        raise RequestError(f"{where} sent nothing for {timeout_s:g} s ({exc}); raise --request-timeout-s if the "
                           f"server is slow", retryable=True) from None
    except (urllib.error.URLError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RequestError(f"cannot reach {where}: {reason}", retryable=True) from None
    try:
        return json.loads(raw), headers
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"{where} answered with something that is not JSON ({exc})", retryable=True) from None


def _seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def with_retries(call: Callable[[], object], retries: int, rng: random.Random,
                 sleep: Callable[[float], None] = time.sleep):
    """``call()``, retried on a retryable :class:`RequestError` up to ``retries`` times with exponential backoff
    (0.5 s, 1 s, 2 s, ... capped at 30 s, times a random 0.5..1.5) or the server's ``Retry-After``."""
    for attempt in range(retries + 1):
        try:
            return call()
        except RequestError as exc:
            if not exc.retryable or attempt == retries:
                if attempt:
                    raise RequestError(f"{exc} (after {attempt + 1} tries)", exc.status) from None
                raise
            delay = exc.retry_after_s if exc.retry_after_s is not None else \
                min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** attempt) * (0.5 + rng.random())
            sleep(delay)
    raise AssertionError("unreachable")


def ping(endpoint: str, api_key: str | None, timeout_s: float = 30.0, env_name: str = "OPENAI_API_KEY") -> None:
    """Check that ``endpoint`` answers and takes the key (``GET /models``); a server without that route is fine.
    Raises :class:`EngineUnavailableError` with the fix."""
    url = base_url(endpoint) + "/models"
    try:
        _http(url, None, api_key, timeout_s)
    except RequestError as exc:
        if exc.status in (401, 403):
            raise EngineUnavailableError(f"--endpoint {safe_url(endpoint)} refused the API key (HTTP {exc.status}): "
                                         f"set ${env_name} to a valid key, or --api-key-env to the variable "
                                         f"that holds it") from None
        if exc.status is None:
            raise EngineUnavailableError(f"{exc}: start the server or fix --endpoint") from None


def parse_response(data: dict, headers: dict, where: str) -> Generation:
    """A :class:`Generation` from a chat-completions answer; :class:`RequestError` when it is not one."""
    try:
        choice = data["choices"][0]
        content = choice["message"].get("content")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise RequestError(f"{where} answered without choices[0].message: {str(data)[:_ERROR_BODY_CHARS]}") from None
    if isinstance(content, list):  # some servers answer with content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    usage = data.get("usage") or {}
    server = headers.get("Server") or headers.get("server")
    fingerprint = data.get("system_fingerprint")
    version = "; ".join(v for v in ("openai-compatible", server and f"server {server}",
                                    fingerprint and f"fingerprint {fingerprint}") if v)
    return Generation(content or "", int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                      choice.get("finish_reason"), version)


class ChatCaptioner:
    """Captions clips through an OpenAI-compatible chat-completions server; see the module docstring."""

    engine = "openai"

    def __init__(self, cfg, resolved=None, api_key: Secret | str | None = None):
        self.cfg = cfg
        self.url = base_url(cfg.endpoint) + "/chat/completions"
        self.where = safe_url(self.url)
        key = api_key.reveal() if isinstance(api_key, Secret) else api_key
        self._key = Secret(key if key is not None else os.environ.get(cfg.api_key_env))
        self.model_name = cfg.model
        self.engine_version = "openai-compatible"
        self._pool = ThreadPoolExecutor(max_workers=cfg.request_concurrency, thread_name_prefix="rushes-chat")
        self._rng = random.Random(cfg.seed)
        self._lock = threading.Lock()

    def generate(self, clips: Sequence[ClipFrames], prompt_text: str,
                 sampling: Sampling | None = None) -> list[Generation | Exception]:
        """One request per clip, at most ``request_concurrency`` in flight; results in input order."""
        sampling = sampling or sampling_of(self.cfg)
        futures = [self._pool.submit(self._one, clip, prompt_text, sampling) for clip in clips]
        results: list[Generation | Exception] = []
        for future in futures:  # each future is its own clip's request: order of completion does not matter
            try:
                results.append(future.result())
            except Exception as exc:  # noqa: BLE001 - one clip's failure is that clip's error row
                results.append(exc)
        return results

    def _one(self, clip: ClipFrames, prompt_text: str, sampling: Sampling) -> Generation:
        body = request_body(self.model_name, clip, prompt_text, sampling)
        with self._lock:
            rng = random.Random(self._rng.random())
        data, headers = with_retries(lambda: _http(self.url, body, self._key.reveal(), self.cfg.request_timeout_s),
                                     self.cfg.request_retries, rng)
        gen = parse_response(data, headers, self.where)
        self.engine_version = gen.engine_version or self.engine_version
        return gen

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

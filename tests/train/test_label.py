"""`rushes sample` labels what it makes (C2PA manifest, visible mark), and curate rejects it as ai_generated."""

from __future__ import annotations

import av
import numpy as np
import pytest

from rushes.cli import main
from rushes.media.provenance import generate_chain, read_c2pa


@pytest.fixture(scope="module")
def tiny_run(synth_out, tiny_t5, tmp_path_factory):
    run = tmp_path_factory.mktemp("label") / "run"
    assert main(["train", str(synth_out), "--run", str(run), "--preset", "tiny", "--text-encoder", tiny_t5,
                 "--max-frames", "4", "--clip-tokens", "128", "--batch-tokens", "256", "--steps", "1",
                 "--progress-every", "0"]) == 0
    return run


def _frames(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_sampled_video_is_labelled_and_curate_rejects_it(tiny_run, tmp_path, capsys, ray_local):
    common = ["sample", str(tiny_run), "--prompt", "bars", "--frames", "16", "--size", "64x64", "--steps", "1"]
    video = tmp_path / "in" / "s.mp4"
    video.parent.mkdir()
    assert main([*common, "--out", str(video)]) == 0
    assert "self-signed" in capsys.readouterr().err
    facts = read_c2pa(video)
    assert facts["c2pa_present"] and facts["c2pa_valid"] and facts["c2pa_source_type"] == "trainedAlgorithmicMedia"
    assert facts["c2pa_claim_generator"].startswith("rushes")

    key, chain = generate_chain("my CA", "my signer")  # the user's own key and certificate chain
    (tmp_path / "k.pem").write_text(key)
    (tmp_path / "c.pem").write_text(chain)
    plain = tmp_path / "plain.mp4"
    assert main([*common, "--out", str(plain), "--c2pa-key", str(tmp_path / "k.pem"), "--c2pa-cert",
                 str(tmp_path / "c.pem"), "--no-visible-watermark"]) == 0
    assert "self-signed" not in capsys.readouterr().err and read_c2pa(plain)["c2pa_valid"]
    marked, bare = _frames(video).astype(int), _frames(plain).astype(int)
    corner = np.abs(marked[:, -12:, -40:] - bare[:, -12:, -40:]).mean()
    assert corner > 5 * np.abs(marked[:, :20, :20] - bare[:, :20, :20]).mean() + 1  # the mark is in its corner
    assert main([*common, "--out", str(tmp_path / "x.mp4"), "--c2pa-key", str(tmp_path / "k.pem")]) == 2

    out = tmp_path / "curated"
    assert main(["curate", str(video.parent), "--out", str(out), "--preset", "debug"]) == 0
    from rushes.manifests import read

    clips = read(out, "clips").to_pylist()
    assert clips and all("ai_generated" in c["reject_reason"].split(";") for c in clips)

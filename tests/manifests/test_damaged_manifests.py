"""A damaged manifest read back by any command is one error line naming the file and the fix (exit 2), never a
traceback: a garbage part, a truncated part, a retyped column, duplicate ids."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rushes.cli import main
from rushes.testing.synth import make_cut_video
from rushes.testing.train_manifests import Clip, write_manifest


@pytest.fixture
def run(tmp_path):
    video = make_cut_video(tmp_path / "v.mp4", [2.0, 2.0], fps=8, size=(64, 48))
    return write_manifest(tmp_path / "out", [Clip(video.path, 0.0, 2.0, 64, 48, "a test pattern"),
                                            Clip(video.path, 2.0, 4.0, 64, 48, "a fractal")])


def _garbage(run):
    (run / "clips" / "part-9.parquet").write_bytes(b"PAR1 this is not parquet" * 10)
    return "part-9.parquet"


def _truncated(run):
    data = (run / "clips" / "part-0.parquet").read_bytes()
    (run / "clips" / "part-9.parquet").write_bytes(data[: len(data) // 2])
    return "part-9.parquet"


def _retyped(run):
    table = pq.read_table(run / "clips" / "part-0.parquet")
    i = table.schema.get_field_index("start_s")
    table = table.set_column(i, "start_s", pa.array([str(v) for v in table.column("start_s").to_pylist()]))
    pq.write_table(table, run / "clips" / "part-0.parquet")
    return "start_s"


def _duplicate_ids(run):
    (run / "clips" / "part-1.parquet").write_bytes((run / "clips" / "part-0.parquet").read_bytes())
    return "duplicate clip_id"


DAMAGE = {"garbage part": _garbage, "truncated part": _truncated, "retyped column": _retyped,
          "duplicate ids": _duplicate_ids}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_every_command_names_the_damaged_manifest(run, damage, tmp_path, capsys):
    named = DAMAGE[damage](run)
    commands = {"caption": ["caption", str(run), "--dry-run"],
                "encode": ["encode", str(run), "--dry-run"],
                "train": ["train", str(run), "--run", str(tmp_path / "r"), "--dry-run"],
                "filter": ["filter", str(run), "--dry-run"],
                "inspect": ["inspect", str(run)]}
    for name, argv in commands.items():
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 2, f"rushes {name} with a {damage}: exit {code}\n{err}"
        assert "Traceback" not in err and named in err, f"rushes {name} with a {damage}:\n{err}"

"""Export: a curated run's kept, captioned clips in the formats other trainers read (``rushes export``).

- :mod:`rushes.export.samples`: which clips (``rushes.manifests.clips``' captioned selection, ``--where``) and their
  readable names (``<video stem>_<start>-<end>``);
- :mod:`rushes.export.clipfiles`: the bytes of each clip (curate's encoded file, or the span cut from the source);
- :mod:`rushes.export.dest`: the destination folder or bucket prefix: atomic files, the resumable plan;
- :mod:`rushes.export.formats`: the format registry (webdataset, folder, csv, jsonl; ``diffusers`` for a training
  run, dispatched to ``rushes.train.export``);
- :mod:`rushes.export.cli`: the command.
"""

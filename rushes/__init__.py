"""rushes: raw footage to text-to-video training data. The command-line entry point lives in rushes.cli.

One import namespace: ``rushes.curate``, ``rushes.caption``, ``rushes.train`` and ``rushes.manifests`` are the
repository's top-level stage folders (the wheel maps them in with setuptools ``package-dir``); the shared layers
(``rushes.storage``, ``rushes.media``, ``rushes.cluster``, ``rushes.progress``, ``rushes.versions``) and the
inspect command (``rushes.inspect``) live in this folder.
"""

import os as _os

__version__ = "0.1.0"

# Run from a source checkout (``python -m rushes.cli`` in the repository, PYTHONPATH=checkout, a git worktree),
# this folder is found before any install, and the stage folders sit beside it rather than inside: look there too,
# so ``rushes.curate`` is this checkout's curate/. An installed wheel has no such siblings and is left alone.
_root = _os.path.dirname(_os.path.dirname(_os.path.abspath(__file__)))
if _os.path.isfile(_os.path.join(_root, "pyproject.toml")) and all(
        _os.path.isfile(_os.path.join(_root, stage, "__init__.py")) for stage in ("curate", "caption", "train",
                                                                                  "manifests")):
    __path__.append(_root)  # noqa: F821 - a package's __path__

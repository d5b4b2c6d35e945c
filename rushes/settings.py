"""Settings declared once: a config dataclass's field carries its help, flag name and checks; every command's
flags, ``--config FILE`` and the numeric checks are generated from those declarations (DESIGN.md section 8).

A stage declares a setting beside the code it configures::

    @dataclass(frozen=True)
    class EncodeConfig:
        crf: int = setting(22, "x264 CRF", ge=0, le=51, hint="18-28 is the useful range")
        preset: str = setting("veryfast", "x264 speed preset", flag="--x264-preset", choices=X264_PRESETS)
        timeout_s: float = setting(3600.0, "ffmpeg wall-clock limit per video", gt=0, cli=False)  # checked only

        def __post_init__(self):
            check(self)  # every number finite, declared ranges and choices; raises SettingValueError naming the field

and its ``cli.py`` lists the config classes a command sets, then reads them back::

    CURATE = Command("curate", Section("run", CurateRun), Section("curate", CurateConfig, presets=PRESETS))
    CURATE.add_arguments(parser)                   # one flag per declared field, and --config FILE
    values = resolve(args)                         # the file, then the flags given on the command line
    cfg = values.build("curate", PRESETS["debug"]())   # SettingError names the flag (or file and key) on a bad value

A setting's name is its flag without the dashes, ``-`` read as ``_`` (``--x264-preset``: ``x264_preset``); it is
the key in a ``--config`` file (TOML or YAML: ``crf = 22``) and the ``argparse`` dest. A flag given on the command
line overrides the file; a flag not given leaves the value of the file, else of the preset, else the field's
default. Library modules never name flags: they raise :class:`SettingValueError` (a field and a reason) and this
module turns it into ``argument --crf: must be in 0..51, got 80``. Paths are arguments, never settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from rushes.exits import USAGE
from rushes.storage.scratch import DEFAULT_MAX_BYTES

KEY = "rushes.setting"  # the field metadata key of a declaration
_NONE_WORDS = ("none", "off")
_UNSET = object()


class SettingValueError(ValueError):
    """A config field has a value it cannot take: ``name`` (the field), ``reason`` (``must be >= 1, got 0``) and
    ``owner`` (the config class). ``str()`` reads ``num_frames must be >= 1, got 0``."""

    def __init__(self, name: str, reason: str, owner: type | None = None):
        super().__init__(f"{name} {reason}")
        self.name, self.reason, self.owner = name, reason, owner


class SettingError(ValueError):
    """A setting given on the command line or in a ``--config`` file is wrong; the message names the flag (or the
    file and key). The command exits 2 with it, as argparse does for a bad flag."""


@dataclass(frozen=True)
class Spec:
    """The declaration of one setting (see :func:`setting`)."""

    help: str
    flag: str | None = None
    cli: bool = True
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    zero: str | None = None
    choices: tuple | Callable[[], Mapping | tuple] | None = None
    hint: str = ""
    shown: str | None = None
    metavar: str | None = None
    switch: bool = True
    consts: tuple[tuple[str, object, str], ...] = ()
    model: bool = False  # a hub id or folder of a model: $RUSHES_MODEL_DIR may hold it (rushes.models)

    def choice_list(self) -> tuple:
        """The allowed values (a callable is called: its module may be slow to import)."""
        return tuple(self.choices() if callable(self.choices) else self.choices or ())


def setting(default=dataclasses.MISSING, help: str = "", *, factory=dataclasses.MISSING, flag: str | None = None,
            cli: bool = True, ge=None, gt=None, le=None, lt=None, zero: str | None = None, choices=None,
            hint: str = "", shown: str | None = None, metavar: str | None = None, switch: bool = True,
            consts: tuple[tuple[str, object, str], ...] = (), model: bool = False) -> typing.Any:
    """A dataclass field declared as a setting.

    ``help``: what the flag does (its default is appended by ``--help``); ``flag``: the flag when it is not
    ``--field-name``; ``cli=False``: checked but neither a flag nor a file key. Checks, by :func:`check`:
    ``ge``/``gt``/``le``/``lt`` bounds, ``zero`` (0 is also allowed, meaning this, e.g. ``"off"``), ``choices``
    (a tuple, or a callable giving them for slow modules); every float must be finite. ``hint`` ends an error
    message (``"18-28 is the useful range"``). ``shown``: how ``--help`` states a default that is not a plain value
    (``"all"``). A bool is a switch (``--no-x`` for a True default) unless ``switch=False`` (it takes
    true/false). ``consts``: more flags that set a fixed value, as ``(flag, value, help)`` (``--no-scores``).
    ``model``: the value names a model (a hub id or a folder); a hub id with a folder under ``$RUSHES_MODEL_DIR``
    is built as that folder (:mod:`rushes.models`).
    """
    spec = Spec(help, flag, cli, ge, gt, le, lt, zero, choices, hint, shown, metavar, switch, tuple(consts), model)
    return dataclasses.field(default=default, default_factory=factory, metadata={KEY: spec})


def spec_of(f: dataclasses.Field) -> Spec | None:
    """The declaration of a field, None for a plain field."""
    return f.metadata.get(KEY)


def invalid(obj, name: str, reason: str) -> SettingValueError:
    """The error for field ``name`` of config ``obj`` (for checks :func:`check` cannot express): ``raise invalid(
    self, "max_clip_s", f"must be >= min_clip_s ({self.min_clip_s}), got {self.max_clip_s}")``."""
    return SettingValueError(name, reason, type(obj))


def _num(x) -> str:
    return str(int(x)) if isinstance(x, (int, float)) and float(x).is_integer() and abs(x) < 1e15 else str(x)


def range_text(spec: Spec, integer: bool) -> str:
    """``in 0..51``, ``> 0``, ``in [0, 1)``, ``0 (off) or >= 1``: what :func:`check` asks of a number."""
    low = (f">= {_num(spec.ge)}", "[", spec.ge) if spec.ge is not None else \
        (f"> {_num(spec.gt)}", "(", spec.gt) if spec.gt is not None else None
    high = (f"<= {_num(spec.le)}", "]", spec.le) if spec.le is not None else \
        (f"< {_num(spec.lt)}", ")", spec.lt) if spec.lt is not None else None
    if low and high:
        text = f"in {_num(low[2])}..{_num(high[2])}" if integer and low[1] == "[" and high[1] == "]" else \
            f"in {low[1]}{_num(low[2])}, {_num(high[2])}{high[1]}"
    else:
        text = (low or high or ("a finite number",))[0]
    return f"0 ({spec.zero}) or {text}" if spec.zero else text


def _check_number(name: str, value, spec: Spec | None, owner: type) -> None:
    hint = f"; {spec.hint}" if spec and spec.hint else ""
    if isinstance(value, float) and not math.isfinite(value):
        raise SettingValueError(name, f"must be a finite number, got {value}{hint}", owner)
    if spec is None or (spec.zero and value == 0):
        return
    if (spec.ge is not None and value < spec.ge) or (spec.gt is not None and value <= spec.gt) or \
            (spec.le is not None and value > spec.le) or (spec.lt is not None and value >= spec.lt):
        raise SettingValueError(name, f"must be {range_text(spec, isinstance(value, int))}, got {value}{hint}",
                                owner)


def check(obj) -> None:
    """Check every field of config ``obj`` against its declaration: each number finite (declared or not), within
    its bounds, each value with choices one of them. Raises :class:`SettingValueError` naming the field."""
    for f in dataclasses.fields(obj):
        value, spec = getattr(obj, f.name), spec_of(f)
        if value is None or isinstance(value, bool):
            continue
        if isinstance(value, (int, float)):
            _check_number(f.name, value, spec, type(obj))
        elif spec is not None and spec.choices is not None and value not in spec.choice_list():
            hint = f"; {spec.hint}" if spec.hint else ""
            raise SettingValueError(f.name, f"{value!r} is not known; use one of "
                                    f"{', '.join(map(str, spec.choice_list()))}{hint}", type(obj))


# --- flags generated from the declarations -------------------------------------------------------------------------

@functools.cache
def _hints(cls: type) -> dict:
    return typing.get_type_hints(cls)


def _kind(hint) -> tuple[type, bool]:
    """(int|float|str|bool|tuple, optional) of a field's type."""
    args = typing.get_args(hint)
    optional = type(None) in args
    if optional:
        hint = next(a for a in args if a is not type(None))
    return (tuple if typing.get_origin(hint) is tuple else hint), optional


def option_name(field_name: str) -> str:
    """``--max-clip-s`` for ``max_clip_s``."""
    return "--" + field_name.replace("_", "-")


def key_of(option: str) -> str:
    """The setting name of a flag: ``--x264-preset`` -> ``x264_preset`` (the file key and argparse dest)."""
    return option.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Flag:
    """One generated flag: the setting ``key``, its ``option``, where it lands (``section``, the field ``path`` in
    that section's config, the class ``owner`` of the field) and how its text is read."""

    key: str
    option: str
    section: Section
    path: tuple[str, ...]
    owner: type
    spec: Spec
    kind: type
    optional: bool
    default: object  # the field's declared default (a preset may give another)
    const: object = _UNSET

    @property
    def is_switch(self) -> bool:
        return self.const is not _UNSET or (self.kind is bool and self.spec.switch)

    def value_in(self, config):
        for name in self.path:
            config = getattr(config, name)
        return config


@dataclass(frozen=True)
class Section:
    """The flags of one config class in a command: ``name`` (what :meth:`Values.build` takes), the dataclass
    ``cls``, ``presets`` (name -> function giving a config; ``--help`` states each preset's value), the argument
    group ``title`` (None: the command's own options), ``fields`` (dotted field paths to expose; None: every
    declared one, nested configs included) and ``helps`` (help text by setting name, replacing the declaration's)."""

    name: str
    cls: type
    presets: Mapping[str, Callable] | None = None
    title: str | None = None
    fields: tuple[str, ...] | None = None
    helps: Mapping[str, str] = dataclasses.field(default_factory=dict)

    def flags(self) -> list[Flag]:
        found = list(self._walk(self.cls, ()))
        if self.fields is not None:
            wanted = {tuple(p.split(".")) for p in self.fields}
            missing = wanted - {f.path for f in found}
            if missing:
                raise TypeError(f"section {self.name}: no declared setting at {sorted(missing)}")
            found = [f for f in found if f.path in wanted]
        return found

    def _walk(self, cls: type, prefix: tuple[str, ...]):
        hints = _hints(cls)
        for f in dataclasses.fields(cls):
            spec = spec_of(f)
            if spec is None:
                if dataclasses.is_dataclass(hints[f.name]):
                    yield from self._walk(hints[f.name], prefix + (f.name,))
                continue
            if not spec.cli:
                continue
            kind, optional = _kind(hints[f.name])
            option = spec.flag or option_name(f.name)
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            common = (self, prefix + (f.name,), cls, spec, kind, optional, default)
            yield Flag(key_of(option), option, *common)
            for const_option, value, _help in spec.consts:
                yield Flag(key_of(const_option), const_option, *common, value)

    @functools.cached_property
    def defaults(self) -> dict[str, object]:
        """The config of each preset (or the class's default, under ``""``), made when ``--help`` needs it."""
        if self.presets:
            return {name: fn() for name, fn in self.presets.items()}
        return {"": self.cls()}


def _fmt(value) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(map(str, value)) or "none"
    return str(value)


def default_text(flag: Flag) -> str:
    """What ``--help`` says after ``default:``: ``off`` for a switch, the declared ``shown`` text, the value, or
    ``from --preset: tiny 8, small 16`` when the presets differ."""
    if flag.is_switch:
        return "off"
    if flag.spec.shown is not None:
        return flag.spec.shown
    values = {name: _fmt(flag.value_in(cfg)) for name, cfg in flag.section.defaults.items()}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return "from --preset: " + ", ".join(f"{name} {v}" for name, v in values.items())


class HelpFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default: a generated flag's is worked out when ``--help`` is printed (so
    building the parser never makes a preset); a hand-written flag states its own."""

    def _get_help_string(self, action):
        flag = getattr(action, "setting", None)
        if flag is None:
            return action.help
        return f"{action.help} (default: {default_text(flag)})".replace("%", "%%")


def _parse_bool(text: str) -> bool:
    if text.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if text.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise ValueError(f"expected true or false, got {text!r}")


def _reader(flag: Flag) -> Callable[[str], object]:
    """Text (a flag's value, or a string in a config file) -> the field's value."""
    def read(text: str):
        if flag.optional and flag.kind is not str and text.strip().lower() in _NONE_WORDS:
            return None
        if flag.kind is bool:
            return _parse_bool(text)
        if flag.kind is tuple:
            return () if text.strip().lower() in ("", *_NONE_WORDS) else \
                tuple(s.strip() for s in text.split(",") if s.strip())
        return flag.kind(text)
    read.__name__ = "true/false" if flag.kind is bool else getattr(flag.kind, "__name__", "value")
    return read


@dataclass(frozen=True)
class _Bound:
    """What ``args`` carries to :func:`resolve`: the command and its parser (for usage errors)."""

    command: Command
    parser: argparse.ArgumentParser


class Command:
    """The settings of one command: its sections, in ``--help`` order."""

    def __init__(self, name: str, *sections: Section):
        self.name, self.sections = name, sections

    @functools.cached_property
    def flags(self) -> dict[str, Flag]:
        out: dict[str, Flag] = {}
        for section in self.sections:
            for flag in section.flags():
                if flag.key in out:
                    raise TypeError(f"rushes {self.name}: setting {flag.key} is declared twice")
                out[flag.key] = flag
        return out

    def section(self, name: str) -> Section:
        return next(s for s in self.sections if s.name == name)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add ``--config FILE`` and one flag per setting (grouped by section title) to ``parser``."""
        parser.add_argument("--config", metavar="FILE", default=None,
                            help="read settings from a TOML or YAML file: keys are the flag names without the "
                                 "dashes (e.g. batch_size = 8); a flag given here overrides the file; "
                                 "paths stay on the command line (default: none)")
        groups: dict[str | None, object] = {None: parser}
        for flag in self.flags.values():
            title = flag.section.title
            if title not in groups:
                groups[title] = parser.add_argument_group(title)
            _add_flag(groups[title], flag)
        parser.set_defaults(_settings=_Bound(self, parser))


def _add_flag(group, flag: Flag) -> None:
    spec = flag.spec
    text = next((h for o, _v, h in spec.consts if o == flag.option), None) if flag.const is not _UNSET else None
    kw = {"dest": flag.key, "default": argparse.SUPPRESS,
          "help": text or flag.section.helps.get(flag.key, spec.help)}
    if flag.const is not _UNSET:
        kw.update(action="store_const", const=flag.const)
    elif flag.is_switch:
        kw.update(action="store_const", const=not flag.default)
    else:
        kw.update(type=_reader(flag), metavar=spec.metavar)
        if spec.choices is not None and not callable(spec.choices):
            kw["choices"] = tuple(spec.choices)
    action = group.add_argument(flag.option, **kw)
    action.setting = flag


def scratch_section(holds: str, title: str | None = None) -> Section:
    """``--scratch DIR`` and ``--scratch-max-gb`` of a command whose tasks copy remote files locally; ``holds``:
    what the folder holds and when each copy goes. Read back with ``values.build("scratch").to_scratch()``."""
    return Section("scratch", ScratchSettings, title=title, helps={"scratch": f"local folder for {holds}"})


@dataclass(frozen=True)
class ScratchSettings:
    """Where a command's tasks keep local copies of remote files, and the cap on them (:class:`storage.Scratch`)."""

    scratch: str | None = setting(None, "local folder for copies of remote files", metavar="DIR",
                                  shown="rushes-scratch in the temp folder")
    scratch_max_gb: float = setting(DEFAULT_MAX_BYTES / 2**30, "cap in GiB on the copies held at once in --scratch "
                                    "by all tasks of this machine; a larger object is recorded as an error, naming "
                                    "this flag", gt=0, le=1e6)

    def __post_init__(self) -> None:
        check(self)

    def to_scratch(self):
        """The :class:`rushes.storage.Scratch`; its messages name these flags."""
        from rushes.storage import Scratch

        return Scratch(**({"root": Path(self.scratch)} if self.scratch else {}),
                       max_bytes=max(1, int(self.scratch_max_gb * 2**30)),
                       cap_name=option_name("scratch_max_gb"), root_name=option_name("scratch"))


# --- reading the settings back: --config FILE, then the flags ---------------------------------------------------------

class Values:
    """The settings a command was given (:func:`resolve`): the file's, overridden by the flags'."""

    def __init__(self, bound: _Bound, given: dict[str, tuple[object, str]], file: str | None):
        self.command, self.parser, self._given, self.file = bound.command, bound.parser, given, file

    def given(self, key: str) -> bool:
        """True when the setting was given (on the command line or in the file)."""
        return key in self._given

    def get(self, key: str, default=None):
        return self._given[key][0] if key in self._given else default

    def overrides(self, section: str, only: tuple[str, ...] | None = None) -> dict[tuple[str, ...], tuple]:
        """Field path -> (value, key) of the settings given for ``section`` (limited to dotted paths ``only``)."""
        out = {}
        for key, (value, _source) in self._given.items():
            flag = self.command.flags[key]
            if flag.section.name == section and (only is None or ".".join(flag.path) in only):
                out[flag.path] = (value, key)
        return out

    def build(self, section: str, base=None, only: tuple[str, ...] | None = None):
        """``base`` (default: the section class's default) with every setting given for ``section`` applied (the
        dotted field paths ``only``, when given); a value a config refuses is a :class:`SettingError` naming the
        flag (or the file and key) that gave it."""
        base = self.command.section(section).cls() if base is None else base
        try:
            built = _apply(base, {path: value for path, (value, _key) in self.overrides(section, only).items()})
            return _local_models(built, self.command.section(section))
        except SettingValueError as exc:
            raise self._named(exc) from None

    def error(self, key: str, reason: str) -> SettingError:
        """The usage error for setting ``key``: ``argument --crf: REASON``, or ``FILE: crf: REASON``."""
        flag = self.command.flags[key]
        source = self._given.get(key, (None, flag.option))[1]
        return SettingError(f"argument {flag.option}: {reason}" if source.startswith("-") else
                            f"{source}: {key}: {reason}")

    def _named(self, exc: SettingValueError) -> SettingError:
        matches = [f for f in self.command.flags.values() if f.path[-1] == exc.name and f.owner is exc.owner
                   and f.const is _UNSET]
        if not matches:
            return SettingError(str(exc))
        given = [f for f in matches if f.key in self._given]
        return self.error((given or matches)[0].key, exc.reason)


def _local_models(config, section: Section):
    """``config`` with each model setting (``model=True``) that names a hub id held under ``$RUSHES_MODEL_DIR``
    set to that folder (:func:`rushes.models.local_model`)."""
    from rushes.models import local_model

    changes = {}
    for flag in section.flags():
        if flag.spec.model and flag.const is _UNSET:
            value = flag.value_in(config)
            local = local_model(value)
            if local != value:
                changes[flag.path] = local
    return _apply(config, changes)


def _apply(config, changes: dict[tuple[str, ...], object]):
    """``config`` with the values at field paths replaced (nested configs rebuilt, so each checks itself)."""
    if not changes:
        return config
    top: dict[str, dict] = {}
    for path, value in changes.items():
        top.setdefault(path[0], {})[path[1:]] = value
    replaced = {name: (sub[()] if () in sub else _apply(getattr(config, name), sub)) for name, sub in top.items()}
    return dataclasses.replace(config, **replaced)


def resolve(args: argparse.Namespace) -> Values:
    """The settings of the command ``args`` was parsed for: ``--config FILE`` first, then the flags given."""
    bound: _Bound = args._settings
    file = getattr(args, "config", None)
    given = read_config_file(file, bound) if file else {}
    for key, flag in bound.command.flags.items():
        if hasattr(args, key):
            given[key] = (getattr(args, key), flag.option)
    return Values(bound, given, file)


def _load(path: str):
    suffix = Path(path).suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise SettingError(f"argument --config: {path} is not a .toml, .yaml or .yml file")
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise SettingError(f"argument --config: cannot read {path}: {exc.strerror or exc}") from None
    if suffix == ".toml":
        try:
            import tomllib
        except ImportError:  # Python 3.10
            raise SettingError("argument --config: reading TOML needs Python 3.11 (tomllib); use a .yaml file "
                               "or Python 3.11") from None
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise SettingError(f"argument --config: {path} is not valid TOML: {exc}") from None
    try:
        import yaml
    except ImportError:
        raise SettingError("argument --config: reading YAML needs PyYAML: pip install pyyaml") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SettingError(f"argument --config: {path} is not valid YAML: {exc}") from None


def read_config_file(path: str, bound: _Bound) -> dict[str, tuple[object, str]]:
    """Setting name -> (value, ``path``) of a ``--config`` file; an unknown key or a value of the wrong type is a
    :class:`SettingError` naming the file and the key."""
    data = _load(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SettingError(f"argument --config: {path} must hold a table of settings (key = value), not "
                           f"{type(data).__name__}")
    arguments = {a.dest for a in bound.parser._actions if not getattr(a, "setting", None)}  # noqa: SLF001
    out = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        flag = bound.command.flags.get(key)
        if flag is None:
            what = "an argument, give it on the command line" if key in arguments else \
                f"not a setting of rushes {bound.command.name}; known: {', '.join(sorted(bound.command.flags))}"
            raise SettingError(f"{path}: unknown key {raw_key!r}: {what}")
        try:
            value = _file_value(flag, value)
        except (TypeError, ValueError) as exc:
            raise SettingError(f"{path}: {key}: {exc}") from None
        if value is not _UNSET:
            out[key] = (value, path)
    return out


def _file_value(flag: Flag, value):
    """A file's value converted like the flag's text; _UNSET for a const flag set to false."""
    if flag.const is not _UNSET or flag.is_switch:
        if not isinstance(value, bool):
            raise TypeError(f"expected true or false, got {value!r}")
        if flag.const is not _UNSET:
            return flag.const if value else _UNSET
        return (not flag.default) if value else flag.default
    if value is None:
        if flag.optional:
            return None
        raise TypeError("needs a value")
    if isinstance(value, str):
        return _reader(flag)(value)
    if flag.kind is bool and isinstance(value, bool):
        return value
    if flag.kind is tuple and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    if flag.kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if flag.kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if flag.kind is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected {'an integer' if flag.kind is int else 'a number' if flag.kind is float else 'text'}"
                    f", got {value!r}")


def usage_error(args: argparse.Namespace, exc: Exception) -> int:
    """Print ``exc`` as argparse prints a bad flag (usage, then ``PROG: error: ...``) and return 2."""
    bound = getattr(args, "_settings", None)
    if bound is not None:
        bound.parser.print_usage(sys.stderr)
        print(f"{bound.parser.prog}: error: {exc}", file=sys.stderr)
    else:
        print(f"rushes: error: {exc}", file=sys.stderr)
    return USAGE


# Fixes of a lock error (rushes.manifests.lock.LockError.reason) that name the flag of the run directory.
_LOCK_FIXES = {
    "busy": "wait for it to finish or stop it, or use another {flag}",
    "not_a_folder": "give {flag} a folder path (new or an earlier run)",
    "unwritable": "give {flag} a folder you can write (a read-only or system folder such as /proc cannot hold a run)",
}


def explain(exc: Exception, run_flag: str = "--out") -> str:
    """The message of a library error for the command line: a lock error's fix names ``run_flag`` (``--out``,
    ``--run``); other errors as they are."""
    fix = _LOCK_FIXES.get(getattr(exc, "reason", None))
    problem, more = getattr(exc, "problem", None), getattr(exc, "more", "")
    if not (fix and problem):
        return str(exc)
    return f"{problem}; {fix.format(flag=run_flag)}" + (f". {more}" if more else "")

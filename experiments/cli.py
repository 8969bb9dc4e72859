"""Command-line parsing shared by the experiment entry points.

`--config.key=value` overrides are applied to the ml_collections ConfigDict with the type of the
existing value (bool/int/float/str); unknown keys and unparsable values are user errors.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import pathlib
import sys
from collections.abc import Callable

import ml_collections

from tkd_jax.errors import ConfigError, UserError

CONFIG_DIR = pathlib.Path(__file__).parent / "configs"
_TRUE = {"true", "1", "yes", "y", "on"}
_FALSE = {"false", "0", "no", "n", "off"}


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (via ConfigError), no usage dump
        raise ConfigError(f"command line: {message}")


def make_parser(description: str) -> argparse.ArgumentParser:
    return _Parser(description=description, allow_abbrev=False)


def split_overrides(argv: list[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Separate `--config.a.b=v` / `--config.a.b v` from the other arguments."""
    rest, overrides = [], []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("--config."):
            key, eq, value = arg[len("--config."):].partition("=")
            if not eq:
                if i + 1 >= len(argv):
                    raise ConfigError(f"{arg}: expected a value (--config.{key}=VALUE)")
                value = argv[i + 1]
                i += 1
            overrides.append((key, value))
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def _coerce(key: str, old, value: str):
    if isinstance(old, bool):
        v = value.strip().lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise ConfigError(f"--config.{key}={value}: expected true or false")
    for typ, name in ((int, "an integer"), (float, "a number")):
        if isinstance(old, typ):
            try:
                return typ(value)
            except ValueError:
                raise ConfigError(f"--config.{key}={value}: expected {name}") from None
    if isinstance(old, str):
        return value
    if isinstance(old, tuple | list):  # a list key: comma-separated; the typed config parses it
        return tuple(v.strip() for v in value.split(",") if v.strip())
    raise ConfigError(f"--config.{key}: cannot be set from the command line")


def apply_overrides(config: ml_collections.ConfigDict, overrides) -> None:
    for key, value in overrides:
        node = config
        parts = key.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
                raise ConfigError(f"--config.{key}: unknown config key {p!r}")
            node = node[p]
        leaf = parts[-1]
        if leaf not in node:
            raise ConfigError(f"--config.{key}: unknown config key (valid here: "
                              f"{', '.join(sorted(node.keys()))})")
        if isinstance(node[leaf], ml_collections.ConfigDict):
            raise ConfigError(f"--config.{key}: is a group; set one of its keys")
        node[leaf] = _coerce(key, node[leaf], value)


def load_config_module(name_or_path: str):
    """A config variant module (`paper`, `smoke`, ...) by name or by path to a .py file; it
    has ``override(config) -> config``."""
    path = pathlib.Path(name_or_path)
    if path.suffix == ".py":
        if not path.exists():
            raise ConfigError(f"--config {name_or_path}: file not found")
        spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    if not (CONFIG_DIR / f"{name_or_path}.py").exists():
        names = sorted(p.stem for p in CONFIG_DIR.glob("*.py") if not p.stem.startswith("_"))
        raise ConfigError(f"--config {name_or_path}: unknown config (expected one of "
                          f"{', '.join(names)} or a path to a .py file)")
    return importlib.import_module(f"experiments.configs.{name_or_path}")


def run_main(main: Callable[[list[str]], int], argv: list[str] | None = None) -> int:
    """Run `main`; user errors become one line on stderr and exit code 2."""
    try:
        return main(sys.argv[1:] if argv is None else argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

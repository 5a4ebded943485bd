"""Observations: what the user names (paths, `--obs key=val,...`, per-key options) and the files
they resolve to.

An identifier is a set of SDSS keys (`release, apred, telescope, field, prefix, obj, apstar` for
apStar; with `plate, mjd, fiber` for apVisit). sdss-access is the source of truth for the
directory layout of every data release: we ask it for a product's path template once per
(release, product) and format that template per observation, which costs microseconds instead of
the ~60 us of `Path.full()` per call.
"""

from __future__ import annotations

import functools
import os
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from astra_cli.errors import UsageError, did_you_mean
from astra_cli.vocabulary import Observation

IDENTIFIER_KEYS = (
    "release", "apred", "telescope", "field", "prefix", "obj", "apstar", "plate", "mjd", "fiber",
)  # fmt: skip
"""The keys of the DR14-DR17 apStar and apVisit products, which have per-key options, in the
order help shows them. `--obs` accepts whatever keys sdss-access names for the release."""

VISIT_KEYS = frozenset({"plate", "mjd", "fiber"})
INTEGER_KEYS = frozenset({"mjd", "fiber"})

_SAFE_VALUE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
"""What an identifier value may look like. Values become path components, so a slash, a
leading dot or `..` could escape the data root: such values are refused outright."""


def observation_from_path(path: str | os.PathLike[str]) -> Observation:
    """An observation named by its file; the key is the absolute path."""
    absolute = os.path.abspath(os.fspath(path))
    return Observation(key=f"path:{absolute}", path=absolute)


def parse_obs_option(text: str) -> dict[str, str]:
    """Parse one `--obs` value: `key=val,key=val`."""
    try:
        return parse_pairs(text)
    except ValueError as error:
        raise UsageError(f"--obs {text!r}: {error}") from None


def parse_pairs(text: str) -> dict[str, str]:
    """Parse `key=val,key=val` (keys lower-cased), as `--obs` and manifest lines write
    identifiers; ValueError says what is wrong, for the caller to say where."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not sep or not key or not value:
            raise ValueError("expected key=value pairs separated by commas")
        if key in pairs:
            raise ValueError(f"key {key!r} given twice")
        pairs[key] = value
    if not pairs:
        raise ValueError("no key=value pairs")
    return pairs


def zip_per_key(values_by_key: Mapping[str, Sequence[str]]) -> list[dict[str, str]]:
    """Zip repeated per-key options position by position, as the seed zips tuples.

    A key given once applies to every observation; every other key must be given the same
    number of times.
    """
    given = {key: list(values) for key, values in values_by_key.items() if values}
    if not given:
        return []
    count = max(len(values) for values in given.values())
    if any(len(values) not in (1, count) for values in given.values()):
        lengths = ", ".join(f"--{key} {len(values)}x" for key, values in given.items())
        raise UsageError(
            "per-key identifier options must each be given the same number of times, "
            f"or once to apply to all; got {lengths}"
        )
    return [
        {key: values[i if len(values) > 1 else 0] for key, values in given.items()}
        for i in range(count)
    ]


class IdentifierResolver:
    """Turns identifiers into `Observation`s with paths from sdss-access templates.

    data_root
        The local SAS root (`SAS_BASE_DIR`); sdss-access's default when None.
    """

    def __init__(self, data_root: str | os.PathLike[str] | None = None) -> None:
        self.data_root = os.fspath(data_root) if data_root is not None else None
        self._templates: dict[tuple[str, str], _Template] = {}

    def resolve(
        self, identifier: Mapping[str, str], source: str = "", kind: str | None = None
    ) -> Observation:
        """Resolve one identifier; `source` (e.g. "--obs #2") prefixes error messages.

        kind
            The sdss-access product (`apStar`, `apVisit`, `aspcapStar`, ...). When None, an
            identifier with plate, mjd or fiber is an apVisit and any other an apStar.
        """
        where = f"{source}: " if source else ""
        values = {key.lower(): str(value).strip() for key, value in identifier.items()}
        if "release" in values:
            values["release"] = values["release"].lower()  # DR17 and dr17 are one release
        if kind is None:
            kind = "apVisit" if VISIT_KEYS & values.keys() else "apStar"
        if "release" not in values:
            raise UsageError(f"{where}{kind} identifier needs a release (e.g. release=dr17)")
        template = self._template(values["release"], kind, where)
        allowed = ("release", *template.keys)
        unknown = sorted(set(values) - set(allowed))
        if unknown:
            raise UsageError(
                f"{where}{kind} identifier of release {values['release']!r} has no key "
                f"{unknown[0]!r}{did_you_mean(unknown[0], allowed)}; its keys are "
                f"{', '.join(allowed)}"
            )
        _fill_defaults(values, template.keys)
        missing = [key for key in template.keys if key not in values]
        if missing:
            raise UsageError(
                f"{where}{kind} identifier is missing {', '.join(missing)} "
                f"(it needs {', '.join(allowed)})"
            )
        used = {key: _checked_value(key, values[key], where) for key in ("release", *template.keys)}
        key = f"{kind}:" + ",".join(f"{k}={used[k]}" for k in sorted(used))
        return Observation(key=key, path=template.format(used), identifiers=tuple(used.items()))

    @staticmethod
    def product_keys(kind: str | None = None) -> frozenset[str]:
        """Every key an identifier of this product may have in any release sdss-access knows,
        `release` included (apStar and apVisit together when kind is None): how a manifest
        tells identifier columns from the others before it has read a row."""
        keys, products = _keys_of_products(("apStar", "apVisit") if kind is None else (kind,))
        if kind is not None and kind not in products:
            raise UsageError(
                f"sdss-access knows no product {kind!r}"
                f"{did_you_mean(kind, sorted(products))} (e.g. apStar, apVisit)"
            )
        return keys

    def _template(self, release: str, kind: str, where: str) -> _Template:
        cache_key = (release.lower(), kind)
        if cache_key not in self._templates:
            self._templates[cache_key] = _Template.from_sdss_access(
                release, kind, self.data_root, where
            )
        return self._templates[cache_key]


@dataclass(frozen=True)
class _Template:
    """One product's path template for one release, with environment variables expanded."""

    pattern: str
    keys: tuple[str, ...]
    sdss_path: Any
    """The sdss-access Path, kept only when the template calls one of its special functions
    (`@healpixgrp|` in SDSS-V releases), which only sdss-access can evaluate."""

    kind: str
    data_root: str | None = None
    """The data root, put in place of ROOT_TOKEN in every path (taken literally: a `$` in it
    is not a variable)."""

    @classmethod
    def from_sdss_access(
        cls, release: str, kind: str, data_root: str | None, where: str
    ) -> _Template:
        from sdss_access.path import Path as SdssPath

        available = {name.lower() for name in SdssPath.get_available_releases()}
        if release.lower() not in available:
            hint = did_you_mean(release.lower(), sorted(available))
            raise UsageError(
                f"{where}unknown release {release!r}{hint}; sdss-access knows "
                f"{', '.join(sorted(available, key=_release_order))}"
            )
        root = os.path.abspath(data_root) if data_root is not None else None
        # The tree and its templates are expanded with a token for the root, which replaces
        # it afterwards: expanding the root itself would read '/x/a$HOME' as a variable.
        with _sas_base_dir(ROOT_TOKEN if root is not None else None):
            sdss_path = SdssPath(release=release)
            if kind not in sdss_path.templates:
                raise UsageError(f"{where}release {release!r} has no {kind} product")
            raw = sdss_path.templates[kind]
            pattern = _expand_environment(raw)
            keys = tuple(sorted(set(sdss_path.lookup_keys(kind)), key=_key_order))
        if "@" not in raw:
            return cls(pattern=pattern, keys=keys, sdss_path=None, kind=kind, data_root=root)
        # Only sdss-access can evaluate its special functions; give it the expanded template
        # so that it formats paths under this data root whatever the environment is later.
        sdss_path.templates = {kind: pattern}
        return cls(pattern=pattern, keys=keys, sdss_path=sdss_path, kind=kind, data_root=root)

    def format(self, values: Mapping[str, str]) -> str:
        if self.sdss_path is not None:
            path = self.sdss_path.full(self.kind, **values)
        else:
            path = os.path.normpath(self.pattern.format(**values))
        return path.replace(ROOT_TOKEN, self.data_root) if self.data_root else path


ROOT_TOKEN = "/astra-data-root-7c1e9a"
"""Stands for the data root while sdss-access expands its templates (no `$`, no `@`)."""


@functools.cache
def _keys_of_products(wanted: tuple[str, ...]) -> tuple[frozenset[str], frozenset[str]]:
    """(keys of the wanted products in every release, every product name): one sdss-access
    Path per release, about 0.1 s, so once per process. Keys do not depend on the data root."""
    from sdss_access.path import Path as SdssPath

    keys, products = {"release"}, set()
    with _sas_base_dir(None):
        for release in SdssPath.get_available_releases():
            if release.lower() == "work":
                continue  # its tree warns on stdout without a work.cfg
            sdss_path = SdssPath(release=release)
            products.update(sdss_path.templates)
            for product in wanted:
                if product in sdss_path.templates:
                    keys.update(sdss_path.lookup_keys(product))
    return frozenset(keys), frozenset(products)


def _fill_defaults(values: dict[str, str], keys: Sequence[str]) -> None:
    """The defaults of the APOGEE products, where the template uses the key: prefix from
    telescope (apo* -> ap, lco* -> as), apstar="stars"."""
    telescope = values.get("telescope", "").lower()
    if "prefix" in keys and "prefix" not in values:
        if telescope.startswith("apo"):
            values["prefix"] = "ap"
        elif telescope.startswith("lco"):
            values["prefix"] = "as"
    if "apstar" in keys:
        values.setdefault("apstar", "stars")


def _checked_value(key: str, value: str, where: str) -> str:
    if key in INTEGER_KEYS:
        try:
            return str(int(value))
        except ValueError:
            raise UsageError(f"{where}{key}={value!r} is not a whole number") from None
    if not _SAFE_VALUE.fullmatch(value) or ".." in value:
        raise UsageError(
            f"{where}{key}={value!r}: identifier values may hold only letters, digits and "
            "_ . + - (no slashes or '..')"
        )
    return value


def _expand_environment(template: str) -> str:
    """Expand $VARS until none is left that the environment defines (they nest in the tree)."""
    while True:
        expanded = os.path.expandvars(template)
        if expanded == template:
            return expanded
        template = expanded


def _key_order(key: str) -> int:
    return IDENTIFIER_KEYS.index(key) if key in IDENTIFIER_KEYS else len(IDENTIFIER_KEYS)


def _release_order(name: str) -> tuple[int, str]:
    digits = "".join(c for c in name if c in string.digits)
    return (int(digits) if digits else 10_000, name)


@contextmanager
def _sas_base_dir(data_root: str | None) -> Iterator[None]:
    """Point sdss-access at `data_root` while it plants its tree, then restore the caller's
    environment (the tree writes its variables into os.environ)."""
    saved = dict(os.environ)
    if data_root is not None:
        os.environ["SAS_BASE_DIR"] = os.path.abspath(data_root)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def identifier_sources(
    obs_options: Sequence[str], per_key: Mapping[str, Sequence[str]]
) -> list[tuple[str, dict[str, str]]]:
    """(source, identifier) pairs from `--obs` options and per-key options, for error messages
    that say which one is at fault."""
    pairs = [(f"--obs {text!r}", parse_obs_option(text)) for text in obs_options]
    zipped = zip_per_key(per_key)
    pairs += [(f"per-key options, observation {i}", ident) for i, ident in enumerate(zipped, 1)]
    return pairs

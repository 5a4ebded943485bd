"""Identifiers: `--obs` parsing, per-key zipping, resolving to sdss-access paths, and paths."""

from __future__ import annotations

import os

import pytest
from sdss_access.path import Path as SdssPath

from astra_cli.errors import UsageError
from astra_cli.io.identifiers import (
    IdentifierResolver,
    identifier_sources,
    observation_from_path,
    parse_obs_option,
    zip_per_key,
)

DR16_STAR = {
    "release": "dr16",
    "apred": "r12",
    "telescope": "apo25m",
    "field": "218-04",
    "obj": "2M06440890-0610126",
}
DR16_VISIT = {
    "release": "dr16",
    "apred": "r12",
    "telescope": "apo25m",
    "field": "218-04",
    "plate": "9518",
    "mjd": "57729",
    "fiber": "5",
}


@pytest.fixture
def restored_environ():
    """sdss-access writes its tree's variables into os.environ: put everything back."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


# --- --obs parsing -----------------------------------------------------------------------------


def test_obs_keys_are_lower_cased_and_whitespace_stripped():
    parsed = parse_obs_option(" Release = dr17 , OBJ=2M00000000+0000000,field= 218-04 ")
    assert parsed == {"release": "dr17", "obj": "2M00000000+0000000", "field": "218-04"}


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("release", "key=value"),
        ("release=dr17,obj", "key=value"),
        ("release=dr17,obj=", "key=value"),
        ("=dr17", "key=value"),
        ("obj=a,OBJ=b", "'obj' given twice"),
        ("", "no key=value"),
        (" , ", "no key=value"),
    ],
)
def test_bad_obs_text_is_refused_naming_it(text, reason):
    with pytest.raises(UsageError) as raised:
        parse_obs_option(text)
    message = str(raised.value)
    assert f"--obs {text!r}" in message
    assert reason in message


# --- per-key zipping ---------------------------------------------------------------------------


def test_per_key_options_zip_with_single_values_broadcast():
    zipped = zip_per_key(
        {
            "release": ["dr17"],
            "apred": ["dr17"],
            "telescope": ["apo25m"],
            "prefix": ["ap"],
            "apstar": ["stars"],
            "field": ["218-04", "120+12"],
            "obj": ["2M06440890-0610126", "2M00000000+0000000"],
        }
    )
    shared = {
        "release": "dr17",
        "apred": "dr17",
        "telescope": "apo25m",
        "prefix": "ap",
        "apstar": "stars",
    }
    assert zipped == [
        {**shared, "field": "218-04", "obj": "2M06440890-0610126"},
        {**shared, "field": "120+12", "obj": "2M00000000+0000000"},
    ]


def test_per_key_options_not_given_are_ignored():
    assert zip_per_key({}) == []
    assert zip_per_key({"release": [], "obj": ["a", "b"]}) == [{"obj": "a"}, {"obj": "b"}]


def test_per_key_options_of_mismatched_lengths_are_refused():
    with pytest.raises(UsageError) as raised:
        zip_per_key({"release": ["dr17"], "field": ["a", "b"], "obj": ["x", "y", "z"]})
    message = str(raised.value)
    assert "--field 2x" in message
    assert "--obj 3x" in message


def test_identifier_sources_say_where_each_identifier_came_from():
    sources = identifier_sources(
        ["release=dr17,obj=a", "release=dr16,obj=b"], {"release": ["dr17"], "obj": ["c", "d"]}
    )
    assert sources == [
        ("--obs 'release=dr17,obj=a'", {"release": "dr17", "obj": "a"}),
        ("--obs 'release=dr16,obj=b'", {"release": "dr16", "obj": "b"}),
        ("per-key options, observation 1", {"release": "dr17", "obj": "c"}),
        ("per-key options, observation 2", {"release": "dr17", "obj": "d"}),
    ]


# --- resolving ---------------------------------------------------------------------------------


@pytest.mark.parametrize("root", ["a$HOME", "b${USER}c", "$SAS_BASE_DIR"])
def test_a_data_root_is_taken_literally_not_as_shell_variables(tmp_path, root, monkeypatch):
    monkeypatch.setenv("USER", "someone")
    observation = IdentifierResolver(data_root=tmp_path / root).resolve(DR16_STAR)
    assert observation.path.startswith(f"{tmp_path / root}/dr16/apogee/spectro/redux/r12/")


def test_dr16_apstar_path(tmp_path):
    observation = IdentifierResolver(data_root=tmp_path).resolve(DR16_STAR)
    assert observation.path == str(
        tmp_path / "dr16/apogee/spectro/redux/r12/stars/apo25m/218-04"
        / "apStar-r12-2M06440890-0610126.fits"
    )  # fmt: skip
    assert observation.key.startswith("apStar:")
    assert dict(observation.identifiers)["prefix"] == "ap"
    assert dict(observation.identifiers)["apstar"] == "stars"


def test_dr16_apvisit_path_pads_the_fiber(tmp_path):
    observation = IdentifierResolver(data_root=tmp_path).resolve(DR16_VISIT)
    assert observation.path == str(
        tmp_path / "dr16/apogee/spectro/redux/r12/visit/apo25m/218-04/9518/57729"
        / "apVisit-r12-9518-57729-005.fits"
    )  # fmt: skip
    assert observation.key.startswith("apVisit:")


@pytest.mark.parametrize(
    ("telescope", "prefix"), [("apo25m", "ap"), ("apo1m", "ap"), ("lco25m", "as")]
)
def test_prefix_defaults_from_telescope(tmp_path, telescope, prefix):
    resolver = IdentifierResolver(data_root=tmp_path)
    star = resolver.resolve({**DR16_STAR, "telescope": telescope})
    visit = resolver.resolve({**DR16_VISIT, "telescope": telescope})
    assert os.path.basename(star.path) == f"{prefix}Star-r12-2M06440890-0610126.fits"
    assert os.path.basename(visit.path) == f"{prefix}Visit-r12-9518-57729-005.fits"
    assert f"/{telescope}/" in star.path
    assert dict(star.identifiers)["prefix"] == prefix


def test_explicit_prefix_and_apstar_override_the_defaults(tmp_path):
    observation = IdentifierResolver(data_root=tmp_path).resolve(
        {**DR16_STAR, "prefix": "as", "apstar": "stars-special"}
    )
    assert "/r12/stars-special/apo25m/" in observation.path
    assert os.path.basename(observation.path).startswith("asStar-")


def test_key_is_the_same_with_defaults_given_or_omitted(tmp_path):
    resolver = IdentifierResolver(data_root=tmp_path)
    defaulted = resolver.resolve(DR16_STAR)
    explicit = resolver.resolve({**DR16_STAR, "prefix": "ap", "apstar": "stars"})
    assert defaulted.key == explicit.key
    assert defaulted.path == explicit.path


def test_key_and_path_ignore_fiber_zero_padding_and_key_case(tmp_path):
    resolver = IdentifierResolver(data_root=tmp_path)
    plain = resolver.resolve(DR16_VISIT)
    padded = resolver.resolve({**DR16_VISIT, "fiber": "005"})
    upper = resolver.resolve({key.upper(): value for key, value in DR16_VISIT.items()})
    assert plain.key == padded.key == upper.key
    assert plain.path == padded.path == upper.path


def test_different_observations_get_different_keys(tmp_path):
    resolver = IdentifierResolver(data_root=tmp_path)
    keys = {
        resolver.resolve(DR16_STAR).key,
        resolver.resolve({**DR16_STAR, "obj": "2M00000000+0000000"}).key,
        resolver.resolve({**DR16_STAR, "telescope": "lco25m"}).key,
        resolver.resolve(DR16_VISIT).key,
        resolver.resolve({**DR16_VISIT, "fiber": "6"}).key,
    }
    assert len(keys) == 5


DR19_STAR = {
    "release": "dr19",
    "apred": "1.3",
    "telescope": "apo25m",
    "obj": "2M00000000+0000000",
    "healpix": "12345",
}


@pytest.mark.parametrize(
    ("product", "identifier", "defaults"),
    [
        ("apStar", DR16_STAR, {"prefix": "ap", "apstar": "stars"}),
        ("apVisit", DR16_VISIT, {"prefix": "ap"}),
        (
            "apStar",
            {**DR16_STAR, "release": "dr17", "telescope": "lco25m"},
            {"prefix": "as", "apstar": "stars"},
        ),
        ("apVisit", {**DR16_VISIT, "release": "dr17", "fiber": "123"}, {"prefix": "ap"}),
        ("apStar", DR19_STAR, {}),  # a template with sdss-access's @healpixgrp| function
    ],
)
def test_path_is_the_one_sdss_access_gives(
    tmp_path, monkeypatch, restored_environ, product, identifier, defaults
):
    observation = IdentifierResolver(data_root=tmp_path).resolve(identifier)

    monkeypatch.setenv("SAS_BASE_DIR", str(tmp_path))
    keys = {k: v for k, v in identifier.items() if k != "release"}
    expected = SdssPath(release=identifier["release"]).full(product, **keys, **defaults)
    assert observation.path == expected
    assert observation.path.startswith(str(tmp_path) + os.sep)


def test_resolver_leaves_the_environment_as_it_was(tmp_path):
    SdssPath(release="dr17")  # let sdss-access plant its tree for the default root first
    before = dict(os.environ)
    for root in (tmp_path / "one", tmp_path / "two"):
        resolver = IdentifierResolver(data_root=root)
        assert resolver.resolve(DR16_STAR).path.startswith(str(root))
        resolver.resolve({**DR16_VISIT, "release": "dr17"})
        with pytest.raises(UsageError):
            resolver.resolve({"release": "dr9", "obj": "x"})  # dr9 has no apStar product
    assert os.environ.get("SAS_BASE_DIR") == before.get("SAS_BASE_DIR")
    assert os.environ.get("APOGEE_REDUX") == before.get("APOGEE_REDUX")
    assert dict(os.environ) == before


def test_errors_name_the_identifier_they_come_from(tmp_path):
    resolver = IdentifierResolver(data_root=tmp_path)
    with pytest.raises(UsageError, match=r"^--obs #2: "):
        resolver.resolve({"apred": "r12"}, "--obs #2")


# --- resolving errors --------------------------------------------------------------------------


def resolve_error(tmp_path, identifier, source="--obs #3"):
    with pytest.raises(UsageError) as raised:
        IdentifierResolver(data_root=tmp_path).resolve(identifier, source=source)
    message = str(raised.value)
    assert message.startswith(f"{source}: ")
    return message


def test_unknown_release_is_refused_with_a_suggestion(tmp_path):
    message = resolve_error(tmp_path, {**DR16_STAR, "release": "drr17"})
    assert "unknown release 'drr17'" in message
    assert "did you mean 'dr17'?" in message


def test_unknown_key_is_refused_with_a_suggestion(tmp_path):
    message = resolve_error(tmp_path, {**DR16_STAR, "objj": "x"})
    assert "'objj'" in message
    assert "did you mean 'obj'?" in message


@pytest.mark.parametrize("missing", ["field", "obj", "apred"])
def test_missing_key_is_named(tmp_path, missing):
    identifier = {k: v for k, v in DR16_STAR.items() if k != missing}
    message = resolve_error(tmp_path, identifier)
    assert f"missing {missing}" in message


def test_missing_fiber_of_a_visit_is_named(tmp_path):
    identifier = {k: v for k, v in DR16_VISIT.items() if k != "fiber"}
    assert "missing fiber" in resolve_error(tmp_path, identifier)


def test_missing_release_is_refused(tmp_path):
    identifier = {k: v for k, v in DR16_STAR.items() if k != "release"}
    assert "needs a release" in resolve_error(tmp_path, identifier)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("field", "a/b"),
        ("field", "/etc"),
        ("field", ".."),
        ("field", "..x"),
        ("obj", "x..y"),
        ("field", ".hidden"),
        ("apred", "../../.."),
        ("telescope", "apo25m/../../x"),
    ],
)
def test_path_traversal_values_are_refused(tmp_path, key, value):
    message = resolve_error(tmp_path, {**DR16_STAR, key: value})
    assert f"{key}={value!r}" in message


@pytest.mark.parametrize(("key", "value"), [("mjd", "5772x"), ("mjd", "57729.5"), ("fiber", "a")])
def test_non_integer_mjd_or_fiber_is_refused(tmp_path, key, value):
    message = resolve_error(tmp_path, {**DR16_VISIT, key: value})
    assert f"{key}={value!r} is not a whole number" in message


# --- paths -------------------------------------------------------------------------------------


def test_observation_from_path_is_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    observation = observation_from_path("sub/apStar-x.fits")
    expected = str(tmp_path / "sub" / "apStar-x.fits")
    assert observation.path == expected
    assert os.path.isabs(observation.path)
    assert observation.key == f"path:{expected}"
    assert observation.identifiers == ()
    assert observation_from_path(tmp_path / "sub" / "apStar-x.fits") == observation

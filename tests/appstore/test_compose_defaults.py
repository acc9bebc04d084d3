"""Parameters' defaults written into published compose templates, so `docker compose -f oci://...`
runs an app with no environment at all (appstore.interpolate.with_defaults,
appstore.render.with_compose_defaults). tests/e2e/test_compose_oci.py runs the real Compose on it."""

from __future__ import annotations

import dataclasses

import pytest

from appstore import yamlsafe
from appstore.errors import InterpolationError
from appstore.interpolate import compose_can_carry, interpolate_tree, with_defaults
from appstore.model import ParamType, Parameter
from appstore.render import (render, required_variables, with_compose_defaults,
                             without_compose_defaults)

from .test_seeds import KEYS, seed


@pytest.mark.parametrize(("text", "expected"), [
    ("image: postgres:${V}-alpine", "image: postgres:${V-15}-alpine"),
    ("image: postgres:$V", "image: postgres:${V-15}"),
    ("a: $V$V", "a: ${V-15}${V-15}"),
    ("a: $$V", "a: $$V"),                                  # an escaped dollar stays one
    ("a: $$$V", "a: $$${V-15}"),
    ("a: ${V:-9}", "a: ${V:-9}"),                          # an operator already written is the author's
    ("a: ${V-9}", "a: ${V-9}"),
    ("a: ${V?needed}", "a: ${V?needed}"),
    ("a: ${OTHER}", "a: ${OTHER}"),                        # not a parameter with a default
    ("a: ${V", "a: ${V"),                                  # invalid: left for interpolate to report
    ("a: ${V x}", "a: ${V x}"),
    ("a: $", "a: $"),
    ("a: ${}", "a: ${}"),
    ("a: $1", "a: $1"),
    ("a: ${V}_${S}", "a: ${V-15}_${S?set S in the environment}"),
    ("no dollar", "no dollar"),
])
def test_with_defaults_rewrites_only_bare_references(text, expected):
    assert with_defaults(text, {"V": "15", "S": None}) == expected


@pytest.mark.parametrize("default", ["has}brace", "quote'd", 'dq"', "hash #x", "a, b", "[x]", "key: value",
                                     " lead", "trail ", "two\nlines", "dollar$", "{x}"])
def test_a_default_that_could_change_the_yaml_is_left_to_the_renderer(default):
    assert with_defaults("a: ${V}", {"V": default}) == "a: ${V}"


@pytest.mark.parametrize("default", ["", "15", "Cats and Dogs", "a:b", "user@host", "/var/lib/x", "1.2.3-rc.1"])
def test_a_plain_default_is_written_and_reads_back(default):
    text = with_defaults("a: ${V}\nb: x${V}y\n", {"V": default})
    assert interpolate_tree(yamlsafe.load(text), {}) == {"a": default, "b": f"x{default}y"}


def test_a_set_variable_still_wins_over_the_written_default():
    text = with_defaults("a: ${V}", {"V": "15"})
    assert interpolate_tree(yamlsafe.load(text), {"V": "16"}) == {"a": "16"}


def _compose_view(version, environment):
    """The merged document as Compose reads the published files with `environment` only."""
    merged = {}
    for text in version.compose_files.values():
        merged.update(interpolate_tree(yamlsafe.load(text), environment))
    return merged


@pytest.mark.parametrize("key", KEYS)
def test_every_seed_reads_with_no_environment_as_daohub_renders_it(key):
    for version in seed(key).versions:
        published = with_compose_defaults(version)
        required = required_variables(version)
        assert set(required) == {p.name for p in version.parameters
                                 if (p.default is None and (p.required or p.type is ParamType.SECRET))
                                 or (isinstance(p.default, str) and ("\n" in p.default or "}" in p.default))}
        rendered = render(version)  # DaoHub's own render: defaults, secrets generated
        # What the user must supply is exactly what DaoHub had to generate or ask for.
        environment = {name: str(rendered.values[name]) for name in required}
        assert _compose_view(published, environment) == rendered.document
        # DaoHub's renderer gives the same result from the published files as from the originals.
        assert render(published, rendered.values).document == rendered.document


def test_a_secret_without_default_is_required_by_compose():
    version = seed("voting-app").versions[0]
    secret = Parameter(name="TOKEN", type=ParamType.SECRET)
    files = {name: text.replace("POSTGRES_USER: postgres", "POSTGRES_USER: postgres\n      TOKEN: ${TOKEN}")
             for name, text in version.compose_files.items()}
    version = dataclasses.replace(version, parameters=(*version.parameters, secret), compose_files=files)
    published = with_compose_defaults(version)
    assert required_variables(version) == ["TOKEN"]
    assert "${TOKEN?set TOKEN in the environment}" in "".join(published.compose_files.values())
    with pytest.raises(InterpolationError) as caught:
        _compose_view(published, {})
    assert "set TOKEN in the environment" in str(caught.value.errors)
    assert _compose_view(published, {"TOKEN": "t0k"})["services"]["db"]["environment"]["TOKEN"] == "t0k"


def test_a_version_without_parameters_is_unchanged():
    version = dataclasses.replace(seed("nginx").versions[0], parameters=())
    assert with_compose_defaults(version) is version


@pytest.mark.parametrize(("default", "written"), [
    ("cost $5", "${V-cost $$5}"), ("a: b", "${V-a: b}"), ("q'uo\"te #x", "${V-q'uo\"te #x}")
])
def test_a_parsed_value_takes_any_default_compose_can_carry(default, written):
    assert compose_can_carry(default)
    assert with_defaults("${V}", {"V": default}, inline=False) == written
    assert interpolate_tree({"a": written}, {}) == {"a": default}


@pytest.mark.parametrize("default", ["two\nlines", "has}brace"])
def test_a_default_compose_cannot_carry_makes_the_variable_required(default):
    assert not compose_can_carry(default)
    version = dataclasses.replace(seed("nginx").versions[0], parameters=(Parameter(name="V", default=default),),
                                  compose_files={"compose.yaml": "services:\n  s:\n    image: busybox\n"
                                                                 "    environment: {V: $V}\n"})
    assert required_variables(version) == ["V"]
    assert "${V?set V in the environment}" in with_compose_defaults(version).compose_files["compose.yaml"]


def test_a_file_with_an_awkward_default_is_written_from_its_parsed_form():
    version = seed("postgresql").versions[0]
    awkward = [p for p in version.parameters if isinstance(p.default, str) and "\n" in p.default]
    assert awkward, "the postgresql seed has a multi-line default (its init script)"
    published = with_compose_defaults(version)
    # a secret (only DaoHub generates one) and the multi-line init script (Compose takes no newline
    # in a default): both must come from the environment
    assert required_variables(version) == ["POSTGRES_PASSWORD", awkward[0].name]
    document = _compose_view(published, {"POSTGRES_PASSWORD": "pw", awkward[0].name: awkward[0].default})
    assert document["configs"]["init-sql"]["content"] == awkward[0].default
    assert document["services"]["db"]["environment"]["POSTGRES_PASSWORD"] == "pw"


@pytest.mark.parametrize("key", KEYS)
def test_the_next_version_starts_from_the_template_as_written(key):
    """The publish form's draft takes the defaults out again, so a default changed in the next
    version is the one written into it (not the old one, left in the text)."""
    for version in seed(key).versions:
        published = with_compose_defaults(version)
        authored = without_compose_defaults(published)
        for file, text in version.compose_files.items():
            assert yamlsafe.load(authored.compose_files[file]) == yamlsafe.load(text), (key, file)
        if published.compose_files != version.compose_files:
            assert authored.compose_files != published.compose_files
        assert with_compose_defaults(authored).compose_files == published.compose_files


def test_a_changed_default_is_the_one_published_next():
    version = seed("voting-app").versions[0]
    authored = without_compose_defaults(with_compose_defaults(version))
    moved = tuple(dataclasses.replace(p, default=6000) if p.name == "VOTE_PORT" else p for p in authored.parameters)
    republished = with_compose_defaults(dataclasses.replace(authored, parameters=moved))
    assert "${VOTE_PORT-6000}:80" in "".join(republished.compose_files.values())
    assert "5000" not in "".join(republished.compose_files.values())

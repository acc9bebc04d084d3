"""Rendering: values per field, secrets, interpolation, compose validation, images, collisions."""

from __future__ import annotations

import asyncio
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from appstore import yamlsafe
from appstore.errors import AppStoreError, ComposeError, InterpolationError, ValuesError
from appstore.model import AppVersion, Option, Parameter, ParamType
from appstore.render import (
    ImageStatus,
    check_images,
    check_port,
    check_template,
    check_volume,
    parse_assignments,
    parse_image,
    render,
    resolve_values,
    validate_compose,
)


def version(compose: str, *params: Parameter, files: dict[str, str] | None = None) -> AppVersion:
    return AppVersion("1.0.0", files or {"compose.yaml": compose}, tuple(params))


WEB = version(
    "services:\n"
    "  web:\n"
    "    image: nginx:${TAG}\n"
    "    ports: ['${PORT}:80']\n"
    "    environment:\n"
    "      PASSWORD: ${PW}\n"
    "      DEBUG: ${DEBUG}\n"
    "      MODE: ${MODE}\n",
    Parameter("TAG", default="1.27"),
    Parameter("PORT", ParamType.PORT, default=8080, required=True),
    Parameter("PW", ParamType.SECRET, length=20),
    Parameter("DEBUG", ParamType.BOOL, default=False),
    Parameter("MODE", ParamType.ENUM, options=(Option("fast"), Option("safe")), default="safe"),
)


def test_defaults_and_generated_secret():
    result = render(WEB)
    doc = yamlsafe.load(result.text)
    env = doc["services"]["web"]["environment"]
    assert doc["services"]["web"]["image"] == "nginx:1.27"
    assert doc["services"]["web"]["ports"] == ["8080:80"]
    assert len(env["PASSWORD"]) == 20 and env["PASSWORD"].isalnum()
    assert env["DEBUG"] == "false" and env["MODE"] == "safe"
    assert result.generated == ("PW",)
    assert result.values["PW"] == env["PASSWORD"]
    assert env["PASSWORD"] not in repr(result)


def test_secrets_differ_between_renders():
    assert render(WEB).values["PW"] != render(WEB).values["PW"]


def test_custom_values_as_text():
    result = render(WEB, {"TAG": "1.25", "PORT": "9090", "PW": "given", "DEBUG": "yes", "MODE": "fast"})
    env = result.document["services"]["web"]["environment"]
    assert result.document["services"]["web"]["ports"] == ["9090:80"]
    assert env == {"PASSWORD": "given", "DEBUG": "true", "MODE": "fast"}
    assert result.generated == ()


def test_bad_values_give_field_level_errors():
    with pytest.raises(ValuesError) as info:
        render(WEB, {"PORT": "http", "MODE": "turbo", "DEBUG": "perhaps", "EXTRA": "1"})
    assert info.value.errors == {
        "EXTRA": "unknown parameter",
        "PORT": "must be a port number",
        "MODE": "must be one of fast, safe",
        "DEBUG": "must be true or false",
    }


def test_required_without_default():
    v = version("services:\n  a:\n    image: x\n    environment: {P: '${P}'}\n",
                Parameter("P", ParamType.PASSWORD, required=True))
    with pytest.raises(ValuesError) as info:
        render(v, {"P": ""})
    assert info.value.errors == {"P": "required"}
    assert render(v, {"P": "s3cret"}).document["services"]["a"]["environment"]["P"] == "s3cret"


@pytest.mark.parametrize("values", [
    {"PORT": None}, {"PORT": ["80"]}, {"PORT": {"a": 1}}, {"PORT": 1.5}, {"PORT": "8" * 40}, {"TAG": "x" * 70000},
    {"TAG": "\x00"}, {"MODE": 3}, {"DEBUG": 2}, {"TAG": "two\nlines"},
])
def test_odd_values_never_escape_as_other_exceptions(values):
    try:
        render(WEB, values)
    except AppStoreError as exc:
        assert set(exc.errors) <= set(values)


@pytest.mark.parametrize("values", [["PORT", "80"], "PORT=80", 5, [("PORT", "80")]])
def test_values_that_are_not_a_mapping(values):
    with pytest.raises(ValuesError) as info:
        render(WEB, values)
    assert info.value.errors == {"": "the values must be an object mapping parameter names to values"}


def test_dollar_in_values_is_escaped_in_the_output():
    result = render(WEB, {"PW": "pa$$w${rd}$X"})
    assert "PASSWORD: pa$$$$w$${rd}$$X" in result.text
    # what docker compose would read back: the value exactly as given
    from appstore.interpolate import interpolate_tree
    assert interpolate_tree(yamlsafe.load(result.text), {"X": "no", "rd": "no"})["services"]["web"][
        "environment"]["PASSWORD"] == "pa$$w${rd}$X"


def test_template_escapes_survive_for_the_container():
    v = version("services:\n  a:\n    image: x\n    command: ['sh', '-c', 'echo $$HOME $${USER}']\n")
    assert "echo $$HOME $${USER}" in render(v).text


def test_undeclared_reference_is_an_error_not_the_environment(monkeypatch):
    monkeypatch.setenv("HOME_SECRET", "leaked")
    v = version("services:\n  a:\n    image: x\n    environment: {S: '${HOME_SECRET}'}\n")
    with pytest.raises(ComposeError) as info:
        render(v)
    assert list(info.value.errors) == ["compose.yaml:${HOME_SECRET}"]
    assert "not a parameter" in info.value.errors["compose.yaml:${HOME_SECRET}"]


def test_parameter_named_like_compose_keys_changes_only_its_references(monkeypatch):
    # Parameters called image, ports, services and PASSWORD: keys stay keys, and a PASSWORD
    # variable in the environment of whoever renders (or later runs compose) changes nothing.
    monkeypatch.setenv("PASSWORD", "from-the-shell")
    v = version(
        "services:\n"
        "  web:\n"
        "    image: ${image}\n"
        "    ports: ['${ports}:80']\n"
        "    environment:\n"
        "      image: literal\n"
        "      PASSWORD: ${PASSWORD}\n"
        "    labels:\n"
        "      services: ${services}\n",
        Parameter("image", default="redis:7"), Parameter("ports", ParamType.PORT, default=81),
        Parameter("services", default="two"), Parameter("PASSWORD", ParamType.SECRET, default="p$w"),
    )
    doc = render(v).document
    assert list(doc) == ["services"]
    assert doc["services"]["web"]["image"] == "redis:7"
    assert doc["services"]["web"]["ports"] == ["81:80"]
    assert doc["services"]["web"]["environment"] == {"image": "literal", "PASSWORD": "p$w"}
    assert doc["services"]["web"]["labels"] == {"services": "two"}
    assert "PASSWORD: p$$w" in render(v).text


def test_keys_are_not_interpolated():
    v = version("services:\n  a:\n    image: x\n    labels:\n      ${K}: v\n", Parameter("K", default="z"))
    assert render(v).document["services"]["a"]["labels"] == {"${K}": "v"}


def test_interpolation_error_names_the_path():
    v = version("services:\n  a:\n    image: ${IMG:?choose an image}\n", Parameter("IMG"))
    with pytest.raises(InterpolationError) as info:
        render(v)
    assert info.value.errors == {"services.a.image": "required variable IMG is missing a value: choose an image"}


def test_compose_defaults_in_template_still_apply_for_unset_optional_parameters():
    v = version("services:\n  a:\n    image: 'x:${TAG:-stable}'\n", Parameter("TAG"))
    assert render(v).document["services"]["a"]["image"] == "x:stable"
    assert render(v, {"TAG": "edge"}).document["services"]["a"]["image"] == "x:edge"


@pytest.mark.parametrize(("doc", "path", "fragment"), [
    ({"services": {"a": {"image": "x"}}, "service": {}}, "service", "unknown top-level key"),
    ({"services": {"a": {}}}, "services.a", "image or a build"),
    ({"services": {}}, "services", "at least one"),
    ({"name": "x"}, "services", "required"),
    ({"services": {"a b": {"image": "x"}}}, "services.a b", "invalid service name"),
    ({"services": {"a": {"image": "UPPER/case"}}}, "services.a.image", "not a valid image"),
    ({"services": {"a": {"image": "x", "ports": ["99999:80"]}}}, "services.a.ports[0]", "host port"),
    ({"services": {"a": {"image": "x", "ports": "80:80"}}}, "services.a.ports", "list"),
    ({"services": {"a": {"image": "x", "volumes": ["data:/d"]}}}, "services.a.volumes[0]", "not declared"),
    ({"services": {"a": {"image": "x", "volumes": ["relative"]}}}, "services.a.volumes[0]", "absolute"),
    ({"services": {"a": {"image": "x", "networks": ["front"]}}}, "services.a.networks[0]", "not declared"),
    ({"services": {"a": {"image": "x", "secrets": [{"source": "s"}]}}}, "services.a.secrets[0]", "not declared"),
    ({"services": {"a": {"image": "x"}}, "name": "Bad Name"}, "name", "project name"),
    ({"services": {"a": {"image": "x"}}, "volumes": ["v"]}, "volumes", "mapping"),
    ({"services": {"a": {"image": "x", "depends_on": ["b"]}}}, "services.a.depends_on[0]", "undefined service"),
    ({"services": {"a": {"image": "x", "depends_on": {"c": {"condition": "service_healthy"}}}}},
     "services.a.depends_on[0]", "undefined service 'c'"),
])
def test_compose_validation(doc, path, fragment):
    with pytest.raises(ComposeError) as info:
        validate_compose(doc)
    assert path in info.value.errors, info.value.errors
    assert fragment in info.value.errors[path]


def test_known_top_level_keys_and_extensions_are_kept():
    text = ("name: demo\nversion: '3.9'\nservices:\n  a:\n    build: .\n  b:\n    extends: {service: a}\n"
            "networks: {n: {}}\nvolumes: {v: {}}\nconfigs: {c: {file: ./c}}\nsecrets: {s: {file: ./s}}\n"
            "models: {m: {model: ai/x}}\nx-custom: {keep: '${V}'}\n")
    result = render(version(text, Parameter("V", default="me")))
    assert list(result.document) == ["name", "version", "services", "networks", "volumes", "configs", "secrets",
                                     "models", "x-custom"]
    assert result.document["x-custom"] == {"keep": "me"}
    assert result.images == ()  # built, not pulled


def test_output_key_order_is_the_template_order_and_stable():
    text = "volumes: {z: {}}\nservices:\n  zeta: {image: z, volumes: ['z:/z']}\n  alpha: {image: a}\n"
    a, b = render(version(text)), render(version(text))
    assert a.text == b.text
    assert a.text.index("volumes:") < a.text.index("services:") and a.text.index("zeta") < a.text.index("alpha")


def test_project_name_goes_first():
    result = render(version("services:\n  a: {image: x}\nname: old\n"), project_name="mine")
    assert list(result.document) == ["name", "services"] and result.document["name"] == "mine"


def test_images_are_normalized_and_grouped():
    text = ("services:\n  a: {image: nginx}\n  b: {image: 'nginx:latest'}\n  c: {image: 'ghcr.io/o/r:1'}\n"
            "  d: {image: 'team/app@sha256:" + "a" * 64 + "'}\n  e: {image: 'localhost:5000/t/r:2', build: .}\n")
    images = render(version(text)).images
    assert [(i.normalized, i.services) for i in images] == [
        ("docker.io/library/nginx:latest", ("a", "b")),
        ("ghcr.io/o/r:1", ("c",)),
        ("docker.io/team/app@sha256:" + "a" * 64, ("d",)),
        ("localhost:5000/t/r:2", ("e",)),
    ]


@pytest.mark.parametrize(("ref", "normalized"), [
    ("redis", "docker.io/library/redis:latest"),
    ("redis:7", "docker.io/library/redis:7"),
    ("library/redis", "docker.io/library/redis:latest"),
    ("docker.io/redis", "docker.io/library/redis:latest"),
    ("index.docker.io/user/app:1", "docker.io/user/app:1"),
    ("Registry.Example.com:5000/a/b", "registry.example.com:5000/a/b:latest"),
    ("hub.local/tenant/app:v1.2", "hub.local/tenant/app:v1.2"),
    ("localhost/a", "localhost/a:latest"),
    ("[::1]:5000/a:1", "[::1]:5000/a:1"),
    ("a/b/c/d:tag", "docker.io/a/b/c/d:tag"),
])
def test_parse_image(ref, normalized):
    assert parse_image(ref).normalized == normalized


@pytest.mark.parametrize("ref", ["", "UPPER", "a:b:c", "a@sha256:short", "-a", "a//b", "a b", "a:" + "t" * 200,
                                 "http://x/y"])
def test_parse_image_refuses(ref):
    with pytest.raises(ValueError):
        parse_image(ref)


@pytest.mark.parametrize(("entry", "ok"), [
    (80, True), ("80", True), ("3000-3005", True), ("8000:8000", True), ("9090-9091:8080-8081", True),
    ("49100:22", True), ("127.0.0.1:8001:8001", True), ("127.0.0.1:5000-5010:5000-5010", True),
    ("127.0.0.1::5000", True), ("6060:6060/udp", True), ("[::1]:6001:6001", True), ("8000-8010:80", True),
    ("12400-12500:1240/sctp", True),
    ({"target": 80, "published": "8080", "host_ip": "127.0.0.1", "protocol": "tcp", "mode": "host"}, True),
    ({"target": 80, "published": "8000-8010"}, True), ({"target": 80, "name": "web", "app_protocol": "http"}, True),
    (0, False), (70000, False), (True, False), ("", False), ("80/icmp", False), ("a:80", False),
    ("1.2.3:80:80", False), ("8000-8001:80-82", False), ("80-70", False), ("1:2:3:4", False), ("[::1]80", False),
    ({"published": 80}, False), ({"target": 80, "protocol": "icmp"}, False), ({"target": 80, "mode": "x"}, False),
    ({"target": 80, "host_ip": "nope"}, False), ({"target": 80, "bogus": 1}, False), (["80"], False),
])
def test_ports(entry, ok):
    assert (check_port(entry) is None) is ok, check_port(entry)


@pytest.mark.parametrize(("entry", "problem", "named"), [
    ("/data", False, None), ("data:/data", False, "data"), ("./site:/usr/share/nginx/html:ro", False, None),
    ("~/x:/x", False, None), ("/host:/c:rw,z", False, None), ("data:/d:nocopy", False, "data"),
    ({"type": "volume", "source": "data", "target": "/d", "volume": {"nocopy": True}}, False, "data"),
    ({"type": "bind", "source": "./a", "target": "/a", "read_only": True}, False, None),
    ({"type": "tmpfs", "target": "/t", "tmpfs": {"size": 1000}}, False, None),
    ("rel", True, None), ("a:b:c:d", True, None), ("data:/d:bogus", True, None), (":/x", True, None),
    ({"type": "bind", "target": "/a"}, True, None), ({"type": "nfs", "target": "/a"}, True, None),
    ({"source": "x", "target": "rel"}, True, None), ({"target": "/a", "extra": 1}, True, None), (5, True, None),
])
def test_volumes(entry, problem, named):
    found, name = check_volume(entry)
    assert (found is not None) is problem, found
    assert name == named


def test_several_compose_files_are_merged():
    v = version("", Parameter("P", ParamType.PORT, default=81), files={
        "compose.yaml": "services:\n  web:\n    image: nginx\n    ports: ['80:80']\n",
        "compose.override.yaml": "services:\n  web:\n    ports: ['${P}:81']\n    labels: {a: b}\n",
    })
    web = render(v).document["services"]["web"]
    assert web == {"image": "nginx", "ports": ["80:80", "81:81"], "labels": {"a": "b"}}


def test_huge_output_is_refused():
    v = version("services:\n  a:\n    image: x\n    environment:\n" + "".join(
        f"      E{i}: ${{BIG}}\n" for i in range(200)), Parameter("BIG", ParamType.MULTILINE))
    with pytest.raises(AppStoreError):
        render(v, {"BIG": "y" * 60000})


def test_template_bomb_is_refused():
    text = "x-a: &a [l, l, l, l, l, l, l, l, l]\n" + "".join(
        f"x-{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
        f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))
    with pytest.raises(ComposeError) as info:
        render(version(text + "services: {a: {image: x}}\n"))
    assert "expands to more than" in info.value.errors["compose.yaml"]


def test_check_template():
    check_template(WEB)
    required = version("services:\n  a:\n    image: 'x:${T}'\n    ports: ['${P}:1']\n",
                       Parameter("T", required=True), Parameter("P", ParamType.PORT, required=True, min=2000))
    check_template(required)
    with pytest.raises(ComposeError) as info:
        check_template(version("services:\n  a:\n    image: x\n    command: echo $HOME\n"))
    assert "compose.yaml:${HOME}" in info.value.errors
    with pytest.raises(ComposeError):
        check_template(version("services:\n  a:\n    image: x\n    ports: ['${P}:80']\n",
                               Parameter("P", default="not-a-port")))
    with pytest.raises(ComposeError):
        check_template(version("- not a mapping\n"))


def test_resolve_values_reports_generated_only_when_empty():
    values, generated = resolve_values(WEB, {"PW": ""})
    assert generated == ["PW"] and len(values["PW"]) == 20
    values, generated = resolve_values(WEB, {"PW": "mine"})
    assert generated == [] and values["PW"] == "mine"


def test_secret_alphabet_is_respected():
    v = version("services: {a: {image: x, environment: {S: '${S}'}}}\n",
                Parameter("S", ParamType.SECRET, length=64, alphabet="abcdef0123"))
    assert set(render(v).values["S"]) <= set("abcdef0123")


def test_parse_assignments():
    assert parse_assignments(["A=1", "B=x=y", "C="]) == {"A": "1", "B": "x=y", "C": ""}
    with pytest.raises(ValuesError) as info:
        parse_assignments(["novalue", "=x"])
    assert set(info.value.errors) == {"novalue", "=x"}


def test_image_checker_hook():
    seen = []

    async def checker(image):
        seen.append(image.normalized)
        return ImageStatus(exists=image.registry == "hub.local", pullable=image.repository.startswith("team/"))

    v = version("services:\n  a: {image: 'hub.local/team/a:1'}\n  b: {image: 'hub.local/other/b:1'}\n"
                "  c: {image: redis}\n  d: {image: redis}\n")
    results = asyncio.run(check_images(render(v).images, checker))
    assert [(i.normalized, s.exists, s.pullable) for i, s in results] == [
        ("hub.local/team/a:1", True, True), ("hub.local/other/b:1", True, False),
        ("docker.io/library/redis:latest", False, False)]
    assert len(seen) == 3


def test_render_does_not_read_the_process_environment(monkeypatch):
    monkeypatch.setitem(os.environ, "TAG", "from-env")
    assert render(WEB).document["services"]["web"]["image"] == "nginx:1.27"


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=30),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                                         max_size=3), max_leaves=6)


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["TAG", "PORT", "PW", "DEBUG", "MODE", "OTHER", ""]), json_values, max_size=6))
def test_any_submitted_values_give_a_result_or_field_errors(values):
    try:
        result = render(WEB, values)
    except AppStoreError as exc:
        assert exc.errors and set(exc.errors) <= set(values) | {"services.web.image", "services.web.ports[0]"}
    else:
        assert yamlsafe.load(result.text)["services"]["web"]["image"].startswith("nginx:")


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(), st.text(alphabet="0123456789:-./[]abcdeftpu ", max_size=24),
                 st.dictionaries(st.sampled_from(["target", "published", "protocol", "host_ip", "mode"]),
                                 st.one_of(st.integers(), st.text(max_size=8)), max_size=5)))
def test_port_checker_never_raises(entry):
    problem = check_port(entry)
    assert problem is None or isinstance(problem, str)

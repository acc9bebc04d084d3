"""The app model: documents, field-level errors, seed folders, icons, semver."""

from __future__ import annotations

import copy
import json
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from appstore.errors import ModelError
from appstore.model import (
    SCHEMA_VERSION,
    App,
    AppVersion,
    Maintainer,
    Parameter,
    ParamType,
    SemVer,
    app_from_dict,
    check_icon_name,
    coerce_value,
    dump_metadata,
    load_app,
    load_app_folder,
    load_metadata,
    sort_versions,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32

DOC = {
    "schemaVersion": 1,
    "app": {"key": "demo", "title": "Demo", "description": "# Hi\n\ntext", "icon": "icon.png",
            "categories": ["web", "demo"], "maintainers": [{"name": "Ann", "email": "ann@example.org"}],
            "website": "https://example.org"},
    "version": {
        "version": "1.2.0-rc.1", "releaseNotes": "notes", "deprecated": False, "composeFiles": ["compose.yaml"],
        "parameters": [
            {"name": "PORT", "type": "port", "label": "Port", "default": 8080, "required": True, "group": "Net"},
            {"name": "MODE", "type": "enum", "options": [{"value": "a", "label": "A"}, {"value": "b"}],
             "default": "b"},
            {"name": "PW", "type": "secret", "length": 16},
            {"name": "NAME", "type": "string", "pattern": "[a-z]+", "default": "abc"},
            {"name": "N", "type": "int", "min": 1, "max": 5, "default": 2},
            {"name": "ON", "type": "bool", "default": True},
            {"name": "NOTE", "type": "multiline", "default": "a\nb"},
            {"name": "PASS", "type": "password", "required": True},
        ],
    },
}


def errors_of(fn, *args) -> dict[str, str]:
    with pytest.raises(ModelError) as info:
        fn(*args)
    return info.value.errors


def test_metadata_round_trip():
    app, version = load_metadata(DOC, {"compose.yaml": "services: {}\n"})
    assert app.key == "demo" and app.versions == (version,)
    assert version.parameter("PORT").type is ParamType.PORT and version.parameter("PORT").default == 8080
    assert version.parameter("MODE").options[0].label == "A"
    assert version.compose == "services: {}\n"
    assert app.maintainers == (Maintainer("Ann", "ann@example.org"),)
    dumped = dump_metadata(app, version)
    assert json.loads(json.dumps(dumped)) == dumped
    expected = copy.deepcopy(DOC)
    del expected["version"]["deprecated"]  # false is the default and is left out
    assert dumped == expected
    assert load_metadata(dumped, {"compose.yaml": "services: {}\n"}) == (app, version)


def test_whole_app_round_trip_keeps_templates_and_sorts_versions():
    app, _ = load_metadata(DOC, {"compose.yaml": "services: {}\n"})
    older = AppVersion("1.0.0", {"compose.yaml": "x: 1\n"}, (Parameter("A"),), deprecated=True)
    app = app.with_version(older)
    assert [v.version for v in app.versions] == ["1.0.0", "1.2.0-rc.1"]
    assert app_from_dict(json.loads(json.dumps(app.to_dict()))) == app


@pytest.mark.parametrize(("mutate", "path", "fragment"), [
    (lambda d: d.update(schemaVersion=2), "schemaVersion", "unsupported schema version"),
    (lambda d: d.pop("schemaVersion"), "schemaVersion", "required"),
    (lambda d: d.update(extra=1), "extra", "unknown field"),
    (lambda d: d["app"].update(key="Bad Key"), "app.key", "DNS label"),
    (lambda d: d["app"].pop("title"), "app.title", "required"),
    (lambda d: d["app"].update(title="a\nb"), "app.title", "single line"),
    (lambda d: d["app"].update(icon="../../etc/passwd.png"), "app.icon", "no directories"),
    (lambda d: d["app"].update(icon="icon.svg"), "app.icon", "must end in"),
    (lambda d: d["app"].update(icon="javascript:alert(1)"), "app.icon", "http(s) URL"),
    (lambda d: d["app"].update(website="javascript:alert(1)"), "app.website", "http or https"),
    (lambda d: d["app"]["maintainers"][0].update(email="nope"), "app.maintainers[0].email", "e-mail"),
    (lambda d: d["app"].update(categories="web"), "app.categories", "list"),
    (lambda d: d["version"].update(version="1.0"), "version.version", "not a semantic version"),
    (lambda d: d["version"].update(deprecated="yes"), "version.deprecated", "true or false"),
    (lambda d: d["version"].update(composeFiles=["../compose.yaml"]), "version.composeFiles[0]", "plain file name"),
    (lambda d: d["version"]["parameters"][0].update(type="color"), "version.parameters[0].type", "must be one of"),
    (lambda d: d["version"]["parameters"][0].update(name="1X"), "version.parameters[0].name", "variable name"),
    (lambda d: d["version"]["parameters"][0].update(name="COMPOSE_FILE"), "version.parameters[0].name",
     "reserved"),
    (lambda d: d["version"]["parameters"][0].update(default=70000), "version.parameters[0].default", "at most"),
    (lambda d: d["version"]["parameters"][0].update(min=0), "version.parameters[0].min", "1..65535"),
    (lambda d: d["version"]["parameters"][1].update(default="c"), "version.parameters[1].default", "one of a, b"),
    (lambda d: d["version"]["parameters"][1].update(options=[]), "version.parameters[1].options", "1 to 100"),
    (lambda d: d["version"]["parameters"][1]["options"].append({"value": "a"}),
     "version.parameters[1].options[2].value", "duplicate"),
    (lambda d: d["version"]["parameters"][2].update(length=4), "version.parameters[2].length", "8..256"),
    (lambda d: d["version"]["parameters"][2].update(alphabet="ab"), "version.parameters[2].alphabet", "10 distinct"),
    (lambda d: d["version"]["parameters"][3].update(pattern="("), "version.parameters[3].pattern", "regular"),
    (lambda d: d["version"]["parameters"][3].update(default="ABC"), "version.parameters[3].default", "may contain only"),
    (lambda d: d["version"]["parameters"][3].update(min=1), "version.parameters[3].min", "int and port"),
    (lambda d: d["version"]["parameters"][4].update(min=9), "version.parameters[4].max", "less than min"),
    (lambda d: d["version"]["parameters"][5].update(default="maybe"), "version.parameters[5].default", "true or"),
    (lambda d: d["version"]["parameters"][6].update(options=["x"]), "version.parameters[6].options", "only enum"),
    (lambda d: d["version"]["parameters"][7].update(length=12), "version.parameters[7].length", "only secret"),
    (lambda d: d["version"]["parameters"].append({"name": "port"}), "version.parameters[8].name", "case"),
    (lambda d: d["version"]["parameters"].append("PORT"), "version.parameters[8]", "object"),
])
def test_field_level_errors(mutate, path, fragment):
    doc = copy.deepcopy(DOC)
    mutate(doc)
    errors = errors_of(load_metadata, doc, {"compose.yaml": ""})
    assert path in errors, errors
    assert fragment in errors[path]


def test_every_problem_is_reported_at_once():
    doc = copy.deepcopy(DOC)
    doc["app"]["key"] = "UPPER"
    doc["version"]["version"] = "x"
    doc["version"]["parameters"][0]["default"] = "http"
    assert set(errors_of(load_metadata, doc, {"compose.yaml": ""})) == {
        "app.key", "version.version", "version.parameters[0].default"}


def test_missing_compose_layer_is_an_error():
    assert "version.composeFiles[0]" in errors_of(load_metadata, DOC, {"other.yaml": ""})


@pytest.mark.parametrize("bad", [None, [], "text", 3])
def test_not_an_object(bad):
    assert errors_of(load_metadata, bad)


@pytest.mark.parametrize(("name", "ok"), [
    ("icon.png", True), ("logo-2.JPEG", True), ("a.webp", True), ("x.gif", True),
    ("../icon.png", False), ("..png", False), ("dir/icon.png", False), ("dir\\icon.png", False),
    (".hidden.png", False), ("icon.svg", False), ("icon.png\x00.txt", False), ("", False),
    ("icon", False), ("/etc/icon.png", False), ("%2e%2e%2ficon.png", False), ("icon.png ", False),
])
def test_icon_names(name, ok):
    assert (check_icon_name(name) is None) is ok


SEMVER_ORDER = ["0.0.1", "0.9.0", "1.0.0-0", "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta",
                "1.0.0-beta.2", "1.0.0-beta.11", "1.0.0-rc.1", "1.0.0", "1.0.1", "1.2.0", "1.10.0", "2.0.0"]


def test_semver_precedence():
    assert sort_versions(reversed(SEMVER_ORDER)) == SEMVER_ORDER
    assert sort_versions(SEMVER_ORDER, newest_first=True)[0] == "2.0.0"


def test_semver_build_metadata_does_not_change_precedence():
    a, b = SemVer.parse("1.0.0+build.2"), SemVer.parse("1.0.0+build.10")
    assert a.same_precedence(b) and not a.precedes(b) and not b.precedes(a)
    assert SemVer.parse("1.0.0-rc.1+x").precedes(SemVer.parse("1.0.0"))
    assert str(SemVer.parse("1.2.3-rc.1+sha.5")) == "1.2.3-rc.1+sha.5"
    assert sorted([b, a]) == sorted([a, b])  # deterministic


@pytest.mark.parametrize("bad", ["1", "1.0", "01.0.0", "1.0.0-01", "1.0.0-", "1.0.0+", "v1.0.0", "1.0.0-a..b",
                                 "1.0.0 ", "", "1.0.0-é", "1\u0661.0.0", "9" * 200 + ".0.0"])
def test_semver_rejects(bad):
    with pytest.raises(ValueError):
        SemVer.parse(bad)


def test_latest_prefers_stable_non_deprecated():
    app = App("a", "A", versions=(AppVersion("1.0.0"), AppVersion("1.1.0", deprecated=True),
                                  AppVersion("2.0.0-rc.1")))
    assert app.version().version == "1.0.0"
    assert app.version("2.0.0-rc.1").version == "2.0.0-rc.1"
    with pytest.raises(KeyError):
        app.version("9.9.9")
    only_pre = App("a", "A", versions=(AppVersion("2.0.0-rc.1"), AppVersion("2.0.0-rc.2")))
    assert only_pre.latest().version == "2.0.0-rc.2"


@pytest.mark.parametrize(("ptype", "raw", "expected"), [
    (ParamType.INT, "42", 42), (ParamType.INT, " -3 ", -3), (ParamType.PORT, 80, 80), (ParamType.BOOL, "yes", True),
    (ParamType.BOOL, "0", False), (ParamType.BOOL, False, False), (ParamType.STRING, 5, "5"),
])
def test_coerce_accepts_text_forms(ptype, raw, expected):
    assert coerce_value(Parameter("X", ptype), raw) == (expected, None)


@pytest.mark.parametrize(("param", "raw", "fragment"), [
    (Parameter("X", ParamType.INT), "4.5", "integer"), (Parameter("X", ParamType.INT), True, "integer"),
    (Parameter("X", ParamType.PORT), 0, "at least 1"), (Parameter("X", ParamType.PORT), "65536", "at most"),
    (Parameter("X", ParamType.BOOL), "maybe", "true or false"), (Parameter("X"), "a\nb", "single line"),
    (Parameter("X"), ["list"], "string"), (Parameter("X", ParamType.SECRET), "has space", "spaces"),
    (Parameter("X", pattern="[0-9]+"), "12a", "may contain only digits"), (Parameter("X"), "nul\x00", "NUL"),
])
def test_coerce_refuses(param, raw, fragment):
    value, problem = coerce_value(param, raw)
    assert value is None and fragment in problem


def write(path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)


def make_folder(root, *, icon_name="icon.png", icon=PNG):
    app = root / "demo"
    write(app / "app.yaml", f"title: Demo\nicon: {icon_name}\ncategories: [web]\n")
    write(app / "README.md", "A **demo**.\n")
    if icon is not None:
        write(app / icon_name, icon)
    write(app / "1.0.0" / "version.yaml", "parameters:\n  - {name: PORT, type: port, default: 80}\n")
    write(app / "1.0.0" / "compose.yaml", "services:\n  web:\n    image: nginx\n")
    write(app / "0.9.0" / "compose.yaml", "services:\n  web:\n    image: nginx:old\n")
    write(app / "notes" / "compose.yaml", "ignored: true\n")
    return app


def test_load_folder(tmp_path):
    app = load_app_folder(make_folder(tmp_path))
    assert app.key == "demo" and app.description == "A **demo**.\n"
    assert [v.version for v in app.versions] == ["0.9.0", "1.0.0"]
    assert app.icon_data.media_type == "image/png" and app.icon_data.data == PNG
    assert app.version("1.0.0").parameter("PORT").default == 80
    assert load_app(tmp_path / "demo") == app


def test_folder_icon_traversal_is_refused(tmp_path):
    (tmp_path / "secret.png").write_bytes(PNG)
    app = make_folder(tmp_path, icon=None)
    (app / "app.yaml").write_text("title: Demo\nicon: ../secret.png\n")
    assert "app.yaml.icon" in errors_of(load_app_folder, app)


def test_folder_icon_symlink_out_is_refused(tmp_path):
    outside = tmp_path / "outside.png"
    outside.write_bytes(PNG)
    app = make_folder(tmp_path, icon=None)
    os.symlink(outside, app / "icon.png")
    assert "no file" in errors_of(load_app_folder, app)["app.yaml.icon"]


def test_folder_icon_content_must_match_its_type(tmp_path):
    app = make_folder(tmp_path, icon=b"<svg onload=alert(1)>")
    assert "is not a image/png file" in errors_of(load_app_folder, app)["app.yaml.icon"]


def test_folder_compose_file_outside_is_refused(tmp_path):
    app = make_folder(tmp_path)
    (app / "1.0.0" / "version.yaml").write_text("composeFiles: [../../../etc/passwd]\n")
    errors = errors_of(load_app_folder, app)
    assert any("composeFiles" in k or "passwd" in k for k in errors), errors


def test_folder_version_mismatch_and_bomb(tmp_path):
    app = make_folder(tmp_path)
    (app / "1.0.0" / "version.yaml").write_text("version: 2.0.0\n")
    assert "must match the folder name" in str(errors_of(load_app_folder, app))
    (app / "1.0.0" / "version.yaml").write_text("a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)},"
        f" *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n"
        for i in range(8)))
    assert "expands to more than" in errors_of(load_app_folder, app)["1.0.0/version.yaml"]


def test_folder_without_versions(tmp_path):
    write(tmp_path / "x" / "app.yaml", "title: X\n")
    assert "versions" in errors_of(load_app_folder, tmp_path / "x")


def test_load_metadata_file_with_compose_beside(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps(DOC))
    (tmp_path / "compose.yaml").write_text("services:\n  a:\n    image: a\n")
    app = load_app(tmp_path / "meta.json")
    assert app.version().compose.startswith("services:")
    assert app.version().version == "1.2.0-rc.1"
    assert SCHEMA_VERSION == 1


idents = st.one_of(st.integers(0, 30).map(str), st.from_regex(r"[a-z-][0-9a-z-]{0,3}", fullmatch=True))
semvers = st.builds(
    SemVer, st.integers(0, 3), st.integers(0, 3), st.integers(0, 3),
    st.lists(idents, max_size=3).map(tuple), st.lists(st.from_regex(r"[0-9a-z]{1,3}", fullmatch=True),
                                                      max_size=2).map(tuple))


@given(semvers)
def test_semver_text_round_trip(version):
    assert SemVer.parse(str(version)) == version


@given(semvers, semvers, semvers)
def test_semver_order_is_a_total_order(a, b, c):
    assert (a < b) + (b < a) + (a == b) == 1
    if a < b < c:
        assert a < c
    if a.precedes(b):
        assert a < b
    # a release follows its own pre-releases
    release = SemVer(a.major, a.minor, a.patch)
    if a.prerelease:
        assert a.precedes(release)


@pytest.mark.parametrize("pattern, words", [
    ("[a-z0-9-]+", "may contain only lowercase letters, digits and '-'"),
    ("[a-z ]*", "may contain only lowercase letters and spaces"),
    ("[0-9]{4,6}", "must be 4 to 6 characters, using only digits"),
    ("[A-Z]{2}", "must be exactly 2 characters, using only uppercase letters"),
    ("(foo|bar)-[0-9]+", "is not in the form this app expects (see the field's description)"),
    ("[^/]+", "is not in the form this app expects (see the field's description)"),
])
def test_pattern_errors_are_words_not_regular_expressions(pattern, words):
    from appstore.model import describe_pattern

    assert describe_pattern(pattern) == words
    assert pattern not in words

"""Rancher v1 catalog folders imported as apps, then rendered."""

from __future__ import annotations

import pytest

from appstore.errors import ModelError
from appstore.model import ParamType
from appstore.rancher import EXTENSION, coerce_version, import_rancher_catalog, import_rancher_folder
from appstore.render import check_template, render

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16

CONFIG = """name: WordPress
description: Blog tool, publishing platform and CMS
version: 4.9-rancher2
category: Blogging
maintainer: Jane Doe <jane@example.org>
license: GPL
projectURL: https://wordpress.org
"""

V0_COMPOSE = """wordpress:
  image: wordpress:4.8
  links:
    - db:mysql
  ports:
    - ${public_port}:80
  labels:
    io.rancher.scheduler.affinity: ${affinity}
db:
  image: mariadb:10
  environment:
    MYSQL_ROOT_PASSWORD: ${db_password}
"""

V0_RANCHER = """.catalog:
  name: WordPress
  version: 4.8-rancher1
  description: first
  questions:
    - variable: public_port
      label: Public port
      required: true
      default: 80
      type: int
      min: 1
      max: 65535
    - variable: db_password
      label: Database password
      type: password
      required: true
      default: example
wordpress:
  scale: 2
"""

V1_COMPOSE = """version: '2'
services:
  wordpress:
    image: wordpress:${wp_tag}
    ports:
      - ${public_port}:80
    environment:
      WORDPRESS_DB_PASSWORD: ${db_password}
      WORDPRESS_DEBUG: ${debug}
    volumes:
      - wp:/var/www/html
  db:
    image: mariadb:10
    environment:
      MYSQL_ROOT_PASSWORD: ${db_password}
    external_links:
      - ${db_service}
volumes:
  wp: {}
"""

V1_RANCHER = """version: '2'
catalog:
  ignored: true
.catalog:
  name: WordPress
  version: v4.9-rancher2
  description: second
  questions:
    - {variable: public_port, label: Public port, type: int, default: 8080, required: true}
    - {variable: db_password, label: Database password, type: password, required: true}
    - {variable: wp_tag, label: Tag, type: enum, options: ["4.9", "4.8"], default: "4.9"}
    - {variable: debug, label: Debug, type: boolean, default: false}
    - {variable: db_service, label: External database, type: service, required: false}
    - {variable: notes, label: Notes, type: multiline, default: "a\\nb"}
    - {variable: cert, label: Certificate, type: certificate}
"""


def make_app(root, name="wordpress"):
    app = root / name
    (app / "0").mkdir(parents=True)
    (app / "1").mkdir()
    (app / "config.yml").write_text(CONFIG)
    (app / "catalogIcon-wordpress.png").write_bytes(PNG)
    (app / "0" / "docker-compose.yml").write_text(V0_COMPOSE)
    (app / "0" / "rancher-compose.yml").write_text(V0_RANCHER)
    (app / "1" / "docker-compose.yml").write_text(V1_COMPOSE)
    (app / "1" / "rancher-compose.yml").write_text(V1_RANCHER)
    return app


def test_import_folder(tmp_path):
    app = import_rancher_folder(make_app(tmp_path))
    assert (app.key, app.title, app.categories, app.website) == ("wordpress", "WordPress", ("Blogging",),
                                                                 "https://wordpress.org")
    assert app.maintainers[0].name == "Jane Doe" and app.maintainers[0].email == "jane@example.org"
    assert app.icon == "catalogIcon-wordpress.png" and app.icon_data.data == PNG
    assert [v.version for v in app.versions] == ["4.8.0-rancher1", "4.9.0-rancher2"]
    assert app.extensions[EXTENSION]["versions"] == {
        "4.8.0-rancher1": {"folder": "0", "version": "4.8-rancher1"},
        "4.9.0-rancher2": {"folder": "1", "version": "v4.9-rancher2"}}
    assert app.extensions[EXTENSION]["license"] == "GPL"
    latest = app.version()
    assert latest.release_notes == "second"
    types = {p.name: p.type for p in latest.parameters}
    assert types == {"public_port": ParamType.INT, "db_password": ParamType.PASSWORD, "wp_tag": ParamType.ENUM,
                     "debug": ParamType.BOOL, "db_service": ParamType.STRING, "notes": ParamType.MULTILINE,
                     "cert": ParamType.STRING}
    assert "service" in latest.parameter("db_service").description
    assert latest.parameter("public_port").default == 8080


def test_v1_layout_is_moved_under_services_and_renders(tmp_path):
    app = import_rancher_folder(make_app(tmp_path))
    first = app.version("4.8.0-rancher1")
    check_template(first)
    doc = render(first, {"db_password": "pw"}).document
    assert set(doc) == {"services"}
    assert doc["services"]["wordpress"]["ports"] == ["80:80"]
    assert doc["services"]["db"]["environment"]["MYSQL_ROOT_PASSWORD"] == "pw"
    # `affinity` was not asked for: it became an optional parameter, empty when unanswered
    assert first.parameter("affinity").required is False
    assert doc["services"]["wordpress"]["labels"]["io.rancher.scheduler.affinity"] == ""


def test_v2_layout_renders_with_answers(tmp_path):
    latest = import_rancher_folder(make_app(tmp_path)).version()
    doc = render(latest, {"db_password": "s3cret", "wp_tag": "4.8", "debug": "true", "db_service": "db/mysql"}).document
    wordpress = doc["services"]["wordpress"]
    assert wordpress["image"] == "wordpress:4.8" and wordpress["ports"] == ["8080:80"]
    assert wordpress["environment"] == {"WORDPRESS_DB_PASSWORD": "s3cret", "WORDPRESS_DEBUG": "true"}
    with pytest.raises(ModelError.__mro__[1]) as info:  # AppStoreError: a required password is missing
        render(latest, {})
    assert info.value.errors == {"db_password": "required"}


@pytest.mark.parametrize(("raw", "expected"), [
    ("1.2.3", "1.2.3"), ("v0.59.2", "0.59.2"), ("5.7-rancher1", "5.7.0-rancher1"), ("1.0", "1.0.0"),
    ("10", "10.0.0"), ("2.1.0+build", "2.1.0-build"), ("3.4_beta 2", "3.4.0-beta-2"), ("latest", "0.0.3"),
    (None, "0.0.3"), ("1.2.3.4", "1.2.3-4"),
])
def test_coerce_version(raw, expected):
    assert coerce_version(raw, "3") == expected


def test_templated_compose_is_refused(tmp_path):
    app = make_app(tmp_path)
    (app / "1" / "docker-compose.yml").rename(app / "1" / "docker-compose.yml.tpl")
    with pytest.raises(ModelError) as info:
        import_rancher_folder(app)
    assert "Go-templated" in info.value.errors["1/docker-compose.yml.tpl"]


def test_bad_questions_get_field_errors(tmp_path):
    app = make_app(tmp_path)
    (app / "1" / "rancher-compose.yml").write_text(
        ".catalog:\n  questions:\n    - {variable: x-y, type: string}\n    - {variable: ok, type: color}\n"
        "    - {variable: n, type: int, default: many}\n")
    with pytest.raises(ModelError) as info:
        import_rancher_folder(app)
    assert set(info.value.errors) == {"1/rancher-compose.yml.catalog.questions[0].name",
                                      "1/rancher-compose.yml.catalog.questions[1].type",
                                      "1/rancher-compose.yml.catalog.questions[2].default"}


def test_bomb_and_missing_files(tmp_path):
    app = make_app(tmp_path)
    (app / "0" / "docker-compose.yml").write_text("a: &a [" + ", ".join(["x"] * 100) + "]\nb: &b [" + ", ".join(
        ["*a"] * 100) + "]\nc: &c [" + ", ".join(["*b"] * 100) + "]\n")
    (app / "1" / "docker-compose.yml").unlink()
    with pytest.raises(ModelError) as info:
        import_rancher_folder(app)
    assert "expands to more than" in info.value.errors["0/docker-compose.yml"]
    assert info.value.errors["1/docker-compose.yml"] == "missing"


def test_svg_and_symlinked_icons_are_skipped(tmp_path):
    app = make_app(tmp_path)
    (app / "catalogIcon-wordpress.png").unlink()
    (app / "catalogIcon-wordpress.svg").write_text("<svg onload='alert(1)'/>")
    (tmp_path / "outside.png").write_bytes(PNG)
    (app / "catalogIcon-z.png").symlink_to(tmp_path / "outside.png")
    imported = import_rancher_folder(app)
    assert imported.icon == "" and imported.icon_data is None


def test_import_catalog(tmp_path):
    make_app(tmp_path, "wordpress")
    make_app(tmp_path, "Blog_Two")
    assert [a.key for a in import_rancher_catalog(tmp_path)] == ["blog-two", "wordpress"]
    (tmp_path / "wordpress" / "config.yml").write_text("- not a mapping\n")
    with pytest.raises(ModelError) as info:
        import_rancher_catalog(tmp_path)
    assert "wordpress/config.yml" in info.value.errors

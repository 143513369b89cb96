"""/api/v1/textbooks, the admin page and `hub textbook`: the same use cases through each door."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

from click.testing import CliRunner
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from hub.api import openapi_document
from hub.cli import main
from hub.textbooks import services
from hub.textbooks.cli import shipped_files
from tests.conftest import Accounts
from tests.unit.textbooks.test_services import book


def _shipped(db: Session) -> None:
    for path in shipped_files():
        services.import_file(db, path.name, path.read_bytes())
    db.commit()


def test_anyone_lists_textbooks_by_subject_edition_grade_and_volume(client: FlaskClient, db: Session) -> None:
    _shipped(db)
    everything = client.get("/api/v1/textbooks").json["items"]
    assert len(everything) == len(shipped_files())
    three = client.get("/api/v1/textbooks?subject=math&grade=3&volume=上册&edition=人教版").json["items"]
    assert [(b["key"], b["title"], b["nodes"]) for b in three] == [("renjiao-math-3-1", "数学 三年级 上册", 36)]
    assert client.get("/api/v1/textbooks?edition=北师大版").json["items"] == []
    wrong = client.get("/api/v1/textbooks?grade=10&subject=maths")
    assert wrong.status_code == 422 and {"grade", "subject"} <= set(wrong.json["error"]["fields"])


def test_a_textbook_comes_with_its_tree_nested(client: FlaskClient, db: Session) -> None:
    _shipped(db)
    nine = client.get("/api/v1/textbooks?grade=9").json["items"][0]
    tree = client.get(f"/api/v1/textbooks/{nine['id']}").json
    assert (tree["key"], tree["courses"], tree["lessons"]) == ("renjiao-math-9-1", 0, 0)
    chapter = tree["tree"][0]
    assert (chapter["key"], chapter["kind"], chapter["week"]) == ("21", "chapter", 1)
    section = chapter["children"][1]
    assert section["children"][0]["title"] == "21.2.1 配方法"
    assert client.get("/api/v1/textbooks/999999").status_code == 404
    paths = openapi_document()["paths"]
    assert {"get", "post"} <= set(paths["/api/v1/textbooks"]) and {"get", "delete"} <= set(
        paths["/api/v1/textbooks/{textbook_id}"]
    )


def test_admins_import_and_delete_through_the_api(client: FlaskClient, db: Session, make: Accounts) -> None:
    school = make.school()
    admin = make.bearer(make.user("admin@hub.cn", school, "admin"))
    uploader = make.bearer(make.user("up@hub.cn", school, "uploader"))
    content = json.dumps(book()).encode()

    def send(headers: dict[str, str], data: bytes = content, name: str = "b.json") -> TestResponse:
        return client.post(
            "/api/v1/textbooks", data={"file": (io.BytesIO(data), name)}, headers=headers,
            content_type="multipart/form-data",
        )  # fmt: skip

    assert send(uploader).status_code == 403
    created = send(admin)
    assert created.status_code == 200, created.json
    assert created.json["created"] and created.json["added"] == 5
    again = send(admin).json
    assert (again["created"], again["unchanged"]) == (False, 5)
    wrong = send(admin, b'{"key": "x"}')
    assert wrong.status_code == 422 and "file" in wrong.json["error"]["fields"]
    zh = client.post(
        "/api/v1/textbooks", data={"file": (io.BytesIO(b"{"), "b.json")}, content_type="multipart/form-data",
        headers={**admin, "Accept-Language": "zh"},
    )  # fmt: skip
    assert zh.status_code == 422 and "JSON" in zh.json["error"]["message"]
    assert re.search(r"[\u4e00-\u9fff]", zh.json["error"]["message"])
    book_id = created.json["textbook"]["id"]
    assert client.delete(f"/api/v1/textbooks/{book_id}", headers=uploader).status_code == 403
    assert client.delete(f"/api/v1/textbooks/{book_id}", headers=admin).status_code == 204
    assert client.get(f"/api/v1/textbooks/{book_id}").status_code == 404


def _sign_in(client: FlaskClient, email: str) -> None:
    page = client.get("/login").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    answer = client.post("/login", data={"email": email, "password": "a long password", "csrf_token": token})
    assert answer.status_code == 302


def _csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]


def test_the_admin_page_imports_shows_the_tree_and_deletes(client: FlaskClient, db: Session, make: Accounts) -> None:
    school = make.school()
    make.user("admin@hub.cn", school, "admin", "a long password")
    make.user("up@hub.cn", school, "uploader", "a long password")
    assert client.get("/admin/textbooks/").status_code == 302  # to sign-in
    _sign_in(client, "up@hub.cn")
    assert client.get("/admin/textbooks/").status_code == 403
    client.post("/logout", data={"csrf_token": _csrf(client, "/")})
    _sign_in(client, "admin@hub.cn")
    token = _csrf(client, "/admin/textbooks/")
    path = next(p for p in shipped_files() if p.name == "renjiao-math-3-1.json")
    answer = client.post(
        "/admin/textbooks/", data={"file": (io.BytesIO(path.read_bytes()), path.name), "csrf_token": token},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert answer.status_code == 303
    tree = client.get(answer.headers["Location"]).get_data(as_text=True)
    assert "分数的初步认识" in tree and "几分之一" in tree and "36" in tree
    listing = client.get("/admin/textbooks/", headers={"Accept-Language": "zh"}).get_data(as_text=True)
    assert "数学 三年级 上册" in listing and "导入" in listing
    wrong = client.post(
        "/admin/textbooks/", data={"file": (io.BytesIO(b"{"), "b.json"), "csrf_token": token},
        content_type="multipart/form-data",
    )  # fmt: skip
    assert wrong.status_code == 422 and "JSON" in wrong.get_data(as_text=True)
    book_id = int(answer.headers["Location"].split("/")[3].split("?")[0])
    deleted = client.post(f"/admin/textbooks/{book_id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303
    assert services.list_textbooks(db) == []


def test_the_command_imports_lists_shows_and_speaks_the_terminals_language(
    hub_env: dict[str, str], db: Session, tmp_path: Path
) -> None:
    runner = CliRunner(env={**hub_env, "LANG": "C"})
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    imported = runner.invoke(main, ["textbook", "import", "--shipped"])
    assert imported.exit_code == 0, imported.output
    assert "renjiao-math-9-1 (数学 九年级 上册): 40 added" in imported.output
    again = runner.invoke(main, ["textbook", "import", "--shipped", "--json"])
    rows = json.loads(again.stdout)["items"]
    assert all(not r["created"] and r["added"] == 0 and r["removed"] == 0 for r in rows)
    listed = json.loads(runner.invoke(main, ["textbook", "list", "--json"]).stdout)["items"]
    assert {r["key"] for r in listed} == {p.stem for p in shipped_files()}
    assert "tongbian-chinese-1-1" in runner.invoke(main, ["textbook", "list"]).output
    shown = runner.invoke(main, ["textbook", "show", "renjiao-math-9-1"]).output
    assert "    21.2.1\tweek 1\t21.2.1 配方法" in shown

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(book(grade=12)))
    english = runner.invoke(main, ["textbook", "import", str(bad)])
    assert english.exit_code == 1 and "grade must be a whole number from 1 to 9" in english.output
    chinese = CliRunner(env={**hub_env, "LANG": "zh_CN.UTF-8"}).invoke(main, ["textbook", "import", str(bad)])
    assert chinese.exit_code == 1 and "年级" in chinese.output and "grade must" not in chinese.output
    assert runner.invoke(main, ["textbook", "show", "nope"]).exit_code == 1
    assert runner.invoke(main, ["textbook", "delete", "renjiao-math-9-1"]).exit_code == 0
    assert runner.invoke(main, ["textbook", "import"]).exit_code == 2

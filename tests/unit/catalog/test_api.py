"""The catalog's JSON API through Flask's test client: contract, permissions, bad input."""

from __future__ import annotations

import io
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from hub import jobs
from hub.catalog.models import Course, Lesson
from hub.jobs import PROCESS_DOCUMENT, Outbox
from tests.conftest import Accounts


@pytest.fixture
def famous(make: Accounts) -> dict[str, Any]:
    school = make.school("海淀实验小学", "famous")
    other = make.school("上海第一中学", "famous")
    return {
        "school": school,
        "uploader": make.bearer(make.user("up@haidian.cn", school, "uploader")),
        "teacher": make.bearer(make.user("t@haidian.cn", school, "teacher")),
        "other": make.bearer(make.user("up@shyz.cn", other, "uploader")),
        "admin": make.bearer(make.user("admin@hub.cn", other, "admin")),
    }


def _create(client: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/api/v1/courses", json=body, headers=headers)
    assert response.status_code == 201, response.json
    return response.json  # type: ignore[no-any-return]


def _published(client: FlaskClient, headers: dict[str, str], body: dict[str, Any]) -> dict[str, Any]:
    course = _create(client, headers, body)
    lesson = client.post(f"/api/v1/courses/{course['id']}/lessons", json={"title": "配方法"}, headers=headers)
    assert lesson.status_code == 201
    response = client.post(f"/api/v1/courses/{course['id']}/publish", headers=headers)
    assert response.status_code == 200
    return response.json  # type: ignore[no-any-return]


def _count(db: Session, model: type) -> int:
    db.expire_all()
    return db.scalar(select(func.count()).select_from(model)) or 0


def test_course_life_cycle(client: FlaskClient, famous: dict[str, Any], course_body: dict[str, Any]) -> None:
    course = _create(client, famous["uploader"], course_body)
    assert course["status"] == "draft"
    assert course["school"]["name"] == "海淀实验小学"
    assert course["category"] == "curriculum"
    assert {k: course[k] for k in course_body} == course_body

    patched = client.patch(
        f"/api/v1/courses/{course['id']}", json={"grades": [9, 8, 9], "title": "二次方程"}, headers=famous["uploader"]
    )
    assert patched.status_code == 200
    assert patched.json["grades"] == [8, 9]
    assert patched.json["title"] == "二次方程"

    refused = client.post(f"/api/v1/courses/{course['id']}/publish", headers=famous["uploader"])
    assert refused.status_code == 409
    assert "lesson" in refused.json["error"]["message"]

    for title in ("配方法", "公式法"):
        assert (
            client.post(
                f"/api/v1/courses/{course['id']}/lessons",
                json={"title": title, "unit": "第二十一章"},
                headers=famous["uploader"],
            ).status_code
            == 201
        )
    lessons = client.get(f"/api/v1/courses/{course['id']}/lessons", headers=famous["uploader"]).json["items"]
    assert [(x["position"], x["title"]) for x in lessons] == [(1, "配方法"), (2, "公式法")]

    published = client.post(f"/api/v1/courses/{course['id']}/publish", headers=famous["uploader"]).json
    assert published["status"] == "published"
    assert published["published_at"]
    anonymous = client.get(f"/api/v1/courses/{course['id']}")
    assert anonymous.status_code == 200
    assert anonymous.json["lessons"] == 2

    edited = client.patch(f"/api/v1/courses/{course['id']}", json={"summary": "新版"}, headers=famous["uploader"])
    assert edited.json["version"] == published["version"] + 1

    withdrawn = client.post(f"/api/v1/courses/{course['id']}/withdraw", headers=famous["uploader"])
    assert withdrawn.json["status"] == "withdrawn"
    assert client.get(f"/api/v1/courses/{course['id']}").status_code == 404


def test_list_filters_and_paging(client: FlaskClient, famous: dict[str, Any], course_body: dict[str, Any]) -> None:
    for i in range(5):
        _published(client, famous["uploader"], {**course_body, "title": f"数学 {i}", "grades": [i + 1]})
    _published(
        client,
        famous["uploader"],
        {
            **course_body,
            "title": "English",
            "subject": "english",
            "language": "en",
            "edition": "",
            "volume": "",
            "category": "after-school",
        },
    )
    _create(client, famous["uploader"], {**course_body, "title": "draft"})

    everything = client.get("/api/v1/courses").json
    assert everything["total"] == 6
    assert {c["title"] for c in everything["items"]} >= {"English", "数学 0"}
    assert client.get("/api/v1/courses?grade=3").json["total"] == 1
    assert client.get("/api/v1/courses?subject=english").json["items"][0]["title"] == "English"
    assert client.get("/api/v1/courses?language=en&category=after-school").json["total"] == 1
    assert client.get("/api/v1/courses?edition=人教版").json["total"] == 5
    page2 = client.get("/api/v1/courses?per_page=4&page=2").json
    assert (page2["page"], page2["total"], len(page2["items"])) == (2, 6, 2)
    school_id = famous["school"].id
    assert client.get(f"/api/v1/courses?school={school_id}").json["total"] == 6
    assert client.get(f"/api/v1/courses?school={school_id + 1}").json["total"] == 0
    # Drafts show only to their own school, on request.
    assert client.get("/api/v1/courses?status=draft").json["total"] == 0
    assert client.get("/api/v1/courses?status=draft", headers=famous["uploader"]).json["total"] == 1
    assert client.get("/api/v1/courses?status=draft", headers=famous["other"]).json["total"] == 0
    assert client.get("/api/v1/courses?status=all", headers=famous["admin"]).json["total"] == 7


def test_mine_lists_the_callers_school_in_every_status(
    client: FlaskClient, famous: dict[str, Any], course_body: dict[str, Any]
) -> None:
    """`hub course list --mine`: an uploader's own courses, without knowing the school's id."""
    published = _published(client, famous["uploader"], {**course_body, "title": "公开课"})
    draft = _create(client, famous["uploader"], {**course_body, "title": "草稿"})
    _published(client, famous["other"], {**course_body, "title": "别校的课"})
    mine = client.get("/api/v1/courses?mine=true&status=all", headers=famous["uploader"]).json
    assert sorted(c["id"] for c in mine["items"]) == sorted([published["id"], draft["id"]]) and mine["total"] == 2
    # A teacher of the school sees the school's courses too; an admin their own school's, not every school's.
    assert client.get("/api/v1/courses?mine=1&status=all", headers=famous["teacher"]).json["total"] == 2
    assert [c["title"] for c in client.get("/api/v1/courses?mine=true", headers=famous["admin"]).json["items"]] == [
        "别校的课"
    ]
    assert client.get("/api/v1/courses?mine=true", headers=famous["uploader"]).json["total"] == 1  # published only
    assert client.get("/api/v1/courses?mine=false").json["total"] == 2
    anonymous = client.get("/api/v1/courses?mine=true")
    assert anonymous.status_code == 401 and anonymous.json["error"]["code"] == "unauthorized"
    assert client.get("/courses?mine=true").status_code == 401  # the page, the same service: a page, not a 500
    bad = client.get("/api/v1/courses?mine=maybe", headers=famous["uploader"])
    assert bad.status_code == 422 and "mine" in bad.json["error"]["fields"]
    parameters = client.get("/api/v1/openapi.json").json["paths"]["/api/v1/courses"]["get"]["parameters"]
    assert any(p["name"] == "mine" and "own school" in p["description"] for p in parameters)


def test_other_schools(client: FlaskClient, famous: dict[str, Any], course_body: dict[str, Any]) -> None:
    draft = _create(client, famous["uploader"], course_body)
    published = _published(client, famous["uploader"], {**course_body, "title": "公开课"})
    other = famous["other"]
    # Another school's draft does not exist for them; a published course is read-only.
    assert client.get(f"/api/v1/courses/{draft['id']}", headers=other).status_code == 404
    assert client.patch(f"/api/v1/courses/{draft['id']}", json={"title": "x"}, headers=other).status_code == 404
    assert client.get(f"/api/v1/courses/{published['id']}", headers=other).status_code == 200
    for method, path, body in [
        ("patch", f"/api/v1/courses/{published['id']}", {"title": "x"}),
        ("post", f"/api/v1/courses/{published['id']}/withdraw", None),
        ("post", f"/api/v1/courses/{published['id']}/lessons", {"title": "x"}),
    ]:
        response = getattr(client, method)(path, json=body, headers=other)
        assert response.status_code == 403, (method, path)
        assert response.json["error"]["code"] == "forbidden"
    # A teacher of the owning school reads drafts but does not write.
    assert client.get(f"/api/v1/courses/{draft['id']}", headers=famous["teacher"]).status_code == 200
    assert (
        client.patch(f"/api/v1/courses/{draft['id']}", json={"title": "x"}, headers=famous["teacher"]).status_code
        == 403
    )
    assert client.post("/api/v1/courses", json=course_body, headers=famous["teacher"]).status_code == 403
    # An uploader cannot create for another school; an admin can do anything.
    body = {**course_body, "school": famous["school"].id}
    assert client.post("/api/v1/courses", json=body, headers=other).status_code == 403
    assert client.post("/api/v1/courses", json=body, headers=famous["admin"]).status_code == 201
    assert (
        client.patch(f"/api/v1/courses/{draft['id']}", json={"title": "管理员改"}, headers=famous["admin"]).json[
            "title"
        ]
        == "管理员改"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"grades": [0]}, "grades.0"),
        ({"grades": [10]}, "grades.0"),
        ({"grades": []}, "grades"),
        ({"grades": ["5"]}, "grades.0"),
        ({"license": "GPL-3.0"}, "license"),
        ({"subject": "astrology"}, "subject"),
        ({"language": "fr"}, "language"),
        ({"colour": "red"}, "colour"),
        ({"title": ""}, "title"),
        ({"title": 5}, "title"),
        ({"volume": "中册"}, "volume"),
        ({"category": "after-school"}, "body"),  # a textbook edition on a non-curriculum course
    ],
)
def test_invalid_course_bodies(
    client: FlaskClient,
    famous: dict[str, Any],
    course_body: dict[str, Any],
    db: Session,
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post("/api/v1/courses", json={**course_body, **body}, headers=famous["uploader"])
    assert response.status_code == 422
    error = response.json["error"]
    assert error["code"] == "invalid"
    assert field in error["fields"], error
    assert error["message"]
    assert _count(db, Course) == 0


def test_missing_field_and_malformed_json(
    client: FlaskClient, famous: dict[str, Any], db: Session, course_body: dict[str, Any]
) -> None:
    missing = client.post(
        "/api/v1/courses", json={k: v for k, v in course_body.items() if k != "subject"}, headers=famous["uploader"]
    )
    assert missing.status_code == 422
    assert missing.json["error"]["fields"] == {"subject": "Subject is required."}
    bad = client.post(
        "/api/v1/courses", data=b'{"title": ', content_type="application/json", headers=famous["uploader"]
    )
    assert bad.status_code == 400
    assert bad.json["error"]["code"] == "invalid_json"
    not_object = client.post("/api/v1/courses", json=[1, 2], headers=famous["uploader"])
    assert not_object.status_code == 400
    form = client.post("/api/v1/courses", data={"title": "x"}, headers=famous["uploader"])
    assert form.status_code == 400
    assert "application/json" in form.json["error"]["message"]
    null = client.patch("/api/v1/courses/1", json={"title": None}, headers=famous["uploader"])
    assert null.status_code == 422
    assert _count(db, Course) == 0


def test_patch_rejects_bad_values_and_keeps_the_course(
    client: FlaskClient, famous: dict[str, Any], course_body: dict[str, Any]
) -> None:
    course = _create(client, famous["uploader"], course_body)
    for body in ({"grades": [12]}, {"category": "after-school"}, {"license": "MIT"}):
        assert client.patch(f"/api/v1/courses/{course['id']}", json=body, headers=famous["uploader"]).status_code == 422
    again = client.get(f"/api/v1/courses/{course['id']}", headers=famous["uploader"]).json
    assert {k: again[k] for k in course_body} == course_body


def test_unknown_ids_and_query_errors(client: FlaskClient, famous: dict[str, Any]) -> None:
    for path in (
        "/api/v1/courses/999",
        "/api/v1/lessons/999",
        "/api/v1/materials/999",
        "/api/v1/courses/999/lessons",
        "/api/v1/nothing-here",
        "/api/v1/blobs/" + "0" * 64,
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json["error"]["code"] == "not_found"
    bad = client.get("/api/v1/courses?grade=10")
    assert bad.status_code == 422
    assert "grade" in bad.json["error"]["fields"]


def test_tokens(client: FlaskClient, make: Accounts, db: Session, course_body: dict[str, Any]) -> None:
    from hub.accounts import services

    school = make.school()
    token = make.token(make.user("u@x.cn", school))
    assert client.post("/api/v1/courses", json=course_body).status_code == 401
    wrong = client.post("/api/v1/courses", json=course_body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith("Bearer")
    assert client.get("/api/v1/courses", headers={"Authorization": "Basic abc"}).status_code == 401
    ok = client.post("/api/v1/courses", json=course_body, headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 201
    services.revoke_token(db, token)
    db.commit()
    revoked = client.post("/api/v1/courses", json=course_body, headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401
    assert revoked.json["error"]["code"] == "unauthorized"
    assert _count(db, Course) == 1


def test_material_upload(
    client: FlaskClient, app: Any, famous: dict[str, Any], course_body: dict[str, Any], db: Session
) -> None:
    course = _create(client, famous["uploader"], course_body)
    lesson = client.post(
        f"/api/v1/courses/{course['id']}/lessons", json={"title": "配方法"}, headers=famous["uploader"]
    ).json
    pdf = b"%PDF-1.4\n" + b"x" * 5000
    response = client.post(
        f"/api/v1/lessons/{lesson['id']}/materials",
        data={"title": "讲义", "file": (io.BytesIO(pdf), "../../讲义.pdf")},
        headers=famous["uploader"],
    )
    assert response.status_code == 201, response.json
    material = response.json
    assert material["kind"] == "document"
    assert material["status"] == "pending"
    assert material["filename"] == "讲义.pdf"
    assert material["original"]["bytes"] == len(pdf)
    import hashlib

    assert material["original"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    db.expire_all()
    # A document is probed on the `documents` queue, never behind a backlog of transcodes.
    row = db.scalar(select(Outbox).where(Outbox.task == PROCESS_DOCUMENT))
    assert row is not None and row.args == [material["id"]]
    assert jobs.QUEUES[PROCESS_DOCUMENT] == "documents"

    # The uploader's own school reads the draft's file; anonymous readers do not.
    url = material["original"]["url"]
    own = client.get(url, headers=famous["uploader"])
    if own.status_code == 302:  # S3: a presigned URL
        assert "X-Amz-Signature" in own.headers["Location"]
    else:
        assert own.status_code == 200
        assert own.data == pdf
        assert own.headers["ETag"].strip('"') == material["original"]["sha256"]
    assert client.get(url).status_code == 404
    assert client.get(f"/api/v1/materials/{material['id']}", headers=famous["other"]).status_code == 404


def test_material_upload_errors(
    client: FlaskClient, app: Any, famous: dict[str, Any], db: Session, course_body: dict[str, Any]
) -> None:
    course = _create(client, famous["uploader"], course_body)
    lesson = client.post(
        f"/api/v1/courses/{course['id']}/lessons", json={"title": "配方法"}, headers=famous["uploader"]
    ).json
    path = f"/api/v1/lessons/{lesson['id']}/materials"
    not_multipart = client.post(path, data={"title": "x"}, headers=famous["uploader"])
    assert not_multipart.status_code == 400
    assert "multipart/form-data" in not_multipart.json["error"]["message"]
    no_file = client.post(path, data={"title": "x"}, content_type="multipart/form-data", headers=famous["uploader"])
    assert no_file.status_code == 422
    assert "file" in no_file.json["error"]["fields"]
    app.config["MAX_CONTENT_LENGTH"] = 10_000
    too_big = client.post(
        path, data={"title": "x", "file": (io.BytesIO(b"0" * 20_000), "big.mp4")}, headers=famous["uploader"]
    )
    assert too_big.status_code == 413
    assert too_big.json["error"]["code"] == "request_entity_too_large"
    other = client.post(path, data={"title": "x", "file": (io.BytesIO(b"abc"), "a.pdf")}, headers=famous["other"])
    assert other.status_code == 404  # a draft of another school
    db.expire_all()
    assert _count(db, Lesson) == 1
    from hub.catalog.models import Material

    assert _count(db, Material) == 0


def test_openapi_is_generated_from_the_routes(client: FlaskClient, app: Any) -> None:
    doc = client.get("/api/v1/openapi.json").json
    assert doc["openapi"].startswith("3.")
    documented = {(path, method.upper()) for path, ops in doc["paths"].items() for method in ops}
    served = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/api/v1/") and rule.endpoint.startswith("catalog_api."):
            path = rule.rule.replace("<int:", "<").replace("<", "{").replace(">", "}")
            served |= {(path, m) for m in rule.methods - {"HEAD", "OPTIONS"}}
    assert served and served <= documented
    schema = doc["components"]["schemas"]["CourseCreate"]
    assert set(schema["required"]) >= {"title", "subject", "grades", "language", "license"}
    assert doc["paths"]["/api/v1/courses"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]


def test_delete_course(client: FlaskClient, famous: dict[str, Any], course_body: dict[str, Any], db: Session) -> None:
    draft = _create(client, famous["uploader"], course_body)
    published = _published(client, famous["uploader"], {**course_body, "title": "公开课"})
    assert client.delete(f"/api/v1/courses/{draft['id']}", headers=famous["other"]).status_code == 404
    assert client.delete(f"/api/v1/courses/{published['id']}", headers=famous["other"]).status_code == 403
    refused = client.delete(f"/api/v1/courses/{published['id']}", headers=famous["uploader"])
    assert refused.status_code == 409
    assert "Withdraw" in refused.json["error"]["message"]
    assert client.delete(f"/api/v1/courses/{draft['id']}", headers=famous["uploader"]).status_code == 204
    assert client.get(f"/api/v1/courses/{draft['id']}", headers=famous["uploader"]).status_code == 404
    assert _count(db, Course) == 1
    assert _count(db, Lesson) == 1  # the published course's lesson; the draft had none

"""A run's summary and skip lines kept as message ids and values, rendered in the reader's language."""

from __future__ import annotations

import json
from gettext import NullTranslations

from hub.errors import HubError, Text
from hub.sync import wording
from hub.uploads.terminal import _translations

ZH = _translations("zh").gettext
EN = NullTranslations().gettext

SUMMARY = Text(
    "Up to date with manifest version %(version)d: %(applied)d courses applied, "
    "%(removed)d removed, %(unchanged)d unchanged.",
    version=3,
    applied=2,
    removed=0,
    unchanged=1,
)


def test_a_summary_is_kept_as_its_template_and_values_and_reads_in_either_language() -> None:
    stored = json.loads(json.dumps(wording.kept(SUMMARY, [])))  # as the JSON column gives it back
    assert stored["message"] == {
        "template": SUMMARY.template,
        "values": {"version": 3, "applied": 2, "removed": 0, "unchanged": 1},
    }
    assert wording.message_of(stored, SUMMARY, ZH) == "已与清单版本 3 同步：应用 2 门课程，移除 0 门，1 门未变。"
    assert wording.message_of(stored, SUMMARY, EN) == str(SUMMARY)
    assert str(SUMMARY).startswith("Up to date with manifest version 3: 2 courses applied")  # the English column


def test_skip_lines_and_a_reason_inside_a_sentence_are_translated_too() -> None:
    refused = HubError("the upstream did not send its entry (withdrawn or changed meanwhile); next pull")
    line = Text("course %(id)s: %(reason)s", id=7, reason=wording.from_error(refused))
    budget = Text(
        "course %(id)s '%(title)s' (%(need)s more than the %(left)s left)",
        id=8,
        title="二次函数",
        need="1.2 MB",
        left="0 B",
    )
    stored = json.loads(json.dumps(wording.kept(Text("interrupted"), [line, budget])))
    assert wording.skipped_of(stored, "", ZH) == [
        # The reason inside the sentence is translated too.
        "课程 7：上级平台没有发送它的条目（其间已撤下或有更改）；下次同步再取",
        "课程 8《二次函数》（比剩余的 0 B 多需 1.2 MB）",
    ]
    assert wording.skipped_of(stored, "", EN) == [str(line), str(budget)]
    assert wording.message_of(stored, "interrupted", ZH) == "中断"


def test_a_row_from_before_the_wording_shows_its_english_text_as_it_is() -> None:
    old = "Up to date with manifest version 2: 1 courses applied, 0 removed, 0 unchanged."
    assert wording.message_of(None, old, ZH) == old
    assert wording.skipped_of(None, "course 1 'a' (x)\ncourse 2 'b' (y)", ZH) == [
        "course 1 'a' (x)",
        "course 2 'b' (y)",
    ]
    # A run closed because its process died keeps the skip lines it had (None: not known).
    assert wording.skipped_of({"message": "x", "skipped": None}, "course 1 'a' (x)", ZH) == ["course 1 'a' (x)"]
    # A plain string (no message id: a network error's own text) is kept and shown as it is.
    assert wording.message_of(wording.kept("connection reset", []), "connection reset", ZH) == "connection reset"


def test_a_translation_that_does_not_fit_its_values_falls_back_to_english() -> None:
    stored = wording.keep(Text("%(files)d files", files=2))

    def broken(template: str) -> str:
        return "%(文件)d 个文件"

    assert wording.render(stored, broken) == "2 files"

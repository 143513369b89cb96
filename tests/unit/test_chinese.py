"""Chinese end to end: no English on the Chinese side, in pages, API errors and the page scripts.

The catalog check (tests/unit/test_i18n.py) finds strings marked for translation
without a translation; these tests find the ones never marked: they look at what
a reader actually gets in Chinese.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from flask import Flask

from hub import i18n
from hub.uploads.messages import SCRIPT_MESSAGES

STATIC = Path(i18n.__file__).parent / "static"
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

# ---------------------------------------------------------------- the page scripts

_JS_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_JS_STRING = re.compile(r"'((?:[^'\\\n]|\\.)*)'|\"((?:[^\"\\\n]|\\.)*)\"")
# Where a literal becomes text on the screen: any letter there is a word a reader sees.
_JS_TEXT_SINK = re.compile(
    r"(?:textContent|innerText|innerHTML|placeholder|title|value)\s*=\s*$"
    r"|(?:createTextNode|alert|confirm|prompt|say|fail)\(\s*$"
    r"|\bel\([^()]*,[^()]*,\s*$"
    r"|setAttribute\(\s*['\"](?:title|aria-label|placeholder|alt)['\"]\s*,\s*$"
)
# Two words in a row, or one with a sentence's end: a message, not a key, selector or header.
_JS_WORDS = re.compile(r"[A-Za-z]{2,}[ ,;]+[A-Za-z]{2,}|[A-Za-z]{2,}(?:…|\.\.\.)|^[A-Z][a-z]+[.!?]$")


def script_texts(source: str) -> list[str]:
    """String literals in a script that read as words for a person: each should be a message key instead."""
    code = _JS_COMMENT.sub(lambda m: " " * len(m.group(0)), source)
    found = []
    for match in _JS_STRING.finditer(code):
        text = match.group(1) if match.group(1) is not None else match.group(2)
        if text == "use strict":
            continue
        before = code[max(0, match.start() - 80) : match.start()]
        if CJK.search(text) or _JS_WORDS.search(text) or (re.search("[A-Za-z]", text) and _JS_TEXT_SINK.search(before)):
            found.append(text)
    return found


def test_the_page_scripts_have_no_words_of_their_own() -> None:
    found = {path.name: texts for path in sorted(STATIC.glob("*.js")) if (texts := script_texts(path.read_text()))}
    assert not found, f"give these to the script from the server (see hub/uploads/messages.py): {found}"


def test_the_script_text_check_can_fail() -> None:
    source = """
      // a comment: Connection lost
      this.say('已暂停 Paused');
      el('button', 'pause', 'Pause');
      node.textContent = 'Ready';
      this.fail('The file is too large.');
      var s = 'Connection lost; retrying';
      var u = 'Uploading…', done = 'Done.', key = 'hub.position.';
      xhr.setRequestHeader('Upload-Offset', 'application/offset+octet-stream');
      el('span', 'state', t('paused'));
      form.querySelectorAll('[data-status=pending], [data-status=processing]');
    """
    assert script_texts(source) == [
        "已暂停 Paused",
        "Pause",
        "Ready",
        "The file is too large.",
        "Connection lost; retrying",
        "Uploading…",
        "Done.",
    ]


def _upload_page_messages(app: Flask, language: str) -> dict[str, object]:
    """The upload script's messages as the lesson page renders them into its form."""
    from hub.uploads.messages import script_messages

    with app.test_request_context(headers={"Accept-Language": language}):
        rendered = app.jinja_env.from_string("<form data-messages='{{ m|tojson }}'>").render(m=script_messages(2**30))
    attribute = re.search(r"data-messages='([^']*)'", rendered)
    assert attribute, rendered
    import html

    messages: dict[str, object] = json.loads(html.unescape(attribute.group(1)))
    return messages


def test_every_message_the_upload_script_uses_is_rendered_in_both_languages(app: Flask) -> None:
    source = _JS_COMMENT.sub("", (STATIC / "tus-upload.js").read_text())
    keys = set(re.findall(r"\bt\(\s*'([^']+)'", source))
    tables = set(re.findall(r"\blabel\(\s*'([^']+)'", source))
    assert {"paused", "retrying_in"} <= keys and tables == {"status", "kind"}  # the scan itself works
    zh, en = _upload_page_messages(app, "zh"), _upload_page_messages(app, "en")
    assert keys | tables <= set(zh), f"the script asks for keys the page does not render: {keys - set(zh)}"
    assert set(SCRIPT_MESSAGES) <= keys | {"too_large"}, f"unused: {set(SCRIPT_MESSAGES) - keys}"
    for key, text in zh.items():
        texts = text.values() if isinstance(text, dict) else [text]
        english = en[key].values() if isinstance(en[key], dict) else [en[key]]  # type: ignore[union-attr]
        assert all(CJK.search(str(t)) for t in texts), f"{key}: {text} is not Chinese"
        assert not any(CJK.search(str(t)) for t in english), f"{key}: {en[key]} is not English"
    assert "1.0 GB" in str(zh["too_large"])

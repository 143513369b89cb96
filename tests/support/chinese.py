"""English words left on the Chinese side of a page: shared by the page crawl and the browser journeys."""

from __future__ import annotations

import re
from html.parser import HTMLParser

_SAME_IN_CHINESE = {
    "OER", "Hub", "English", "SSIM", "PDF", "MP4", "WebVTT", "SRT", "CC", "BY", "SA", "NC", "ND", "kbit", "Mbit",
    "fps", "KB", "MB", "GB", "HTTP", "JSON", "CSV", "API", "USB", "LAN", "ZIP", "tus", "OAI", "PMH", "sha", "pinyin",
    "JavaScript", "Excel",
}  # fmt: skip
# Not words of the interface: addresses, e-mails, codes with digits (CC-BY-4.0, video-360p, 1.2 MB).
_NOT_WORDS = re.compile(
    r"\S+@\S+|\S+://\S+|\S*/\S*|\S*\d\S*|\S*_\S*"  # e-mail, URL, path or zone, with digits, HUB_SETTING
    r"|\bhub(?: --?[\w-]+| [a-z][\w-]*| [A-Z]+)+"  # a command: hub token create EMAIL --kind sync
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'’]+")
_SHOWN_ATTRIBUTES = ("title", "placeholder", "alt", "aria-label")


class _Visible(HTMLParser):
    """The text a reader sees or hears: text nodes and labelling attributes, not scripts, styles or code."""

    _HIDDEN = frozenset({"script", "style", "code", "kbd", "samp", "pre", "template"})
    _VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "wbr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[tuple[str, bool]] = []  # (tag, hidden or in another language)
        self.texts: list[str] = []

    def _skipping(self) -> bool:
        return bool(self.stack) and self.stack[-1][1]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        # Content in English on purpose (an English course, the switch's own name) is marked lang="en".
        skip = self._skipping() or tag in self._HIDDEN or (values.get("lang") or "").startswith("en")
        if not skip:
            self.texts += [str(values[a]) for a in _SHOWN_ATTRIBUTES if values.get(a)]
            if tag == "input" and values.get("type") in ("submit", "button", "reset") and values.get("value"):
                self.texts.append(str(values["value"]))
        if tag not in self._VOID:
            self.stack.append((tag, skip))

    def handle_endtag(self, tag: str) -> None:
        while self.stack:
            if self.stack.pop()[0] == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self._skipping():
            self.texts.append(data)


def english_words(html: str) -> list[str]:
    """Runs of English words in a page as a Chinese reader gets it: each should have been translated."""
    parser = _Visible()
    parser.feed(html)
    found = []
    for text in parser.texts:
        text = _NOT_WORDS.sub(" ", text)
        words = [w for w in _WORD.findall(text) if w not in _SAME_IN_CHINESE]
        if words:
            found.append(" ".join(words))
    return found

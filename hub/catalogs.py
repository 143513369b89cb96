"""The compiled message catalogs (``.mo``), without Flask: the web app and the ``hub`` command share them.

``hub --help`` in a Chinese terminal needs the catalog and nothing of the web app: this
module is all it loads (the standard library's gettext reads a ``.mo``), so the Chinese help
starts as fast as the English one. Babel is imported only when a ``.po`` is newer than its
``.mo`` and the catalog has to be compiled again (see hub.i18n on why catalogs are compiled
at start rather than by a build step).
"""

from __future__ import annotations

import os
from io import BytesIO
from pathlib import Path

SOURCE_DIR = Path(__file__).parent / "translations"


def compile_catalogs(source: Path, target: Path) -> None:
    """Compile every ``source/<lang>/LC_MESSAGES/*.po`` newer than its ``.mo`` under ``target``."""
    for po in sorted(source.glob("*/LC_MESSAGES/*.po")):
        mo = target / po.relative_to(source).with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        from babel.messages.mofile import write_mo
        from babel.messages.pofile import read_po

        with po.open("rb") as f:
            catalog = read_po(f, locale=po.parent.parent.name)
        data = BytesIO()
        write_mo(data, catalog)  # fuzzy entries stay out: an unchecked guess is worse than English
        mo.parent.mkdir(parents=True, exist_ok=True)
        # Web server and worker may start together: each writes its own file, the rename is atomic.
        partial = mo.with_name(f".{mo.name}.{os.getpid()}")
        partial.write_bytes(data.getvalue())
        os.replace(partial, mo)


def user_cache_dir() -> Path:
    """Where a command compiles the catalogs when the package directory is read-only (an installed package)."""
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(cache) / "oer-hub" / "translations"


def command_catalog_dir() -> Path:
    """The directory of up-to-date ``.mo`` files for a command: beside the ``.po``, or in the user's cache."""
    try:
        compile_catalogs(SOURCE_DIR, SOURCE_DIR)
        return SOURCE_DIR
    except OSError:  # an installed, read-only package
        compile_catalogs(SOURCE_DIR, user_cache_dir())
        return user_cache_dir()

"""Media benchmark: the rendition ladder on a generated slides lesson and a camera clip.

    .venv/bin/python -m benchmarks.media [--quick] [--workdir DIR] [--variants] [--input slides|camera]

See :mod:`benchmarks.media.run` for what is measured and ``RESULTS.md`` for the numbers.
"""

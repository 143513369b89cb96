"""Worker entry point: ``celery -A workers.celery worker`` (``hub worker`` does this)."""

from hub import create_app

app = create_app()
celery = app.extensions["celery"]

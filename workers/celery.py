"""Worker entry point: ``celery -A workers.celery worker`` (``hub worker`` does this)."""

from hub import create_app, jobs

app = create_app()
celery = jobs.get_celery(app)

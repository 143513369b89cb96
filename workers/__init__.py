"""Celery task modules: each task is one call into a hub service."""

"""Import every model module so Base.metadata knows all tables (Alembic, tests)."""

from hub.accounts.models import ApiToken, Pairing, School, User
from hub.catalog.models import Course, Lesson, Material
from hub.jobs import Outbox
from hub.media.models import Blob, Rendition
from hub.sync.models import Change

__all__ = [
    "ApiToken",
    "Blob",
    "Change",
    "Course",
    "Lesson",
    "Material",
    "Outbox",
    "Pairing",
    "Rendition",
    "School",
    "User",
]

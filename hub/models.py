"""Import every model module so Base.metadata knows all tables (Alembic, tests)."""

from hub.accounts.models import ApiToken, Pairing, School, User
from hub.catalog.models import Course, CourseEvent, Lesson, Material
from hub.harvest.models import HarvestRecord
from hub.jobs import Outbox
from hub.media.models import Blob, Rendition
from hub.pagecache import PageGeneration
from hub.reach.models import (
    PendingDay,
    PlaySeen,
    ReachDay,
    ReachSchoolDay,
    ReachSchoolWeek,
    ReachWeek,
    RolledDay,
    UsageCount,
)
from hub.search.changes import SearchChange, SearchReplica
from hub.subtitles.models import Subtitle
from hub.sync.models import (
    Change,
    CountReport,
    ManifestState,
    MirrorCourse,
    MirrorState,
    ReportedCount,
    ReportedUsage,
    ServerReport,
    Subscription,
    SyncRun,
)
from hub.textbooks.models import Textbook, TextbookNode

__all__ = [
    "ApiToken",
    "Blob",
    "Change",
    "CountReport",
    "Course",
    "CourseEvent",
    "HarvestRecord",
    "Lesson",
    "ManifestState",
    "Material",
    "MirrorCourse",
    "MirrorState",
    "Outbox",
    "PageGeneration",
    "Pairing",
    "PendingDay",
    "PlaySeen",
    "ReachDay",
    "ReachSchoolDay",
    "ReachSchoolWeek",
    "ReachWeek",
    "Rendition",
    "ReportedCount",
    "ReportedUsage",
    "RolledDay",
    "School",
    "SearchChange",
    "SearchReplica",
    "ServerReport",
    "Subscription",
    "Subtitle",
    "SyncRun",
    "Textbook",
    "TextbookNode",
    "UsageCount",
    "User",
]

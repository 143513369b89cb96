"""Validated shapes of catalog input and output, shared by the API, pages and CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from hub.api import Strict
from hub.i18n import N_
from hub.inputs import Id
from hub.vocab import CategoryCode as Category
from hub.vocab import LanguageCode as Language
from hub.vocab import LicenseId as License
from hub.vocab import SubjectCode as Subject
from hub.vocab import VolumeName as Volume

Grade = Annotated[int, Field(ge=1, le=9, strict=True)]
Title = Annotated[str, Field(min_length=1, max_length=200)]
Position = Annotated[int, Field(ge=1, le=10000, description="1 is first; past the last lesson means last")]


def _grades_unique(grades: list[int]) -> list[int]:
    return sorted(set(grades))


class CourseFields(Strict):
    title: Title
    summary: Annotated[str, Field(max_length=5000)] = ""
    category: Category = "curriculum"
    subject: Subject
    grades: Annotated[list[Grade], Field(min_length=1, max_length=9)]
    edition: Annotated[
        str,
        Field(
            max_length=50,
            description="Textbook edition from GET /api/v1/editions (e.g. 人教版; an alias such as 部编版 is stored "
            'as its listed name), "other" with edition_other, or empty',
        ),
    ] = ""
    edition_other: Annotated[
        str, Field(max_length=50, description='The edition\'s name when edition is "other" (a book not listed)')
    ] = ""
    volume: Volume = ""
    textbook: Id | None = Field(
        default=None,
        description="Id of the textbook the course follows (GET /api/v1/textbooks): the course's subject and "
        "one of its grades; its edition and volume are the course's (filled in when left empty)",
    )
    language: Language
    license: License
    teacher: Annotated[str, Field(max_length=100)] = ""

    _grades = field_validator("grades")(_grades_unique)


class CourseCreate(CourseFields):
    school: Id | None = Field(default=None, description="School id; only admins may create for another school")

    @model_validator(mode="after")
    def _textbook_only_for_curriculum(self) -> CourseCreate:
        check_textbook(self.category, self.edition, self.volume)
        return self


TEXTBOOK_ONLY_FOR_CURRICULUM = N_("Only curriculum courses name a textbook edition and volume.")


def check_textbook(category: str, edition: str, volume: str) -> None:
    if category != "curriculum" and (edition or volume):
        raise ValueError(TEXTBOOK_ONLY_FOR_CURRICULUM)


class CourseUpdate(Strict):
    title: Title | None = None
    summary: Annotated[str, Field(max_length=5000)] | None = None
    category: Category | None = None
    subject: Subject | None = None
    grades: Annotated[list[Grade], Field(min_length=1, max_length=9)] | None = None
    edition: Annotated[str, Field(max_length=50)] | None = None
    edition_other: Annotated[str, Field(max_length=50)] | None = None
    volume: Volume | None = None
    textbook: Id | None = Field(
        default=None, description="Id of the textbook the course follows; null: none (its lessons leave its chapters)"
    )
    language: Language | None = None
    license: License | None = None
    teacher: Annotated[str, Field(max_length=100)] | None = None

    @field_validator("grades")
    @classmethod
    def _grades(cls, grades: list[int] | None) -> list[int] | None:
        return None if grades is None else _grades_unique(grades)

    @field_validator("*", mode="before")
    @classmethod
    def _no_nulls(cls, value: object, info: ValidationInfo) -> object:
        # PATCH {"title": null} would otherwise mean "leave unchanged": say so instead.
        if value is None and info.field_name not in NULLABLE:
            raise ValueError(N_("cannot be null; leave the field out to keep its value"))
        return value


# Fields a PATCH may set to null: the alignment to a textbook, which "none" ends.
NULLABLE = frozenset({"textbook", "node"})


class CourseQuery(BaseModel):
    category: Category | None = None
    subject: Subject | None = None
    grade: Annotated[int, Field(ge=1, le=9)] | None = None
    edition: (
        Annotated[
            str,
            Field(
                max_length=50,
                description="Textbook edition (e.g. 人教版; an alias such as 部编版 finds its listed name's courses)",
            ),
        ]
        | None
    ) = None
    volume: Literal["上册", "下册", "全一册"] | None = None
    language: Language | None = None
    school: Id | None = None
    status: Literal["published", "draft", "submitted", "withdrawn", "all"] = "published"
    mine: bool = Field(
        default=False,
        description="Only the caller's own school's courses (needs a token); with status=all, drafts too",
    )
    page: Annotated[int, Field(ge=1, le=100000)] = 1
    per_page: Annotated[int, Field(ge=1, le=100)] | None = None


class SchoolRef(BaseModel):
    id: int
    name: str


class TextbookRef(BaseModel):
    id: int
    key: str = Field(description="The same on every hub, e.g. renjiao-math-3-1")
    title: str


class NodeRef(BaseModel):
    id: int
    key: str = Field(description="Dotted, stable within the book on every hub: 21.2.1 is inside 21.2, inside 21")
    kind: str = Field(description="chapter, section or lesson (课时)")
    title: str
    textbook: str = Field(description="The textbook's key")


class CourseOut(BaseModel):
    id: int
    title: str
    summary: str
    category: str
    subject: str
    grades: list[int]
    edition: str
    volume: str
    language: str
    license: str
    teacher: str
    status: str
    version: int
    school: SchoolRef
    textbook: TextbookRef | None = Field(default=None, description="The textbook the course follows")
    lessons: int = 0
    created_at: datetime
    updated_at: datetime
    published_at: datetime | None


class CoursePage(BaseModel):
    items: list[CourseOut]
    total: int
    page: int
    per_page: int


class EditionQuery(BaseModel):
    subject: Subject | None = Field(default=None, description="Only the editions that publish this subject's books")


class EditionOut(BaseModel):
    name: str = Field(description="What a course stores and sends as its edition, e.g. 人教版")
    en: str = Field(description="The publisher's name in English")
    subjects: list[str]
    aliases: list[str] = Field(description="Other names accepted for it (stored as name)")


class EditionList(BaseModel):
    items: list[EditionOut]
    other: str = Field(
        default="other", description="The edition to send with edition_other for a book that is not listed"
    )


class LessonCreate(Strict):
    title: Title
    summary: Annotated[str, Field(max_length=5000)] = ""
    unit: Annotated[str, Field(max_length=100, description="Textbook unit (单元)")] = ""
    position: Position | None = None
    node: Id | None = Field(
        default=None,
        description="Id of a node (chapter, section or 课时) of the course's textbook (GET /api/v1/textbooks/{id})",
    )


class LessonUpdate(Strict):
    """``PATCH /lessons/{id}``: the fields sent change, the others stay; ``position`` moves the lesson."""

    title: Title | None = None
    summary: Annotated[str, Field(max_length=5000)] | None = None
    unit: Annotated[str, Field(max_length=100, description="Textbook unit (单元)")] | None = None
    position: Position | None = None
    node: Id | None = Field(default=None, description="Id of a node of the course's textbook; null: none")

    @field_validator("*", mode="before")
    @classmethod
    def _no_nulls(cls, value: object, info: ValidationInfo) -> object:
        # As CourseUpdate: {"title": null} would otherwise mean "leave unchanged".
        if value is None and info.field_name not in NULLABLE:
            raise ValueError("cannot be null; leave the field out to keep its value")
        return value


class LessonOrder(Strict):
    """``PUT /courses/{id}/lesson-order``: every lesson of the course, once each, first to last."""

    lessons: Annotated[list[Id], Field(min_length=1, max_length=10000, description="Lesson ids in their new order")]


class OriginalOut(BaseModel):
    sha256: str
    bytes: int
    media_type: str
    url: str


class RenditionQualityOut(BaseModel):
    """What a video rendition kept and traded (hub.media.quality): its floor, and whether it held."""

    floor: float = Field(description="The SSIM the rendition must keep against the original, at full size")
    budget_kbps: int = Field(description="Video + audio + container, on average")
    met: bool = Field(description="Whether the rendition's SSIM (measured on the whole file) held the floor")
    width: int
    height: int
    full_width: int = Field(description="The profile's own size for this source; smaller width/height was traded")
    full_height: int
    fps: float
    full_fps: float = Field(description="The profile's own frame rate for this source; a lower fps was traded")
    denoise: str = Field(description='"", "light" or "strong": sensor grain smoothed before encoding')
    crf: int
    note: str = Field(description="The trade in a sentence, in the request's language; empty when nothing was traded")


class RenditionOut(BaseModel):
    profile: str
    status: str
    progress: int
    error: str
    bytes: int | None
    kbps: float | None
    width: int | None
    height: int | None
    duration: float | None
    ssim: float | None
    quality: RenditionQualityOut | None = None
    sha256: str | None
    url: str | None


class TrackOut(BaseModel):
    """A subtitle track of a material (hub.subtitles); the full record is at /materials/{id}/subtitles."""

    language: str
    label: str
    cues: int
    sha256: str
    url: str


class ChapterOut(BaseModel):
    start: float = Field(description="Seconds from the start of the recording")
    title: str = Field(description="e.g. Slide 3 (第 3 页), in the reader's language")


class MaterialOut(BaseModel):
    id: int
    lesson: int
    kind: str
    title: str
    filename: str
    status: str
    progress: int
    error: str
    original: OriginalOut
    renditions: list[RenditionOut]
    subtitles: list[TrackOut] = []
    chapters: list[ChapterOut] = Field(
        default_factory=list, description="Where the slides of a slides video change; empty for other materials"
    )


class LessonOut(BaseModel):
    id: int
    course: int
    position: int
    title: str
    summary: str
    unit: str
    node: NodeRef | None = Field(default=None, description="The node of the course's textbook the lesson teaches")
    materials: list[MaterialOut]


class LessonList(BaseModel):
    items: list[LessonOut]

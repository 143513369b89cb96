"""Controlled vocabularies of the public contract (DESIGN.md §5)."""

from __future__ import annotations

from typing import Literal, get_args

# Literal types are what the API validates and documents (as JSON Schema enums);
# the tuples and label tables below are derived from or checked against them.
SubjectCode = Literal[
    "chinese",
    "math",
    "english",
    "morality",
    "history",
    "geography",
    "science",
    "physics",
    "chemistry",
    "biology",
    "it",
    "pe",
    "art",
    "music",
    "labor",
]
CategoryCode = Literal["curriculum", "after-school", "teacher-training"]
LanguageCode = Literal["zh", "en"]
LicenseId = Literal[
    "CC-BY-4.0",
    "CC-BY-SA-4.0",
    "CC-BY-NC-4.0",
    "CC-BY-NC-SA-4.0",
    "CC-BY-ND-4.0",
    "CC-BY-NC-ND-4.0",
    "CC0-1.0",
]
# 全一册: one book for the whole year (music, art, IT and labour books often are).
VolumeName = Literal["", "上册", "下册", "全一册"]

SCHOOL_KINDS = ("famous", "rural", "urban")
# reviewer: approves or returns the courses submitted by the schools of a region (HUB_REVIEW_REQUIRED).
# supervisor: the education bureau; sees the reach dashboard (hub.reach) of its region or county.
ROLES = ("admin", "uploader", "teacher", "reviewer", "supervisor")
TOKEN_KINDS = ("user", "sync")

# The 2022 compulsory-education curriculum, in the order a teacher reads them.
SUBJECTS: dict[str, tuple[str, str]] = {
    "chinese": ("语文", "Chinese"),
    "math": ("数学", "Mathematics"),
    "english": ("英语", "English"),
    "morality": ("道德与法治", "Morality and Law"),
    "history": ("历史", "History"),
    "geography": ("地理", "Geography"),
    "science": ("科学", "Science"),
    "physics": ("物理", "Physics"),
    "chemistry": ("化学", "Chemistry"),
    "biology": ("生物", "Biology"),
    "it": ("信息科技", "Information Technology"),
    "pe": ("体育与健康", "PE and Health"),
    "art": ("艺术", "Art"),
    "music": ("音乐", "Music"),
    "labor": ("劳动", "Labour"),
}
GRADES = tuple(range(1, 10))
GRADE_NAMES = {
    1: "一年级",
    2: "二年级",
    3: "三年级",
    4: "四年级",
    5: "五年级",
    6: "六年级",
    7: "七年级",
    8: "八年级",
    9: "九年级",
}
# The grades each subject is taught in under the 2022 compulsory-education curriculum plan
# (义务教育课程方案 2022): what the reach dashboard's coverage holds a rural school's lessons
# against. 科学 is taken as grades 1-6, where most schools teach 物理, 化学 and 生物 from grade 7 on.
CURRICULUM_GRADES: dict[str, tuple[int, ...]] = {
    "chinese": tuple(range(1, 10)),
    "math": tuple(range(1, 10)),
    "english": tuple(range(3, 10)),
    "morality": tuple(range(1, 10)),
    "history": (7, 8, 9),
    "geography": (7, 8),
    "science": tuple(range(1, 7)),
    "physics": (8, 9),
    "chemistry": (9,),
    "biology": (7, 8),
    "it": tuple(range(3, 9)),
    "pe": tuple(range(1, 10)),
    "art": tuple(range(1, 10)),
    "music": tuple(range(1, 10)),
    "labor": tuple(range(1, 10)),
}
LANGUAGES: tuple[str, ...] = get_args(LanguageCode)
LICENSES: tuple[str, ...] = get_args(LicenseId)
CATEGORIES: dict[str, tuple[str, str]] = {
    "curriculum": ("同步课程", "Curriculum"),
    "after-school": ("课后服务", "After-school"),
    "teacher-training": ("教师研修", "Teacher training"),
}
VOLUMES: tuple[str, ...] = get_args(VolumeName)[1:]
# A textbook's 学制 where its books differ between the two systems (grades 6 and 7 move); "" for the same book.
SCHOOL_SYSTEMS = ("", "六三", "五四")
# The levels of a textbook's tree: 单元/章, 节, 课时.
NODE_KINDS = ("chapter", "section", "lesson")
# What hub.reach counts: a play (the player reached 10 s or 25 % of the media), a completed
# download of a material's file, a course ZIP download; and where it was counted.
USAGE_KINDS = ("play", "download", "zip")
USAGE_SOURCES = ("hub", "lan", "usb")
# submitted: waiting for a reviewer (HUB_REVIEW_REQUIRED); a returned course is a draft again.
COURSE_STATUSES = ("draft", "submitted", "published", "withdrawn")
# What the course history logs: each change of status, with who and when.
COURSE_EVENTS = ("submitted", "approved", "returned", "published", "withdrawn")
MATERIAL_KINDS = ("video", "audio", "document", "image")
MATERIAL_STATUSES = ("pending", "processing", "ready", "failed")
RENDITION_STATUSES = ("pending", "processing", "ready", "failed", "skipped")

assert tuple(SUBJECTS) == get_args(SubjectCode), "SUBJECTS must label every SubjectCode"
assert tuple(CATEGORIES) == get_args(CategoryCode), "CATEGORIES must label every CategoryCode"
assert tuple(CURRICULUM_GRADES) == tuple(SUBJECTS), "CURRICULUM_GRADES must give every subject its grades"

"""A synthetic catalog with known ground truth: half Chinese, half English lessons.

Every lesson teaches one *topic* of its course's subject; its title names the
topic, its 100–300-character summary mentions it once among neutral filler
sentences. A query's relevant set is therefore known without looking at any
search engine:

- Chinese: the lessons whose topic contains the query string (二次方程 is
  relevant to 一元二次方程), also when the query is typed in traditional
  characters or as pinyin of a word of the topic;
- English: the lessons whose topic has every query word (singular/plural
  variants are the same word);
- textbook queries (人教版 五年级 分数): the topic condition *and* the course's
  edition and grade.

Fillers are checked not to contain any query string, so a relevant judgement
never depends on filler text. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from hub.search.documents import CourseSource, LessonSource

ZH_TOPICS: dict[str, list[str]] = {
    "chinese": ["古诗三首", "古诗词诵读", "文言文阅读", "汉语拼音", "识字写字", "口语交际", "习作指导", "阅读理解训练",
                "寓言故事", "现代诗歌", "说明文阅读", "记叙文写作", "成语故事", "唐诗宋词赏析", "名著导读"],
    "math": ["一元二次方程", "一元一次方程", "二元一次方程组", "分数的意义", "分数加减法", "小数乘法", "百分数的应用",
             "勾股定理", "平行四边形的面积", "三角形的内角和", "一次函数", "二次函数图像", "圆柱与圆锥", "乘法口诀",
             "统计与概率", "比例的应用", "用配方法解方程"],
    "english": ["英语字母歌", "英语语音训练", "英语情景对话", "英语阅读技巧", "英语写作入门", "英语语法时态"],
    "morality": ["诚实守信", "法律常识", "家庭责任", "生命安全教育", "规则意识", "爱国情怀"],
    "history": ["秦朝统一", "丝绸之路", "辛亥革命", "鸦片战争", "唐朝盛世", "改革开放"],
    "geography": ["地球的运动", "中国的河流", "气候类型", "地形地貌", "人口分布", "自然资源"],
    "science": ["植物的生长", "水的三态变化", "简单电路", "磁铁的性质", "天气观测", "动物的分类"],
    "physics": ["欧姆定律", "牛顿第一定律", "浮力与压强", "光的折射", "电磁感应", "机械能守恒"],
    "chemistry": ["化学方程式", "元素周期表", "酸碱盐", "氧气的制取", "质量守恒定律", "金属的性质"],
    "biology": ["光合作用", "细胞的结构", "生态系统", "遗传与变异", "人体消化系统", "植物的呼吸作用"],
    "it": ["编程入门", "人工智能初步", "网络安全", "数据与编码", "算法设计", "信息检索"],
    "pe": ["广播体操", "篮球运球", "跳绳练习", "立定跳远", "足球传球", "健康饮食"],
    "art": ["水彩画技法", "剪纸艺术", "素描基础", "书法临摹", "民间美术", "色彩搭配"],
    "music": ["民歌欣赏", "节奏练习", "合唱训练", "乐器认识", "京剧欣赏", "识读乐谱"],
    "labor": ["整理书包", "种植蔬菜", "简单烹饪", "手工编织", "垃圾分类", "木工制作"],
}

EN_TOPICS: dict[str, list[str]] = {
    "chinese": ["Chinese characters", "Classical poems", "Reading Chinese stories", "Pinyin basics"],
    "math": ["Quadratic equations", "Linear equations", "Fractions and decimals", "Pythagorean theorem",
             "Area of parallelograms", "Angles in triangles", "Linear functions", "Probability and statistics",
             "Multiplication tables", "Percentages in daily life", "Ratio and proportion", "Volume of cylinders"],
    "english": ["Phonics and spelling", "Reading comprehension", "Grammar tenses", "Writing paragraphs",
                "Vocabulary building", "Listening skills", "Speaking practice", "Story telling"],
    "morality": ["Honesty and trust", "Rules and laws", "Family responsibilities", "Safety education"],
    "history": ["Qin dynasty unification", "Silk Road trade", "Opium wars", "Tang dynasty culture"],
    "geography": ["Earth rotation", "Rivers of China", "Climate zones", "Landforms and maps"],
    "science": ["Plant growth", "States of water", "Simple circuits", "Magnets and magnetism", "Weather observation"],
    "physics": ["Ohm's law", "Newton's first law", "Buoyancy and pressure", "Refraction of light",
                "Electromagnetic induction"],
    "chemistry": ["Chemical equations", "Periodic table", "Acids and bases", "Conservation of mass"],
    "biology": ["Photosynthesis", "Cell structure", "Ecosystems", "Genetics and heredity", "Digestive system"],
    "it": ["Programming basics", "Artificial intelligence", "Internet safety", "Algorithms and data"],
    "pe": ["Basketball dribbling", "Rope skipping", "Football passing", "Healthy eating"],
    "art": ["Watercolor painting", "Paper cutting", "Sketching basics", "Calligraphy practice"],
    "music": ["Folk songs", "Rhythm practice", "Choir singing", "Musical instruments"],
    "labor": ["Growing vegetables", "Simple cooking", "Waste sorting", "Woodworking"],
}

ZH_FILLERS = [
    "本节课由骨干教师主讲，结合教材内容设计了层层递进的学习任务。",
    "课堂上通过小组合作与交流展示，引导学生主动思考。",
    "教师在课后提供练习与拓展资源，方便学生复习巩固。",
    "本课配有微课视频和课件，适合网络条件较差的学校使用。",
    "学习目标明确，重难点突出，便于乡村教师参考备课。",
    "通过生活中的实例，帮助学生建立知识与实际的联系。",
    "课程注重培养学生的核心素养和自主学习能力。",
    "课后作业分为基础题与提高题，满足不同层次学生的需要。",
    "教学过程包括情境导入、新知探究、练习巩固和课堂小结。",
    "资源可以离线下载，在校园局域网中播放。",
    "适合同年级各班级使用，也可用于家长辅导孩子学习。",
    "本课时长约四十分钟，建议配合教材同步使用。",
]

EN_FILLERS = [
    "This lesson was recorded by an experienced teacher at a partner school.",
    "Students work in small groups and share their findings with the class.",
    "The teacher provides worksheets and extension activities after class.",
    "Slides and a short video are included for schools with slow connections.",
    "Clear goals help rural teachers prepare their own classes.",
    "Examples from everyday life connect the ideas with the real world.",
    "The activities build independent learning habits step by step.",
    "Homework includes basic and challenge questions for every level.",
    "The lesson moves from a warm-up to guided practice and a short review.",
    "All resources can be downloaded and played offline on the school network.",
]

ZH_EDITIONS = ["人教版", "北师大版", "统编版", "苏教版"]
EN_EDITIONS = ["PEP", "Oxford", "FLTRP"]
SUBJECT_ZH = {"chinese": "语文", "math": "数学", "english": "英语", "morality": "道德与法治", "history": "历史",
              "geography": "地理", "science": "科学", "physics": "物理", "chemistry": "化学", "biology": "生物",
              "it": "信息科技", "pe": "体育与健康", "art": "美术", "music": "音乐", "labor": "劳动"}
GRADE_ZH = ["", "一年级", "二年级", "三年级", "四年级", "五年级", "六年级", "七年级", "八年级", "九年级"]
LICENSES = ["CC-BY-4.0", "CC-BY-SA-4.0", "CC-BY-NC-4.0", "CC-BY-NC-SA-4.0", "CC0-1.0"]
ZH_MATERIALS = [("video", "微课视频"), ("document", "课件"), ("audio", "朗读音频"), ("image", "板书")]
EN_MATERIALS = [("video", "video"), ("document", "slides"), ("audio", "recording"), ("image", "board notes")]
LESSONS_PER_COURSE = 20
# Issue 18: chapter names. A Chinese math course's lessons sit five to a chapter of 人教版
# 数学 三年级上册 (units 1, 3, 6 and 7, picked because no topic query is part of their names
# and no topic's pinyin reads as theirs), and the lesson's unit names it: "第1单元 时、分、秒".
# By position, with no random draw, so the rest of the catalog is what it was.
MATH_CHAPTERS = ["时、分、秒", "测量", "多位数乘一位数", "长方形和正方形"]


@dataclass
class LessonTruth:
    lesson_id: int
    course_id: int
    language: str
    topic: str
    edition: str
    grades: tuple[int, ...]
    chapter: str = ""


@dataclass
class Query:
    text: str
    kind: str  # zh | zh-trad | zh-textbook | en | pinyin | pinyin-forms | chapter
    relevant: set[str] = field(default_factory=set)  # index keys: lesson:ID and course:ID


@dataclass
class Catalog:
    courses: list[CourseSource]
    truth: list[LessonTruth]
    schools: list[tuple[int, str]]

    @property
    def lessons(self) -> int:
        return len(self.truth)


def generate(lessons: int, seed: int = 7) -> Catalog:
    rng = random.Random(seed)
    schools = [(i, f"{city}第{i}中学") for i, city in enumerate(["北京", "上海", "成都", "杭州", "西安"] * 10, start=1)]
    courses: list[CourseSource] = []
    truth: list[LessonTruth] = []
    n_courses = -(-lessons // LESSONS_PER_COURSE)
    lesson_id = 0
    for course_id in range(1, n_courses + 1):
        zh = course_id % 2 == 1
        subject = rng.choice(list(ZH_TOPICS if zh else EN_TOPICS))
        grade = rng.randint(1, 9)
        grades = [grade] if rng.random() < 0.8 or grade == 9 else [grade, grade + 1]
        category = "curriculum" if rng.random() < 0.8 else rng.choice(["after-school", "teacher-training"])
        edition = rng.choice(ZH_EDITIONS if zh else EN_EDITIONS) if category == "curriculum" else ""
        volume = rng.choice(["上册", "下册"]) if category == "curriculum" else ""
        school_id, school_name = rng.choice(schools)
        if zh:
            name = f"{SUBJECT_ZH[subject]}{GRADE_ZH[grade]}"
            title = f"{edition}{name}{volume}" if edition else f"{name}拓展课程"
            summary = "".join(rng.sample(ZH_FILLERS, 3))
        else:
            title = f"Grade {grade} {subject.title()} ({edition or 'after school'})"
            summary = " ".join(rng.sample(EN_FILLERS, 3))
        course = CourseSource(
            id=course_id, title=title, summary=summary, category=category, subject=subject, grades=grades,
            edition=edition, volume=volume, language="zh" if zh else "en", license=rng.choice(LICENSES),
            teacher=rng.choice(["王老师", "李老师", "张老师", "Ms. Chen", "Mr. Liu"]),
            school_id=school_id, school_name=school_name,
        )
        topics = (ZH_TOPICS if zh else EN_TOPICS)[subject]
        for position in range(1, LESSONS_PER_COURSE + 1):
            lesson_id += 1
            if lesson_id > lessons:
                break
            topic = rng.choice(topics)
            if zh:
                lesson_title = rng.choice(
                    [f"{topic}（第{position}课时）", f"{topic}练习课", f"{topic}", f"{topic}复习"]
                )
                target = rng.randint(100, 300)
                text = f"本课学习{topic}。"
                while len(text) < target:
                    text += rng.choice(ZH_FILLERS)
                lesson_summary = text[:target]
                chapter = MATH_CHAPTERS[(position - 1) // 5] if subject == "math" else ""
                unit = f"第{(position - 1) // 5 + 1}单元 {chapter}".rstrip()
                materials = [(kind, f"{topic}{label}") for kind, label in
                             rng.sample(ZH_MATERIALS, rng.randint(0, 3))]
            else:
                lesson_title = rng.choice(
                    [f"{topic}: lesson {position}", f"Introduction to {topic.lower()}", f"{topic} practice", topic]
                )
                target = rng.randint(100, 300)
                text = f"In this lesson students learn about {topic.lower()}."
                while len(text) < target:
                    text += " " + rng.choice(EN_FILLERS)
                lesson_summary = text[:target]
                unit = f"Unit {(position - 1) // 5 + 1}"
                chapter = ""
                materials = [(kind, f"{topic} {label}") for kind, label in
                             rng.sample(EN_MATERIALS, rng.randint(0, 3))]
            course.lessons.append(LessonSource(lesson_id, position, lesson_title, lesson_summary, unit, materials))
            truth.append(LessonTruth(lesson_id, course_id, course.language, topic, edition, tuple(grades), chapter))
        courses.append(course)
    return Catalog(courses, truth, schools)


def _english_words(text: str) -> set[str]:
    words = set()
    for raw in text.lower().replace("'s", "").replace(":", " ").split():
        word = raw.strip(".,()")
        words.add(word[:-1] if word.endswith("s") and len(word) > 3 else word)
    return words


# Issue 18: pinyin as rural teachers type it (with a space, without, initials, the
# beginning of a word), each judged against the Chinese it stands for.
PINYIN_FORMS = [
    ("fen shu", "分数"),
    ("fenshu", "分数"),
    ("fs", "分数"),
    ("peifang", "配方"),
    ("peifangfa", "配方法"),
    ("yiyuanerci", "一元二次"),
    ("gougu", "勾股"),
]

# Issue 18: chapter names, in Chinese (without the list marks too) and in pinyin (a
# prefix inside the name: shifen), each judged against the lessons of that chapter.
CHAPTER_QUERIES = [
    ("时、分、秒", "时、分、秒"),
    ("时分秒", "时、分、秒"),
    ("shifen", "时、分、秒"),
    ("shi fen miao", "时、分、秒"),
    ("sfm", "时、分、秒"),
    ("测量", "测量"),
    ("celiang", "测量"),
    ("多位数乘一位数", "多位数乘一位数"),
    ("chengyiweishu", "多位数乘一位数"),
    ("长方形和正方形", "长方形和正方形"),
    ("zhengfangxing", "长方形和正方形"),
]


def make_queries(catalog: Catalog, count: int = 500, seed: int = 11) -> list[Query]:
    """1–3-term queries: 40% Chinese (some traditional, some textbook-style), 40% English, 20% pinyin.

    Plus the fixed :data:`PINYIN_FORMS` (kind ``pinyin-forms``) and :data:`CHAPTER_QUERIES`
    (kind ``chapter``), once each, after the ``count``.
    """
    from pypinyin import lazy_pinyin  # type: ignore[import-untyped]
    from zhconv import convert  # type: ignore[import-untyped]

    from hub.search import analysis

    rng = random.Random(seed)
    zh_topics = sorted({t for ts in ZH_TOPICS.values() for t in ts})
    en_topics = sorted({t for ts in EN_TOPICS.values() for t in ts})
    by_topic: dict[str, list[LessonTruth]] = {}
    for lesson in catalog.truth:
        by_topic.setdefault(lesson.topic, []).append(lesson)
    queries: list[Query] = []

    def zh_query_string(topic: str) -> str:
        words = [w for w in analysis.segment(topic) if len(w) >= 2]
        sub = [w for w in analysis._load_tables().segmenter.cut_for_search(topic, False) if len(w) >= 2]
        options = [topic, *words, *sub]
        if len(topic) >= 4:
            options.append(topic[1:])  # a substring that is no word: 二次方程 in 一元二次方程
        return rng.choice(options)

    def relevant_zh(needle: str, edition: str = "", grade: int = 0) -> set[str]:
        keys: set[str] = set()
        for topic, lessons in by_topic.items():
            if needle in topic:
                for lesson in lessons:
                    if edition and lesson.edition != edition:
                        continue
                    if grade and grade not in lesson.grades:
                        continue
                    keys.add(f"lesson:{lesson.lesson_id}")
                    keys.add(f"course:{lesson.course_id}")
        return keys

    def relevant_en(words: set[str]) -> set[str]:
        keys: set[str] = set()
        for topic, lessons in by_topic.items():
            if topic.isascii() and words <= _english_words(topic):
                for lesson in lessons:
                    keys.add(f"lesson:{lesson.lesson_id}")
                    keys.add(f"course:{lesson.course_id}")
        return keys

    # Words of the fillers and of title decorations are not topics: a query for
    # one would have a relevant set the generator cannot know.
    noise = " ".join(
        ZH_FILLERS + EN_FILLERS + MATH_CHAPTERS + ["练习课 复习 课时 拓展课程 微课视频 课件 朗读音频 板书 第单元"]
    )

    def clean(needle: str) -> bool:
        return needle not in noise

    while len(queries) < count:
        roll = rng.random()
        if roll < 0.25:
            needle = zh_query_string(rng.choice(zh_topics))
            if clean(needle):
                queries.append(Query(needle, "zh", relevant_zh(needle)))
        elif roll < 0.32:
            needle = zh_query_string(rng.choice(zh_topics))
            if clean(needle):
                queries.append(Query(convert(needle, "zh-hant"), "zh-trad", relevant_zh(needle)))
        elif roll < 0.40:
            lesson = rng.choice(catalog.truth)
            if lesson.language != "zh" or not lesson.edition:
                continue
            needle = zh_query_string(lesson.topic)
            if not clean(needle):
                continue
            grade = lesson.grades[0]
            text = f"{lesson.edition} {GRADE_ZH[grade]} {needle}"
            queries.append(Query(text, "zh-textbook", relevant_zh(needle, lesson.edition, grade)))
        elif roll < 0.80:
            topic = rng.choice(en_topics)
            words = [
                w.strip(".,()").lower()
                for w in topic.replace("'s", "").split()
                if w.lower() not in ("and", "of", "in", "to")
            ]
            picked = rng.sample(words, min(len(words), rng.randint(1, 3)))
            if rng.random() < 0.3:
                picked = [w[:-1] if w.endswith("s") else w + "s" for w in picked]  # stemming: equation(s)
            queries.append(Query(" ".join(picked), "en", relevant_en(_english_words(" ".join(picked)))))
        else:
            topic = rng.choice(zh_topics)
            words = [w for w in analysis._load_tables().segmenter.cut_for_search(topic, False) if len(w) >= 2]
            if not words:
                continue
            word = rng.choice(words)
            if not clean(word):
                continue
            queries.append(Query("".join(lazy_pinyin(word)), "pinyin", relevant_zh(word)))
    queries.extend(Query(typed, "pinyin-forms", relevant_zh(chinese)) for typed, chinese in PINYIN_FORMS)
    in_chapter: dict[str, set[str]] = {}
    for lesson in catalog.truth:
        if lesson.chapter:
            in_chapter.setdefault(lesson.chapter, set()).update(
                {f"lesson:{lesson.lesson_id}", f"course:{lesson.course_id}"}
            )
    queries.extend(Query(typed, "chapter", in_chapter.get(name, set())) for typed, name in CHAPTER_QUERIES)
    return queries


def iter_lessons(catalog: Catalog) -> Iterator[LessonSource]:
    for course in catalog.courses:
        yield from course.lessons

"""``hub demo``: the whole hub on one machine, with a realistic demo catalog.

:func:`seed_demo` fills an instance with fictional schools, accounts and
courses through the same services the API and the CLI use, so the demo data
obeys every rule real data does (permissions, validation, the change feed, the
outbox). It is idempotent: schools and users are found by name and email,
courses by title within their school, materials by title within their lesson;
a second run creates nothing.

:func:`run_demo` migrates, seeds, starts a Celery worker as a child process,
prints the URL and the demo accounts, and serves the app (hub.serving) until
it is stopped; the worker is stopped with it.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from types import FrameType
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.accounts import services as accounts
from hub.accounts.models import School, User
from hub.catalog import services as catalog
from hub.catalog.models import Course, Lesson
from hub.catalog.schemas import CourseCreate, CourseUpdate, LessonCreate, LessonUpdate
from hub.config import Settings
from hub.errors import NotFound
from hub.media.storage import Storage
from hub.subtitles import services as subtitles
from hub.textbooks import services as textbooks
from hub.textbooks.cli import shipped_files
from hub.textbooks.models import Textbook

DEMO_PASSWORD = "demo-password"  # noqa: S105 - printed for everyone to use; demo data only

# --------------------------------------------------------------------------- data
# Every school, person and course below is fictional; names follow the patterns
# of real Chinese schools so the catalog reads like the real thing.


@dataclass(frozen=True)
class DemoSchool:
    key: str  # short handle, also the demo accounts' email local part
    name: str
    kind: str
    region: str
    county: str


@dataclass(frozen=True)
class DemoLesson:
    unit: str
    title: str
    summary: str = ""
    node: str = ""  # the key of the textbook node it teaches, in its course's textbook


@dataclass(frozen=True)
class DemoCourse:
    school: str  # DemoSchool.key
    title: str
    subject: str
    grades: tuple[int, ...]
    summary: str
    lessons: tuple[DemoLesson, ...]
    category: str = "curriculum"
    edition: str = ""
    volume: str = ""
    textbook: str = ""  # the key of the textbook it follows (hub/textbooks/data)
    language: str = "zh"
    license: str = "CC-BY-NC-SA-4.0"
    teacher: str = ""
    status: str = "published"  # published | draft | withdrawn


@dataclass(frozen=True)
class DemoMedia:
    """A small generated file attached to one lesson (kind: video | image | audio)."""

    school: str
    course: str
    lesson: str
    kind: str
    title: str
    filename: str


SCHOOLS: tuple[DemoSchool, ...] = (
    DemoSchool("xinghe", "北京市海淀区星河实验小学", "famous", "北京市", "海淀区"),
    DemoSchool("pujiang", "上海市浦江第一中学", "famous", "上海市", "浦东新区"),
    DemoSchool("furong", "成都市锦江区芙蓉外国语学校", "famous", "四川省 成都市", "锦江区"),
    DemoSchool("tongwei", "通渭县榆木乡中心小学", "rural", "甘肃省 定西市", "通渭县"),
    DemoSchool("huize", "会泽县娜姑镇初级中学", "rural", "云南省 曲靖市", "会泽县"),
    DemoSchool("zhenning", "镇宁县六马镇九年一贯制学校", "rural", "贵州省 安顺市", "镇宁布依族苗族自治县"),
    DemoSchool("fengning", "丰宁县黄旗镇中心小学", "rural", "河北省 承德市", "丰宁满族自治县"),
)

# Famous school → the rural schools it shares with (the bureau's pairing plan).
PAIRINGS: tuple[tuple[str, str], ...] = (
    ("xinghe", "tongwei"),
    ("xinghe", "fengning"),
    ("pujiang", "huize"),
    ("pujiang", "zhenning"),
    ("furong", "zhenning"),
)

_DOMAIN = "demo.example"  # RFC 2606: never a real mailbox


@dataclass(frozen=True)
class DemoAccount:
    email: str
    role: str
    school: str  # DemoSchool.key


def _accounts() -> tuple[DemoAccount, ...]:
    people = [DemoAccount(f"admin@{_DOMAIN}", "admin", SCHOOLS[0].key)]
    for school in SCHOOLS:
        role = "uploader" if school.kind == "famous" else "teacher"
        people.append(DemoAccount(f"{role}.{school.key}@{_DOMAIN}", role, school.key))
    # Reviews the courses of 北京市's schools when HUB_REVIEW_REQUIRED is on (its school's region).
    people.append(DemoAccount(f"reviewer@{_DOMAIN}", "reviewer", SCHOOLS[0].key))
    return tuple(people)


ACCOUNTS = _accounts()


def _l(unit: str, title: str, summary: str = "", node: str = "") -> DemoLesson:
    return DemoLesson(unit, title, summary, node)


COURSES: tuple[DemoCourse, ...] = (
    # ---- 北京市海淀区星河实验小学 (primary, grades 1–6)
    DemoCourse(
        "xinghe", "一年级语文上册（统编版）", "chinese", (1,),
        "统编版一年级语文上册同步课：识字、拼音与短课文，每课 20 分钟以内，适合复式班分段使用。",
        (
            _l("第一单元 识字", "天地人", "认识“天、地、人、你、我、他”，学习正确的写字姿势。", "1.1"),
            _l("第一单元 识字", "金木水火土", "借助儿歌认识“一、二、三、上、下”和五行字。", "1.2"),
            _l("第一单元 识字", "口耳目", "象形字的由来：从图画到汉字。", "1.3"),
            _l("第四单元 课文", "秋天", "朗读课文，认识“秋、气、了、树、叶”等生字。", "4.1"),
            _l("第四单元 课文", "小小的船", "背诵儿歌，体会比喻的有趣。", "4.2"),
            _l("第四单元 课文", "江南", "汉乐府《江南》：读出节奏，想象鱼戏莲叶的画面。", "4.3"),
        ),
        edition="统编版", volume="上册", textbook="tongbian-chinese-1-1", teacher="刘晓燕",
    ),
    DemoCourse(
        "xinghe", "三年级数学上册（人教版）", "math", (3,),
        "人教版三年级数学上册：时间、测量、万以内加减法与分数的初步认识，配课堂练习。",
        (
            _l("第一单元 时、分、秒", "秒的认识", "认识时间单位“秒”，体验 1 秒、10 秒有多长。", "1.1"),
            _l("第三单元 测量", "毫米、分米的认识", "用直尺量一量，建立长度单位的表象。", "3.1"),
            _l("第五单元 倍的认识", "倍的认识", "用小棒摆一摆，理解“几倍”的含义。", "5.1"),
            _l("第八单元 分数的初步认识", "分数的初步认识", "从平均分一块月饼开始，认识几分之一。", "8.1.1"),
            _l("第八单元 分数的初步认识", "几分之几", "认识几分之几，会读写简单的分数。", "8.1.2"),
            _l("第八单元 分数的初步认识", "分数的简单计算", "同分母分数的加减法。", "8.2"),
        ),
        edition="人教版", volume="上册", textbook="renjiao-math-3-1", license="CC-BY-SA-4.0", teacher="张伟",
    ),
    DemoCourse(
        "xinghe", "三年级语文下册（统编版）", "chinese", (3,),
        "统编版三年级语文下册：古诗、寓言与观察类习作，含朗读示范与板书。",
        (
            _l("第一单元", "古诗三首", "《绝句》《惠崇春江晚景》《三衢道中》：读出春天的画面。", "1.1"),
            _l("第一单元", "燕子", "抓住外形、飞行、停歇三个镜头描写燕子。", "1.2"),
            _l("第一单元", "荷花", "想象自己是一朵荷花，体会作者的想象。", "1.3"),
            _l("第二单元 寓言", "守株待兔", "第一篇文言文：借助注释读懂故事，明白寓意。", "2.1"),
            _l("第二单元 寓言", "陶罐和铁罐", "分角色朗读，说说从陶罐和铁罐身上学到了什么。", "2.2"),
        ),
        edition="统编版", volume="下册", textbook="tongbian-chinese-3-2", teacher="刘晓燕",
    ),
    DemoCourse(
        "xinghe", "PEP English Grade 3 Book 2", "english", (3,),
        "PEP primary English for grade 3, second term: songs, chants and short dialogues.",
        (
            _l("Unit 1", "Unit 1 Welcome back to school!", "Introduce yourself and say where you are from."),
            _l("Unit 2", "Unit 2 My family", "Family words and the question “Who's that man?”."),
            _l("Unit 3", "Unit 3 At the zoo", "Describe animals: big, small, long, short."),
            _l("Unit 4", "Unit 4 Where is my car?", "Prepositions in, on, under with classroom objects."),
        ),
        edition="人教版", volume="下册", language="en", license="CC-BY-4.0", teacher="Ms. Chen Jing",
    ),
    DemoCourse(
        "xinghe", "PEP English Grade 4 Book 1", "english", (4,),
        "PEP primary English for grade 4, first term, with classroom language for rural teachers.",
        (
            _l("Unit 1", "Unit 1 My classroom", "Classroom objects and “Let's clean the classroom”."),
            _l("Unit 2", "Unit 2 My schoolbag", "Count books and colours in a schoolbag."),
            _l("Unit 3", "Unit 3 My friends", "Describe a friend: tall, strong, friendly."),
            _l("Unit 4", "Unit 4 My home", "Rooms of a home and “Where are the keys?”."),
            _l("Unit 5", "Unit 5 Dinner's ready", "Food words and polite requests at the table."),
        ),
        edition="人教版", volume="上册", language="en", license="CC-BY-4.0", teacher="Ms. Chen Jing",
    ),
    DemoCourse(
        "xinghe", "五年级数学下册（北师大版）", "math", (5,),
        "北师大版五年级数学下册：分数加减乘除与长方体，重视动手操作。",
        (
            _l("第一单元 分数加减法", "折纸：异分母分数加减法", "用折纸理解通分的道理。"),
            _l("第二单元 长方体（一）", "展开与折叠", "长方体和正方体的展开图。"),
            _l("第三单元 分数乘法", "分数乘法（一）", "分数乘整数的意义和计算。"),
            _l("第四单元 长方体（二）", "体积与容积", "认识体积单位，计算长方体的体积。"),
            _l("第五单元 分数除法", "倒数", "认识倒数，会求一个数的倒数。"),
        ),
        edition="北师大版", volume="下册", teacher="张伟",
    ),
    DemoCourse(
        "xinghe", "五年级科学下册（教科版）", "science", (5,),
        "教科版五年级科学下册：生物与环境、船的研究，实验器材均可用家中物品替代。",
        (
            _l("第一单元 生物与环境", "种子发芽实验", "设计对照实验：种子发芽需要哪些条件？"),
            _l("第一单元 生物与环境", "食物链和食物网", "从校园里的一片草地画出食物网。"),
            _l("第一单元 生物与环境", "设计和制作生态瓶", "用矿泉水瓶做一个小生态系统。"),
            _l("第二单元 船的研究", "用浮的材料造船", "竹筏与独木舟：材料的浮与沉。"),
            _l("第二单元 船的研究", "增加船的载重量", "改变船的形状，比一比谁的船装得多。"),
        ),
        edition="教科版", volume="下册", license="CC-BY-SA-4.0", teacher="赵磊",
    ),
    DemoCourse(
        "xinghe", "二年级道德与法治上册（统编版）", "morality", (2,),
        "统编版二年级道德与法治上册：节假日与班级生活。",
        (
            _l("第一单元 我们的节假日", "我们的节假日", "说说一年中的节日，分享假期趣事。"),
            _l("第一单元 我们的节假日", "欢欢喜喜庆国庆", "了解国庆节的由来。"),
            _l("第一单元 我们的节假日", "团团圆圆过中秋", "中秋的习俗与家乡的月饼。"),
            _l("第二单元 我们的班级", "我爱我们班", "找找班级的优点，为班级出一份力。"),
            _l("第二单元 我们的班级", "班级生活有规则", "一起制定班级公约。"),
        ),
        edition="统编版", volume="上册", teacher="王芳",
    ),
    DemoCourse(
        "xinghe", "一年级音乐下册（人音版）", "music", (1,),
        "人音版一年级音乐下册：在歌声和律动中感受春天。",
        (
            _l("第一单元 春天来了", "《春晓》", "学唱古诗新唱《春晓》，用拍手表现节拍。"),
            _l("第一单元 春天来了", "《小雨沙沙》", "用沙锤模仿雨声，感受强弱。"),
            _l("第二单元 动物说话", "《小动物唱歌》", "模仿小动物的叫声，认识音的高低。"),
        ),
        edition="人音版", volume="下册", license="CC-BY-4.0", teacher="孙悦",
    ),
    DemoCourse(
        "xinghe", "二年级美术上册（人美版）", "art", (2,),
        "人美版二年级美术上册：线条与色彩，材料只需铅笔、蜡笔和彩纸。",
        (
            _l("第一单元 线条", "我们身边的线条", "找一找校园里的直线与曲线。"),
            _l("第一单元 线条", "会变的线条", "用不同的线条表现心情。"),
            _l("第二单元 色彩", "红色的画", "认识暖色，画一幅红色为主的画。"),
            _l("第二单元 色彩", "美丽的花", "观察花的形状与颜色，用彩纸拼贴。"),
        ),
        edition="人美版", volume="上册", teacher="孙悦",
    ),
    DemoCourse(
        "xinghe", "体育与健康 一二年级：跳绳与投掷（人教版）", "pe", (1, 2),
        "人教版体育与健康低年级教学：跳绳、快速跑与投掷，一块空地即可上课。",
        (
            _l("第一单元 跳跃", "单脚跳与双脚跳", "在格子里跳一跳，练习落地缓冲。"),
            _l("第一单元 跳跃", "短绳跳", "从摇绳到连续跳，一分钟跳绳测试。"),
            _l("第二单元 跑与投掷", "30 米快速跑", "起跑姿势与摆臂。"),
            _l("第二单元 跑与投掷", "投掷沙包", "肩上屈肘投掷的动作要领。"),
        ),
        edition="人教版", teacher="周强",
    ),
    DemoCourse(
        "xinghe", "小学生趣味编程：Scratch 入门", "it", (4, 5, 6),
        "课后服务编程社团：用 Scratch 做动画和小游戏，机房或一台投影电脑都能上。",
        (
            _l("", "认识 Scratch 舞台与角色", "添加角色和背景，保存第一个作品。"),
            _l("", "让小猫动起来", "移动、旋转与造型切换。"),
            _l("", "循环与重复", "用“重复执行”画出正多边形。"),
            _l("", "条件判断：小猫躲避障碍", "如果碰到障碍物，就……"),
            _l("", "制作一个接苹果游戏", "变量记分，完成一个完整的小游戏。"),
        ),
        category="after-school", license="CC-BY-SA-4.0", teacher="赵磊",
    ),
    DemoCourse(
        "xinghe", "校园小菜园：种植劳动课", "labor", (3, 4),
        "课后服务劳动课：在校园一角种蔬菜，学会观察与记录。",
        (
            _l("", "认识常见蔬菜种子", "比较菠菜、萝卜、豆角的种子。"),
            _l("", "松土与播种", "工具的安全使用，行距与株距。"),
            _l("", "浇水与施肥", "什么时候浇水？自制草木灰肥料。"),
            _l("", "植物生长观察日记", "用图画和数字记录一株菜苗的生长。"),
        ),
        category="after-school", license="CC-BY-4.0", teacher="王芳",
    ),
    DemoCourse(
        "xinghe", "小学数学课堂提问的设计", "math", (1, 2, 3, 4, 5, 6),
        "教师研修：好问题怎样推动思考？以人教版例题为例，兼顾复式班教学。",
        (
            _l("", "好问题的三个特征", "开放、可及、指向核心概念。"),
            _l("", "从教材例题到核心问题", "以“分数的初步认识”为例改写提问。"),
            _l("", "追问与课堂生成", "学生答错时，如何追问而不是纠正。"),
            _l("", "复式班的提问策略", "一位老师两个年级：动静搭配的提问安排。"),
        ),
        category="teacher-training", license="CC-BY-4.0", teacher="张伟",
    ),
    # ---- 上海市浦江第一中学 (junior secondary, grades 7–9)
    DemoCourse(
        "pujiang", "九年级数学上册（人教版）", "math", (9,),
        "人教版九年级数学上册：一元二次方程与二次函数，例题讲解加分层练习。",
        (
            _l("第二十一章 一元二次方程", "一元二次方程的概念", "一般形式、二次项系数与根的概念。", "21.1"),
            _l("第二十一章 一元二次方程", "一元二次方程的解法：配方法", "从完全平方式出发，一步步配方。", "21.2.1"),
            _l("第二十一章 一元二次方程", "一元二次方程的解法：公式法", "推导求根公式，认识判别式。", "21.2.2"),
            _l("第二十一章 一元二次方程", "一元二次方程的解法：因式分解法", "提公因式与十字相乘。", "21.2.3"),
            _l("第二十一章 一元二次方程", "一元二次方程的根与系数的关系", "韦达定理及其应用。", "21.2.4"),
            _l("第二十一章 一元二次方程", "实际问题与一元二次方程", "增长率、面积与传播问题。", "21.3"),
            _l("第二十二章 二次函数", "二次函数的图象和性质", "从 y=x² 开始画抛物线。", "22.1"),
        ),
        edition="人教版", volume="上册", textbook="renjiao-math-9-1", teacher="陈志强",
    ),
    DemoCourse(
        "pujiang", "八年级物理上册（人教版）", "physics", (8,),
        "人教版八年级物理上册：机械运动与声现象，每节配一个低成本演示实验。",
        (
            _l("第一章 机械运动", "长度和时间的测量", "刻度尺与停表的正确使用，误差与错误。"),
            _l("第一章 机械运动", "运动的描述", "参照物：为什么说“坐地日行八万里”。"),
            _l("第一章 机械运动", "运动的快慢", "速度的定义与单位换算。"),
            _l("第一章 机械运动", "测量平均速度", "用斜面和小车测平均速度。"),
            _l("第二章 声现象", "声音的产生与传播", "声音由振动产生，真空不能传声。"),
            _l("第二章 声现象", "声音的特性", "音调、响度与音色。"),
            _l("第二章 声现象", "噪声的危害和控制", "从声源、传播、人耳三处减弱噪声。"),
        ),
        edition="人教版", volume="上册", license="CC-BY-SA-4.0", teacher="李海涛",
    ),
    DemoCourse(
        "pujiang", "九年级化学上册（人教版）", "chemistry", (9,),
        "人教版九年级化学上册：走进化学世界与我们周围的空气，实验视频可代替部分演示实验。",
        (
            _l("第一单元 走进化学世界", "物质的变化和性质", "物理变化与化学变化的区别。"),
            _l("第一单元 走进化学世界", "化学是一门以实验为基础的科学", "对蜡烛及其燃烧的探究。"),
            _l("第一单元 走进化学世界", "走进化学实验室", "常用仪器与基本操作、实验室安全。"),
            _l("第二单元 我们周围的空气", "空气", "测定空气中氧气的含量。"),
            _l("第二单元 我们周围的空气", "氧气", "氧气的性质与化合反应、氧化反应。"),
            _l("第二单元 我们周围的空气", "制取氧气", "高锰酸钾制氧气与催化剂。"),
        ),
        edition="人教版", volume="上册", teacher="吴敏",
    ),
    DemoCourse(
        "pujiang", "七年级生物上册（人教版）", "biology", (7,),
        "人教版七年级生物上册：细胞与绿色植物，附显微镜操作视频。",
        (
            _l("第二单元 生物体的结构层次", "练习使用显微镜", "对光、放片、调焦三步走。"),
            _l("第二单元 生物体的结构层次", "植物细胞", "制作洋葱鳞片叶内表皮细胞临时装片。"),
            _l("第二单元 生物体的结构层次", "动物细胞", "制作人的口腔上皮细胞临时装片。"),
            _l("第三单元 生物圈中的绿色植物", "绿色植物是生物圈中有机物的制造者", "光合作用的发现与验证实验。"),
            _l("第三单元 生物圈中的绿色植物", "绿色植物与生物圈中的碳—氧平衡", "光合作用与呼吸作用的比较。"),
        ),
        edition="人教版", volume="上册", license="CC-BY-SA-4.0", teacher="吴敏",
    ),
    DemoCourse(
        "pujiang", "八年级历史上册（统编版）", "history", (8,),
        "统编版八年级历史上册：中国近代史的开端与早期探索。",
        (
            _l("第一单元 中国开始沦为半殖民地半封建社会", "鸦片战争", "虎门销烟与《南京条约》。"),
            _l("第一单元 中国开始沦为半殖民地半封建社会", "第二次鸦片战争", "火烧圆明园。"),
            _l("第一单元 中国开始沦为半殖民地半封建社会", "太平天国运动", "金田起义与天京变乱。"),
            _l("第二单元 近代化的早期探索与民族危机的加剧", "洋务运动", "“自强”“求富”与近代企业。"),
            _l("第二单元 近代化的早期探索与民族危机的加剧", "甲午中日战争与“瓜分”中国狂潮", "黄海海战与《马关条约》。"),
            _l("第二单元 近代化的早期探索与民族危机的加剧", "戊戌变法", "公车上书与百日维新。"),
        ),
        edition="统编版", volume="上册", teacher="郑文华",
    ),
    DemoCourse(
        "pujiang", "七年级地理下册（人教版）", "geography", (7,),
        "人教版七年级地理下册：亚洲与我们邻近的国家，读图能力训练贯穿始终。",
        (
            _l("第六章 我们生活的大洲——亚洲", "位置和范围", "从经纬度和海陆位置描述亚洲。"),
            _l("第六章 我们生活的大洲——亚洲", "自然环境", "地势、河流与气候类型。"),
            _l("第七章 我们邻近的地区和国家", "日本", "多火山、地震的岛国。"),
            _l("第七章 我们邻近的地区和国家", "东南亚", "十字路口的位置与热带气候。"),
            _l("第七章 我们邻近的地区和国家", "印度", "季风气候与粮食生产。"),
            _l("第七章 我们邻近的地区和国家", "俄罗斯", "地跨两洲的国家与西伯利亚大铁路。"),
        ),
        edition="人教版", volume="下册", teacher="郑文华",
    ),
    DemoCourse(
        "pujiang", "七年级语文上册（统编版）", "chinese", (7,),
        "统编版七年级语文上册：四季美景与亲情，重在朗读与品味语言。",
        (
            _l("第一单元", "春", "朱自清《春》：盼春、绘春、赞春。"),
            _l("第一单元", "济南的冬天", "老舍笔下温晴的冬天。"),
            _l("第一单元", "雨的四季", "刘湛秋的雨：四季各有性格。"),
            _l("第一单元", "古代诗歌四首", "《观沧海》《闻王昌龄左迁龙标遥有此寄》等。"),
            _l("第二单元", "秋天的怀念", "史铁生对母亲的怀念。"),
            _l("第二单元", "散步", "莫怀戚《散步》：一家三代的爱。"),
            _l("第二单元", "散文诗二首", "《金色花》《荷叶·母亲》。"),
        ),
        edition="统编版", volume="上册", teacher="黄丽",
    ),
    DemoCourse(
        "pujiang", "Go for it! Grade 8 Book 1", "english", (8,),
        "Junior English for grade 8, first term: listening, speaking and reading with class recordings.",
        (
            _l("Unit 1", "Unit 1 Where did you go on vacation?", "Past tense and indefinite pronouns."),
            _l("Unit 2", "Unit 2 How often do you exercise?", "Adverbs of frequency; a health survey."),
            _l("Unit 3", "Unit 3 I'm more outgoing than my sister.", "Comparatives to describe people."),
            _l("Unit 4", "Unit 4 What's the best movie theater?", "Superlatives in a town guide."),
        ),
        edition="人教版", volume="上册", language="en", license="CC-BY-4.0", teacher="Mr. Xu Ming",
    ),
    DemoCourse(
        "pujiang", "Science English Club: Green Plants", "biology", (7, 8),
        "An after-school club reading biology in English, with simple experiments.",
        (
            _l("Unit 1 How plants live", "Photosynthesis", "How leaves turn light, water and CO2 into sugar."),
            _l("Unit 1 How plants live", "Cellular Respiration", "Plants breathe too: respiration day and night."),
            _l("Unit 1 How plants live", "How Leaves Breathe: Stomata", "Look at stomata with a nail-polish peel."),
            _l("Unit 2 Experiments", "Growing Beans: A Two-Week Experiment", "Light or dark? Keep a bean diary."),
        ),
        category="after-school", language="en", license="CC-BY-4.0", teacher="Mr. Xu Ming",
    ),
    DemoCourse(
        "pujiang", "八年级道德与法治上册（统编版）", "morality", (8,),
        "统编版八年级道德与法治上册：走进社会生活，遵守社会规则。",
        (
            _l("第一单元 走进社会生活", "丰富的社会生活", "我与社会：社会生活中的角色。"),
            _l("第一单元 走进社会生活", "在社会中成长", "养成亲社会行为。"),
            _l("第一单元 走进社会生活", "合理利用网络", "网络生活新空间与谨慎上网。"),
            _l("第二单元 遵守社会规则", "社会生活离不开规则", "规则的作用与自由的关系。"),
            _l("第二单元 遵守社会规则", "尊重他人", "以礼待人与诚实守信。"),
        ),
        edition="统编版", volume="上册", teacher="黄丽",
    ),
    DemoCourse(
        "pujiang", "初中物理实验教学：用身边器材做演示实验", "physics", (8, 9),
        "教师研修：实验室条件有限的学校，如何用矿泉水瓶、吸管和手机完成课标要求的实验。",
        (
            _l("", "矿泉水瓶做大气压实验", "覆杯实验与瓶吞鸡蛋。"),
            _l("", "用手机测声音的响度", "免费分贝仪应用的使用与误差。"),
            _l("", "自制简易电动机", "一节电池、一块磁铁和一段漆包线。"),
            _l("", "低成本实验的安全要点", "加热、用电与玻璃器材的安全。"),
        ),
        category="teacher-training", license="CC-BY-4.0", teacher="李海涛",
    ),
    DemoCourse(
        "pujiang", "七年级信息科技上册（浙教版）", "it", (7,),
        "信息科技七年级上册：在线学习、数据与编码、信息安全。",
        (
            _l("第一单元 在线学习与生活", "在线学习的方法", "搜索、筛选与整理学习资源。"),
            _l("第一单元 在线学习与生活", "网络信息的辨别", "判断信息来源是否可信。"),
            _l("第二单元 数据与编码", "认识数据", "数据、信息与知识。"),
            _l("第二单元 数据与编码", "用表格整理数据", "用电子表格统计班级身高。"),
            _l("第三单元 信息安全", "保护个人隐私", "密码、验证码与个人信息保护。"),
        ),
        edition="浙教版", volume="上册", license="CC-BY-SA-4.0", teacher="徐明",
    ),
    DemoCourse(
        "pujiang", "学做家常菜：初中劳动课", "labor", (7, 8),
        "课后服务劳动课：在家能做的四道家常菜，每课附安全提示。",
        (
            _l("", "刀工基础与厨房安全", "握刀姿势、切丝与切片。"),
            _l("", "西红柿炒鸡蛋", "火候与调味。"),
            _l("", "蒸米饭与煮面条", "水米比例与煮面的时间。"),
            _l("", "营养搭配一日三餐", "用膳食宝塔为家人设计一天的食谱。"),
        ),
        category="after-school", license="CC-BY-4.0", teacher="周强",
    ),
    DemoCourse(
        "pujiang", "八年级数学下册（人教版）：勾股定理", "math", (8,),
        "人教版八年级数学下册第十七章（录制中）。",
        (
            _l("第十七章 勾股定理", "勾股定理的证明", "赵爽弦图与拼图证明。", "17.1"),
            _l("第十七章 勾股定理", "勾股定理的应用", "求最短路径与梯子问题。", "17.1"),
            _l("第十七章 勾股定理", "勾股定理的逆定理", "判断直角三角形。", "17.2"),
        ),
        edition="人教版", volume="下册", textbook="renjiao-math-8-2", teacher="陈志强", status="draft",
    ),
    DemoCourse(
        "pujiang", "九年级物理全一册：内能（2019 年录课）", "physics", (9,),
        "旧版录课，已由新版课程替代。",
        (
            _l("第十三章 内能", "分子热运动", "扩散现象与分子间的作用力。"),
            _l("第十三章 内能", "内能", "做功和热传递改变内能。"),
            _l("第十三章 内能", "比热容", "为什么沿海地区昼夜温差小。"),
        ),
        edition="人教版", teacher="李海涛", status="withdrawn",
    ),
    # ---- 成都市锦江区芙蓉外国语学校 (nine-year school, strong in languages)
    DemoCourse(
        "furong", "English Grade 7 Book 1 (2024 edition)", "english", (7,),
        "Junior English for grade 7 with the 2024 textbook: speaking about yourself, family and school.",
        (
            _l("Starter Unit", "Starter Unit 1 Hello!", "Greetings, letters and classroom English."),
            _l("Unit 1", "Unit 1 You and Me", "Introduce yourself and a new classmate."),
            _l("Unit 2", "Unit 2 We're Family!", "Talk about family members and photos."),
            _l("Unit 3", "Unit 3 My School", "Places in a school; there is / there are; draw a school map."),
            _l("Unit 4", "Unit 4 My Favourite Subject", "Subjects, reasons and a weekly timetable."),
        ),
        edition="人教版", volume="上册", language="en", license="CC-BY-4.0", teacher="Ms. Li Na",
    ),
    DemoCourse(
        "furong", "六年级语文上册（统编版）", "chinese", (6,),
        "统编版六年级语文上册：自然之美与革命岁月，含朗读示范与习作指导。",
        (
            _l("第一单元", "草原", "老舍《草原》：景美情更美。"),
            _l("第一单元", "丁香结", "宗璞笔下的丁香与人生感悟。"),
            _l("第一单元", "古诗词三首", "《宿建德江》《六月二十七日望湖楼醉书》《西江月》。"),
            _l("第二单元", "七律·长征", "毛泽东诗词：红军不怕远征难。"),
            _l("第二单元", "狼牙山五壮士", "点面结合的场面描写。"),
            _l("第二单元", "开国大典", "按时间顺序记叙盛大场面。"),
            _l("第二单元", "灯光", "以“灯光”为线索的回忆。"),
        ),
        edition="统编版", volume="上册", teacher="杨雪",
    ),
    DemoCourse(
        "furong", "六年级数学下册（苏教版）", "math", (6,),
        "苏教版六年级数学下册：统计、圆柱与圆锥、比例，配小升初衔接练习。",
        (
            _l("第一单元 扇形统计图", "扇形统计图", "认识扇形统计图，比较三种统计图。"),
            _l("第二单元 圆柱和圆锥", "圆柱的表面积", "把圆柱的侧面展开。"),
            _l("第二单元 圆柱和圆锥", "圆柱的体积", "转化思想：圆柱变长方体。"),
            _l("第二单元 圆柱和圆锥", "圆锥的体积", "用沙子做实验：等底等高的三分之一。"),
            _l("第四单元 比例", "比例的意义和基本性质", "解比例。"),
            _l("第六单元 正比例和反比例", "正比例和反比例", "从表格和图象判断两种量的关系。"),
        ),
        edition="苏教版", volume="下册", license="CC-BY-SA-4.0", teacher="何俊",
    ),
    DemoCourse(
        "furong", "三年级数学上册（人教版）：倍与分数", "math", (3,),
        "人教版三年级数学上册第五、八单元的另一种上法：折纸、分月饼，先动手再说理。",
        (
            _l("第五单元 倍的认识", "倍的认识：用小棒摆一摆", "几个几就是几倍。", "5.1"),
            _l("第五单元 倍的认识", "求一个数的几倍是多少", "从摆小棒到列乘法算式。", "5.3"),
            _l("第八单元 分数的初步认识", "几分之一：分月饼", "把一个月饼平均分成 2 份、4 份。", "8.1.1"),
            _l("第八单元 分数的初步认识", "分数的大小比较", "折一折、涂一涂，比较几分之一的大小。", "8.1.3"),
        ),
        edition="人教版", volume="上册", textbook="renjiao-math-3-1", teacher="黄丽",
    ),
    DemoCourse(
        "furong", "三年级科学上册（苏教版）", "science", (3,),
        "苏教版三年级科学上册：水与空气，每课一个家里能做的小实验。",
        (
            _l("第一单元 水", "水到哪里去了", "蒸发与影响蒸发快慢的因素。"),
            _l("第一单元 水", "水结冰了", "用温度计观察水结冰的过程。"),
            _l("第一单元 水", "冰融化了", "融化与凝固是相反的过程。"),
            _l("第二单元 空气", "空气占据空间吗", "纸团放进倒扣的杯子会湿吗？"),
            _l("第二单元 空气", "热空气和冷空气", "孔明灯为什么能飞起来。"),
        ),
        edition="苏教版", volume="上册", teacher="何俊",
    ),
    DemoCourse(
        "furong", "童声合唱团入门", "music", (4, 5, 6, 7),
        "课后服务合唱社团：从呼吸和发声开始，学唱两首二声部歌曲。",
        (
            _l("", "正确的歌唱姿势与呼吸", "站姿、坐姿与腹式呼吸。"),
            _l("", "发声练习：哼鸣与母音", "五个母音的口型。"),
            _l("", "二声部轮唱《欢乐颂》", "先学旋律，再分声部轮唱。"),
            _l("", "学会聆听同伴", "听辨声部，唱出和谐的声音。"),
        ),
        category="after-school", license="CC-BY-4.0", teacher="孙悦",
    ),
    DemoCourse(
        "furong", "水墨画入门", "art", (5, 6, 7, 8),
        "课后服务美术社团：中国画的笔墨基础，一支毛笔一瓶墨即可开课。",
        (
            _l("", "认识笔墨纸砚", "文房四宝与用笔前的准备。"),
            _l("", "中锋与侧锋", "线条的浓淡干湿。"),
            _l("", "画竹", "竹竿、竹节与竹叶的画法。"),
            _l("", "画荷", "泼墨荷叶与勾线荷花。"),
        ),
        category="after-school", license="CC-BY-NC-4.0", teacher="杨雪",
    ),
    DemoCourse(
        "furong", "小学语文整本书阅读指导", "chinese", (3, 4, 5, 6),
        "教师研修：图书角只有几十本书时，如何组织整本书阅读。",
        (
            _l("", "如何为乡村学生挑选整本书", "兼顾兴趣、难度与学校现有藏书。"),
            _l("", "共读课的三个环节", "导读、推进与分享。"),
            _l("", "阅读单的设计", "少而精的问题，代替抄写好词好句。"),
            _l("", "读书交流会的组织", "让每个孩子都有话可说。"),
        ),
        category="teacher-training", license="CC-BY-4.0", teacher="杨雪",
    ),
    DemoCourse(
        "furong", "Teaching Phonics to Young Learners", "english", (3, 4),
        "Teacher training: a phonics routine for primary English teachers who teach many subjects.",
        (
            _l("", "Why phonics?", "From letter names to letter sounds."),
            _l("", "Short vowels with CVC words", "cat, pen, big, dog, bus: a five-minute daily drill."),
            _l("", "Blending and segmenting games", "Games that need no materials."),
            _l("", "Reading picture books aloud", "Choosing and reading decodable books."),
        ),
        category="teacher-training", language="en", license="CC-BY-4.0", teacher="Ms. Li Na",
    ),
    DemoCourse(
        "furong", "九年级化学下册（人教版）", "chemistry", (9,),
        "人教版九年级化学下册（备课中）。",
        (
            _l("第八单元 金属和金属材料", "金属材料", "纯金属与合金。"),
            _l("第八单元 金属和金属材料", "金属的化学性质", "金属活动性顺序。"),
            _l("第九单元 溶液", "溶液的形成", "溶质、溶剂与乳化现象。"),
        ),
        edition="人教版", volume="下册", teacher="何俊", status="draft",
    ),
)

# At most a handful: the worker transcodes each of them when `make demo` starts.
MEDIA: tuple[DemoMedia, ...] = (
    DemoMedia("pujiang", "九年级数学上册（人教版）", "一元二次方程的解法：配方法", "video",
              "课堂实录：配方法（演示视频）", "peifangfa-ketang.mp4"),
    DemoMedia("xinghe", "三年级数学上册（人教版）", "分数的初步认识", "image",
              "板书：分数的初步认识", "fenshu-banshu.png"),
    DemoMedia("furong", "English Grade 7 Book 1 (2024 edition)", "Unit 3 My School", "image",
              "School map worksheet", "school-map.png"),
    DemoMedia("xinghe", "一年级音乐下册（人音版）", "《春晓》", "audio",
              "《春晓》范唱（演示音频）", "chunxiao-fanchang.wav"),
)

# Subtitle tracks of the demo video (20 s), in the SRT a teacher's subtitle tool writes:
# the lesson page plays them, and search finds the lesson by their words (try 完全平方).
DEMO_SUBTITLES: dict[str, dict[str, str]] = {
    "课堂实录：配方法（演示视频）": {
        "zh": "1\n00:00:01,000 --> 00:00:06,000\n同学们，今天我们用配方法解一元二次方程。\n\n"
        "2\n00:00:07,000 --> 00:00:13,000\n先把常数项移到右边，再在两边加上一次项系数一半的平方。\n\n"
        "3\n00:00:14,000 --> 00:00:19,500\n左边就成了完全平方式，开平方就能求出 x。\n",
        "en": "1\n00:00:01,000 --> 00:00:06,000\nToday we solve quadratic equations by completing the square.\n\n"
        "2\n00:00:07,000 --> 00:00:13,000\nMove the constant right, then add half the x coefficient, squared.\n\n"
        "3\n00:00:14,000 --> 00:00:19,500\nThe left side is now a perfect square: take the square root to find x.\n",
    },
}

# ffmpeg's built-in sources only: no input file, no network, a few seconds of CPU.
_FFMPEG_SOURCES: dict[str, tuple[list[str], str]] = {
    "video": (
        [
            "-f", "lavfi", "-i", "testsrc2=size=640x360:rate=25:duration=20",
            "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100:duration=20",
            "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
            "-c:a", "aac", "-b:a", "64k", "-shortest", "-movflags", "+faststart",
        ],
        ".mp4",
    ),
    "image": (["-f", "lavfi", "-i", "testsrc2=size=1280x720", "-frames:v", "1"], ".png"),
    "audio": (["-f", "lavfi", "-i", "sine=frequency=523.25:sample_rate=22050:duration=8", "-ac", "1"], ".wav"),
}


# --------------------------------------------------------------------------- seeding


@dataclass
class SeedReport:
    """What :func:`seed_demo` found and did; ``*_created`` are all zero on a re-run."""

    schools_created: int = 0
    schools_existing: int = 0
    users_created: int = 0
    users_existing: int = 0
    pairings: int = 0
    courses_created: int = 0
    courses_existing: int = 0
    lessons_created: int = 0
    textbooks: int = 0  # shipped textbooks imported (or updated in place) by this run
    materials_created: int = 0
    materials_existing: int = 0
    media_note: str = ""  # why generated media was skipped; empty when it was not
    accounts: list[DemoAccount] = field(default_factory=list)

    @property
    def schools(self) -> int:
        return self.schools_created + self.schools_existing

    @property
    def courses(self) -> int:
        return self.courses_created + self.courses_existing

    @property
    def created(self) -> int:
        return (self.schools_created + self.users_created + self.courses_created
                + self.lessons_created + self.materials_created)

    def summary(self) -> str:
        line = f"{self.schools} schools, {self.courses} courses ({self.courses_created} new)"
        if self.materials_created or self.materials_existing:
            line += f", {self.materials_created + self.materials_existing} media files ({self.materials_created} new)"
        return line


def seed_demo(session: Session, storage: Storage, *, media: bool = True) -> SeedReport:
    """Create the demo catalog through the services; existing rows are left as they are.

    ``media=False`` skips the generated video, image and audio files (and ffmpeg).
    The session is committed after the accounts, after each course and after
    each material, so an interrupted run resumes where it stopped.
    """
    report = SeedReport()
    schools = _seed_schools(session, report)
    users = _seed_accounts(session, schools, report)
    session.commit()
    textbooks = _seed_textbooks(session, report)
    for spec in COURSES:
        _seed_course(session, users[spec.school], schools[spec.school], spec, report, textbooks)
    if media:
        _seed_media(session, storage, schools, users, report)
    else:
        report.media_note = "media skipped (media=False)"
    return report


def _seed_schools(session: Session, report: SeedReport) -> dict[str, School]:
    schools: dict[str, School] = {}
    for spec in SCHOOLS:
        try:
            schools[spec.key] = accounts.get_school_by_name(session, spec.name)
            report.schools_existing += 1
        except NotFound:
            schools[spec.key] = accounts.create_school(
                session, spec.name, spec.kind, spec.region, spec.county
            )
            report.schools_created += 1
    for famous, rural in PAIRINGS:
        accounts.pair_schools(session, schools[famous], schools[rural])  # idempotent itself
        report.pairings += 1
    return schools


def _seed_accounts(
    session: Session, schools: dict[str, School], report: SeedReport
) -> dict[str, User]:
    """Create the demo users; returns each famous school's uploader by school key."""
    uploaders: dict[str, User] = {}
    for spec in ACCOUNTS:
        try:
            user = accounts.get_user_by_email(session, spec.email)
            report.users_existing += 1
        except NotFound:
            user = accounts.create_user(
                session, spec.email, schools[spec.school], spec.role, DEMO_PASSWORD
            )
            report.users_created += 1
        report.accounts.append(spec)
        if spec.role == "uploader":
            uploaders[spec.school] = user
    return uploaders


def _seed_textbooks(session: Session, report: SeedReport) -> dict[str, Textbook]:
    """The shipped textbooks (real tables of contents, hub/textbooks/data), imported in place.

    A re-run changes nothing.
    """
    books = {}
    for path in shipped_files():
        book = textbooks.import_file(session, path.name, path.read_bytes()).textbook
        books[book.key] = book
        report.textbooks += 1
    session.commit()
    return books


def _align(session: Session, uploader: User, course: Course, spec: DemoCourse, books: dict[str, Textbook]) -> None:
    """A course seeded before the textbooks follows its book, and its lessons their nodes, where nobody chose otherwise.

    Through the services the API and the forms use (update_course, update_lesson), so the
    demo's alignment is checked as an uploader's is and a published course gets its new
    version the same way. Only empty alignments are filled: what an uploader changed on
    the demo hub stays.
    """
    if not spec.textbook:
        return
    book = books[spec.textbook]
    if course.textbook_id is None:
        catalog.update_course(session, uploader, course.id, CourseUpdate(textbook=book.id))
    if course.textbook_id != book.id:
        return
    nodes = _node_ids(book)
    by_title = {lesson.title: lesson for lesson in course.lessons}
    for lesson_spec in spec.lessons:
        lesson = by_title.get(lesson_spec.title)
        if lesson is not None and lesson_spec.node and lesson.textbook_node_id is None:
            catalog.update_lesson(session, uploader, lesson.id, LessonUpdate(node=nodes[lesson_spec.node]))


def _node_ids(book: Textbook) -> dict[str, int]:
    return {node.key: node.id for node in book.nodes}


def _find_course(session: Session, school: School, title: str) -> Course | None:
    return session.scalar(
        select(Course).where(Course.school_id == school.id, Course.title == title).limit(1)
    )


def _seed_course(
    session: Session, uploader: User, school: School, spec: DemoCourse, report: SeedReport,
    books: dict[str, Textbook],
) -> None:
    existing = _find_course(session, school, spec.title)
    if existing is not None:
        report.courses_existing += 1
        # A demo hub seeded before the textbooks: its courses follow them now, as a new version.
        _align(session, uploader, existing, spec, books)
        session.commit()
        return
    course = catalog.create_course(
        session,
        uploader,
        CourseCreate(
            title=spec.title,
            summary=spec.summary,
            category=spec.category,
            subject=spec.subject,
            grades=list(spec.grades),
            edition=spec.edition,
            volume=spec.volume,
            language=spec.language,
            license=spec.license,
            teacher=spec.teacher,
            # Followed and attached as an uploader's form does it (the service checks both).
            textbook=books[spec.textbook].id if spec.textbook else None,
        ),
    )
    nodes = _node_ids(books[spec.textbook]) if spec.textbook else {}
    for lesson in spec.lessons:
        catalog.create_lesson(
            session, uploader, course.id,
            LessonCreate(
                title=lesson.title, summary=lesson.summary, unit=lesson.unit,
                node=nodes[lesson.node] if lesson.node and nodes else None,
            ),
        )
    session.flush()
    if spec.status in ("published", "withdrawn"):
        catalog.publish_course(session, uploader, course.id)
    if spec.status == "withdrawn":
        catalog.withdraw_course(session, uploader, course.id)
    # One transaction per course: a course never exists without its lessons.
    session.commit()
    report.courses_created += 1
    report.lessons_created += len(spec.lessons)


def _find_lesson(session: Session, school: School, course_title: str, lesson_title: str) -> Lesson | None:
    return session.scalar(
        select(Lesson)
        .join(Course)
        .where(Course.school_id == school.id, Course.title == course_title, Lesson.title == lesson_title)
        .limit(1)
    )


def _seed_media(
    session: Session,
    storage: Storage,
    schools: dict[str, School],
    uploaders: dict[str, User],
    report: SeedReport,
) -> None:
    todo: list[tuple[DemoMedia, Lesson]] = []
    for spec in MEDIA:
        lesson = _find_lesson(session, schools[spec.school], spec.course, spec.lesson)
        if lesson is None:  # the course was renamed or deleted by hand: leave it alone
            continue
        if any(m.title == spec.title for m in lesson.materials):
            report.materials_existing += 1
        else:
            todo.append((spec, lesson))
    if not todo:
        return
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        report.media_note = "media skipped: ffmpeg is not on PATH (install it, then run `hub demo` again)"
        return
    with tempfile.TemporaryDirectory(prefix="hub-demo-") as tmp:
        generated: dict[str, Path] = {}
        for spec, lesson in todo:
            path = generated.get(spec.kind)
            if path is None:
                try:
                    path = generated[spec.kind] = _generate(ffmpeg, spec.kind, Path(tmp))
                except (OSError, subprocess.SubprocessError) as exc:
                    report.media_note = f"media skipped: ffmpeg could not generate a {spec.kind}: {exc}"
                    return
            with path.open("rb") as fileobj:
                material = catalog.add_material(
                    session, storage, uploaders[spec.school], lesson.id, fileobj,
                    filename=spec.filename, title=spec.title,
                )
            for language, srt in DEMO_SUBTITLES.get(spec.title, {}).items():
                subtitles.attach_subtitle(
                    session, storage, uploaders[spec.school], material.id, srt.encode(), language=language
                )
            session.commit()  # the processing job is sent to the broker on commit
            report.materials_created += 1


def _generate(ffmpeg: str, kind: str, directory: Path) -> Path:
    """Make a small test file of ``kind`` with ffmpeg's built-in sources."""
    args, suffix = _FFMPEG_SOURCES[kind]
    out = directory / f"demo-{kind}{suffix}"
    try:
        subprocess.run(
            [ffmpeg, "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args, str(out)],
            check=True, capture_output=True, timeout=120,
        )
    except subprocess.CalledProcessError as exc:
        detail = exc.stderr.decode(errors="replace").strip().splitlines()
        raise subprocess.SubprocessError(detail[-1] if detail else f"exit status {exc.returncode}") from None
    return out


# --------------------------------------------------------------------------- running


def worker_command() -> list[str]:
    """The worker child's argv: the same interpreter, so the same installed hub."""
    return [sys.executable, "-m", "hub.cli", "worker", "--concurrency", "1"]


def _child_env(settings: Settings) -> dict[str, str]:
    """The environment plus every resolved setting, so the worker sees this instance.

    The app may have been built with overrides that are not in the environment;
    the secret key is left out (a generated one is read from HUB_DATA_DIR).
    """
    env = dict(os.environ)
    for f in fields(settings):
        if f.name == "secret_key":
            continue
        value = getattr(settings, f.name)
        env[f"HUB_{f.name.upper()}"] = str(value)
    return env


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the worker gets SIGTERM if the demo dies without cleaning up (kill -9)."""
    if sys.platform == "linux":
        import ctypes

        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
        except (OSError, AttributeError):
            pass


class _Worker:
    """The Celery worker child: started in its own process group, stopped exactly once."""

    def __init__(self, argv: Sequence[str], env: dict[str, str]) -> None:
        self._lock = threading.Lock()
        self.stopping = False
        # Own session: Ctrl-C in the terminal reaches the demo only, which then
        # stops the worker in order; the whole group (pool processes included)
        # can be signalled at once.
        self.process = subprocess.Popen(
            list(argv), env=env, start_new_session=True, preexec_fn=_die_with_parent
        )
        threading.Thread(target=self._watch, name="demo-worker-watch", daemon=True).start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _watch(self) -> None:
        code = self.process.wait()
        if not self.stopping:
            print(f"worker exited unexpectedly (status {code}); uploads will wait in the outbox "
                  "until `hub worker` runs", file=sys.stderr, flush=True)

    def stop(self, timeout: float = 15.0) -> None:
        with self._lock:
            if self.stopping:
                return
            self.stopping = True
        if self.process.poll() is not None:
            return
        print("stopping worker…", flush=True)
        # SIGTERM is Celery's warm shutdown: it finishes the current task step.
        self._signal_group(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # Not reaped yet, so the group id is still ours to signal.
            self._signal_group(signal.SIGKILL)
            self.process.wait()

    def _signal_group(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)


def _install_stop_signals() -> dict[int, Any]:
    """SIGTERM and SIGINT end the demo through ``finally`` instead of killing it outright."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    stopping = threading.Event()

    def handler(signum: int, _frame: FrameType | None) -> None:
        if stopping.is_set():
            return  # already shutting down; the worker stop is bounded in time
        stopping.set()
        raise SystemExit(128 + signum)

    previous: dict[int, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous[signum] = signal.signal(signum, handler)
    return previous


def _demo_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - only for display
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}/"


def _serve(app: Flask, host: str, port: int) -> None:
    from hub.serving import default_processes, serve

    settings: Settings = app.extensions["hub.settings"]
    processes = settings.web_processes or default_processes()
    # The server processes see this instance's settings as the worker does.
    serve("hub.cli:web_app", host, port, processes=processes, threads=8, connections=1000,
          env=_child_env(settings), app=app)  # fmt: skip


def run_demo(app: Flask, host: str, port: int) -> None:
    """Migrate, seed, start a worker, print how to get in, and serve until stopped."""
    from hub.db import get_database
    from hub.migrate import upgrade
    from hub.search import ensure_index

    settings: Settings = app.extensions["hub.settings"]
    print(f"data directory: {settings.data_dir}", flush=True)
    print("migrating…", flush=True)
    upgrade(settings.database_url)

    print("seeding…", end=" ", flush=True)
    with app.app_context(), get_database(app).session() as session:
        report = seed_demo(session, app.extensions["hub.storage"])
        admin = accounts.get_user_by_email(session, ACCOUNTS[0].email)
        token = accounts.create_token(session, admin)
        session.commit()
    print(report.summary(), flush=True)
    if report.media_note:
        print(report.media_note, flush=True)
    # A first run indexes through the worker (every seeded course is queued);
    # an index left by an older schema is rebuilt here, in the background.
    ensure_index(app)

    worker = _Worker(worker_command(), _child_env(settings))
    atexit.register(worker.stop)
    previous = _install_stop_signals()
    try:
        print(f"worker started (pid {worker.pid})", flush=True)
        names = {s.key: s.name for s in SCHOOLS}
        print(f"demo accounts (password: {DEMO_PASSWORD}):", flush=True)
        for account in report.accounts:
            print(f"  {account.email:32} {account.role:9} {names[account.school]}", flush=True)
        print(f"API token for {admin.email} (new on every start):", flush=True)
        print(f"  {token}", flush=True)
        print(f"open {_demo_url(host, port)}", flush=True)
        _serve(app, host, port)
    finally:
        worker.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        atexit.unregister(worker.stop)

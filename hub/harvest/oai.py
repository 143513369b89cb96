"""OAI-PMH 2.0 (https://www.openarchives.org/OAI/openarchivesprotocol.html): requests in, XML out.

One record per course that is or was public (:mod:`hub.harvest.models`), in ``oai_dc``
and IEEE LOM (``lom``; :mod:`hub.harvest.formats`).

- Identifiers: ``oai:{repository id}:course/{id}``; the repository id is
  HUB_OAI_REPOSITORY_ID, else HUB_PUBLIC_URL's host, else the request's host name.
  Set the setting on a hub reached under several names: identifiers must not change.
- Sets: ``subject:{code}`` (the curriculum's subject codes) and ``school:{id}``,
  below the parent sets ``subject`` and ``school``.
- Datestamps: when the course or anything in it last changed, in UTC, to the
  second; ``from`` and ``until`` are inclusive and may also be whole days.
- Deletions: ``persistent`` — a course withdrawn or deleted after it was public
  stays listed as a deleted record for good.
- Resumption tokens are stateless: the last record's (datestamp, id) and the
  request's arguments, signed with the hub's secret key so a harvester cannot
  forge one. They never expire, and a record that changes during a harvest moves
  after the cursor (it is sent again, never skipped).

Protocol errors answer 200 with an ``<error>`` element, as the protocol wants.
Error messages are for harvesting software and its operators, in English like the
protocol itself (the pages' Chinese catalog does not apply to them).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.orm import Session

from hub.harvest import services
from hub.harvest.formats import FORMATS, XSI, sub
from hub.harvest.models import HarvestRecord
from hub.harvest.services import CourseMetadata, RecordQuery
from hub.vocab import SUBJECTS

OAI = "http://www.openarchives.org/OAI/2.0/"
OAI_ID = "http://www.openarchives.org/OAI/2.0/oai-identifier"
# The protocol's own namespace is the default one, as in the specification's examples
# (ElementTree's default_namespace= cannot write the protocol's unqualified attributes).
for _prefix, _uri in (("", OAI), ("xsi", XSI), ("oai-identifier", OAI_ID)):
    ET.register_namespace(_prefix, _uri)

GRANULARITY = "YYYY-MM-DDThh:mm:ssZ"

# Arguments each verb takes: required, optional, exclusive (resumptionToken).
VERBS: dict[str, tuple[frozenset[str], frozenset[str], str | None]] = {
    "Identify": (frozenset(), frozenset(), None),
    "ListMetadataFormats": (frozenset(), frozenset({"identifier"}), None),
    "ListSets": (frozenset(), frozenset(), "resumptionToken"),
    "ListIdentifiers": (frozenset({"metadataPrefix"}), frozenset({"from", "until", "set"}), "resumptionToken"),
    "ListRecords": (frozenset({"metadataPrefix"}), frozenset({"from", "until", "set"}), "resumptionToken"),
    "GetRecord": (frozenset({"identifier", "metadataPrefix"}), frozenset(), None),
}
_DOMAIN = re.compile(r"^[a-zA-Z][a-zA-Z0-9\-]*(\.[a-zA-Z][a-zA-Z0-9\-]*)+$")


class OAIError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Repository:
    """What the hub says about itself, from the settings and the request."""

    name: str
    base_url: str  # the /oai endpoint
    admin_email: str
    repository_id: str
    course_url: Any  # Callable[[int], str]: a course page's absolute URL
    page_size: int
    secret_key: str


def repository_id(setting: str, public_url: str, host: str) -> str:
    if setting:
        return setting
    return urlsplit(public_url).hostname or host.split(":")[0] or "localhost"


# -- arguments ---------------------------------------------------------------------


def _single(args: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """Every argument once: a repeated argument is badArgument, a repeated verb badVerb."""
    if len(args.get("verb", [])) > 1:
        raise OAIError("badVerb", "The verb argument is repeated.")
    for name, values in args.items():
        if len(values) > 1:
            raise OAIError("badArgument", f"The argument {name} is repeated.")
    return {name: values[0] for name, values in args.items()}


def _check_arguments(verb: str, args: dict[str, str]) -> None:
    required, optional, exclusive = VERBS[verb]
    given = set(args) - {"verb"}
    if exclusive and exclusive in given:
        if given != {exclusive}:
            raise OAIError("badArgument", f"{exclusive} is an exclusive argument: no other may come with it.")
        return
    unknown = given - required - optional
    if unknown:
        raise OAIError("badArgument", f"{verb} does not take the argument {sorted(unknown)[0]}.")
    missing = required - given
    if missing:
        raise OAIError("badArgument", f"{verb} needs the argument {sorted(missing)[0]}.")


def parse_datestamp(value: str, name: str) -> tuple[datetime, timedelta]:
    """A ``from``/``until`` value → (its instant, its granularity's step)."""
    for pattern, step in (("%Y-%m-%dT%H:%M:%SZ", timedelta(seconds=1)), ("%Y-%m-%d", timedelta(days=1))):
        if len(value) == len(datetime(2000, 1, 1).strftime(pattern)):
            try:
                return datetime.strptime(value, pattern).replace(tzinfo=UTC), step
            except ValueError:
                break
    raise OAIError("badArgument", f"{name}={value!r} is not a UTC datestamp (YYYY-MM-DD or YYYY-MM-DDThh:mm:ssZ).")


def _record_query(args: dict[str, str]) -> RecordQuery | None:
    """The query of a list request; None when its set cannot hold a record (noRecordsMatch)."""
    start = end = None
    if "from" in args:
        start, from_step = parse_datestamp(args["from"], "from")
    if "until" in args:
        until, until_step = parse_datestamp(args["until"], "until")
        end = until + until_step  # inclusive to the granularity: until=…T10:00:00Z takes 10:00:00.999
        if start is not None and from_step != until_step:
            raise OAIError("badArgument", "from and until must have the same granularity.")
        if start is not None and start > until:
            raise OAIError("badArgument", "from is later than until.")
    spec = args.get("set")
    if spec is None:
        return RecordQuery(start=start, end=end)
    kind, colon, value = spec.partition(":")
    if kind == "subject" and not colon:
        return RecordQuery(start=start, end=end, any_subject=True)
    if kind == "school" and not colon:
        return RecordQuery(start=start, end=end, any_school=True)
    if kind == "subject" and value in SUBJECTS:
        return RecordQuery(start=start, end=end, subject=value)
    if kind == "school" and value.isascii() and value.isdigit() and len(value) <= 9:
        return RecordQuery(start=start, end=end, school_id=int(value))
    return None


def _metadata_prefix(args: dict[str, str]) -> str:
    prefix = args["metadataPrefix"]
    if prefix not in FORMATS:
        raise OAIError(
            "cannotDisseminateFormat", f"This repository does not disseminate {prefix!r}; try oai_dc or lom."
        )
    return prefix


def _course_id(repo: Repository, identifier: str) -> int:
    local = identifier.removeprefix(f"oai:{repo.repository_id}:course/")
    if local == identifier or not (local.isascii() and local.isdigit()) or len(local) > 18:
        raise OAIError("idDoesNotExist", f"{identifier!r} is not an identifier of this repository.")
    return int(local)


# -- resumption tokens -----------------------------------------------------------


def _serializer(repo: Repository) -> URLSafeSerializer:
    return URLSafeSerializer(repo.secret_key, salt="hub.harvest.oai")


def _make_token(repo: Repository, args: dict[str, str], last: HarvestRecord, cursor: int, size: int) -> str:
    state: dict[str, Any] = {k: args[k] for k in ("metadataPrefix", "from", "until", "set") if k in args}
    state["after"] = [last.datestamp.isoformat(), last.course_id]
    state["cursor"] = cursor
    state["size"] = size
    return str(_serializer(repo).dumps(state))


def _read_token(repo: Repository, token: str) -> tuple[dict[str, str], tuple[datetime, int], int, int]:
    try:
        state = _serializer(repo).loads(token)
        args = {k: str(state[k]) for k in ("metadataPrefix", "from", "until", "set") if k in state}
        stamp, course_id = state["after"]
        return args, (datetime.fromisoformat(stamp), int(course_id)), int(state["cursor"]), int(state["size"])
    except (BadSignature, KeyError, TypeError, ValueError):
        raise OAIError("badResumptionToken", "The resumption token is not one this repository issued.") from None


# -- XML -------------------------------------------------------------------------


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _header(parent: ET.Element, repo: Repository, record: HarvestRecord, deleted: bool) -> None:
    header = sub(parent, f"{{{OAI}}}header", **({"status": "deleted"} if deleted else {}))
    sub(header, f"{{{OAI}}}identifier", f"oai:{repo.repository_id}:course/{record.course_id}")
    sub(header, f"{{{OAI}}}datestamp", stamp(record.datestamp))
    if record.subject:
        sub(header, f"{{{OAI}}}setSpec", f"subject:{record.subject}")
    if record.school_id is not None:
        sub(header, f"{{{OAI}}}setSpec", f"school:{record.school_id}")


def _record(
    parent: ET.Element, repo: Repository, prefix: str, record: HarvestRecord, item: CourseMetadata | None
) -> None:
    element = sub(parent, f"{{{OAI}}}record")
    # A record the table calls live whose course is no longer public (a write that went
    # around the ORM) is answered as what it is now: gone.
    _header(element, repo, record, record.deleted or item is None)
    if not record.deleted and item is not None:
        FORMATS[prefix].write(sub(element, f"{{{OAI}}}metadata"), item, repo.course_url(item.course.id))


# -- verbs -----------------------------------------------------------------------


def _identify(session: Session, repo: Repository, body: ET.Element) -> None:
    identify = sub(body, f"{{{OAI}}}Identify")
    sub(identify, f"{{{OAI}}}repositoryName", repo.name)
    sub(identify, f"{{{OAI}}}baseURL", repo.base_url)
    sub(identify, f"{{{OAI}}}protocolVersion", "2.0")
    sub(identify, f"{{{OAI}}}adminEmail", repo.admin_email)
    earliest = services.earliest_datestamp(session) or datetime.now(UTC)
    sub(identify, f"{{{OAI}}}earliestDatestamp", stamp(earliest))
    sub(identify, f"{{{OAI}}}deletedRecord", "persistent")
    sub(identify, f"{{{OAI}}}granularity", GRANULARITY)
    if _DOMAIN.match(repo.repository_id):  # the oai-identifier scheme wants a domain name
        description = sub(identify, f"{{{OAI}}}description")
        scheme = sub(
            description,
            f"{{{OAI_ID}}}oai-identifier",
            **{f"{{{XSI}}}schemaLocation": f"{OAI_ID} http://www.openarchives.org/OAI/2.0/oai-identifier.xsd"},
        )
        sub(scheme, f"{{{OAI_ID}}}scheme", "oai")
        sub(scheme, f"{{{OAI_ID}}}repositoryIdentifier", repo.repository_id)
        sub(scheme, f"{{{OAI_ID}}}delimiter", ":")
        sub(scheme, f"{{{OAI_ID}}}sampleIdentifier", f"oai:{repo.repository_id}:course/1")


def _list_metadata_formats(session: Session, repo: Repository, args: dict[str, str], body: ET.Element) -> None:
    if "identifier" in args:
        record = services.get_record(session, _course_id(repo, args["identifier"]))
        if record is None:
            raise OAIError("idDoesNotExist", f"There is no record {args['identifier']!r}.")
        if record.deleted:
            # A deleted record keeps only its header: no format describes it any more.
            raise OAIError("noMetadataFormats", f"{args['identifier']!r} was deleted; it has no metadata.")
    formats = sub(body, f"{{{OAI}}}ListMetadataFormats")
    for prefix, known in FORMATS.items():
        element = sub(formats, f"{{{OAI}}}metadataFormat")
        sub(element, f"{{{OAI}}}metadataPrefix", prefix)
        sub(element, f"{{{OAI}}}schema", known.schema)
        sub(element, f"{{{OAI}}}metadataNamespace", known.namespace)


def _list_sets(session: Session, args: dict[str, str], body: ET.Element) -> None:
    if "resumptionToken" in args:  # the list of sets is always sent whole
        raise OAIError("badResumptionToken", "ListSets issues no resumption tokens.")
    sets = services.list_sets(session)
    element = sub(body, f"{{{OAI}}}ListSets")

    def add(spec: str, name: str) -> None:
        item = sub(element, f"{{{OAI}}}set")
        sub(item, f"{{{OAI}}}setSpec", spec)
        sub(item, f"{{{OAI}}}setName", name)

    add("subject", "学科 Subjects")
    for code in sets.subjects:
        zh, en = SUBJECTS.get(code, (code, code))
        add(f"subject:{code}", f"{zh} {en}")
    add("school", "学校 Schools")
    for school_id, name in sets.schools:
        add(f"school:{school_id}", name)


def _list(session: Session, repo: Repository, verb: str, args: dict[str, str], body: ET.Element) -> None:
    """ListIdentifiers and ListRecords: one page, and the token for the next."""
    after = None
    cursor = 0
    size: int | None = None
    if "resumptionToken" in args:
        args, after, cursor, size = _read_token(repo, args["resumptionToken"])
        if "metadataPrefix" not in args:
            raise OAIError("badResumptionToken", "The resumption token is not one this repository issued.")
    prefix = _metadata_prefix(args)
    query = _record_query(args)
    if query is None:
        raise OAIError("noRecordsMatch", f"There is no set {args.get('set')!r}.")
    query = replace(query, after=after)
    rows = services.page_records(session, query, repo.page_size + 1)
    more = len(rows) > repo.page_size
    rows = rows[: repo.page_size]
    if after is None:
        if not rows:
            raise OAIError("noRecordsMatch", "No record matches these arguments.")
        size = services.count_records(session, query)
    assert size is not None
    element = sub(body, f"{{{OAI}}}{verb}")
    if verb == "ListRecords":
        items = services.public_courses(session, [r.course_id for r in rows if not r.deleted])
        for row in rows:
            _record(element, repo, prefix, row, items.get(row.course_id))
    else:
        for row in rows:
            _header(element, repo, row, row.deleted)
    if more:
        token = _make_token(repo, {**args, "metadataPrefix": prefix}, rows[-1], cursor + len(rows), size)
        sub(element, f"{{{OAI}}}resumptionToken", token, completeListSize=str(size), cursor=str(cursor))
    elif after is not None:  # the last page of a resumed list says the list is complete
        sub(element, f"{{{OAI}}}resumptionToken", None, completeListSize=str(size), cursor=str(cursor))


def _get_record(session: Session, repo: Repository, args: dict[str, str], body: ET.Element) -> None:
    course_id = _course_id(repo, args["identifier"])
    prefix = _metadata_prefix(args)
    record = services.get_record(session, course_id)
    if record is None:
        raise OAIError("idDoesNotExist", f"There is no record {args['identifier']!r}.")
    items = {} if record.deleted else services.public_courses(session, [course_id])
    _record(sub(body, f"{{{OAI}}}GetRecord"), repo, prefix, record, items.get(course_id))


def respond(session: Session, repo: Repository, raw_args: Mapping[str, Sequence[str]]) -> bytes:
    """Answer one OAI-PMH request (GET query or POST form arguments, each with all its values)."""
    root = ET.Element(
        f"{{{OAI}}}OAI-PMH",
        {f"{{{XSI}}}schemaLocation": f"{OAI} http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd"},
    )
    sub(root, f"{{{OAI}}}responseDate", stamp(datetime.now(UTC)))
    request_element = sub(root, f"{{{OAI}}}request", repo.base_url)
    try:
        args = _single(raw_args)
        verb = args.get("verb")
        if verb not in VERBS:
            raise OAIError("badVerb", "Missing verb." if verb is None else f"{verb!r} is not an OAI-PMH verb.")
        _check_arguments(verb, args)
        # Echo the request's arguments only once they are known to be legal (the protocol's rule).
        for name, value in args.items():
            request_element.set(name, value)
        if verb == "Identify":
            _identify(session, repo, root)
        elif verb == "ListMetadataFormats":
            _list_metadata_formats(session, repo, args, root)
        elif verb == "ListSets":
            _list_sets(session, args, root)
        elif verb == "GetRecord":
            _get_record(session, repo, args, root)
        else:
            _list(session, repo, verb, args, root)
    except OAIError as error:
        if error.code in ("badVerb", "badArgument"):
            request_element.attrib.clear()
        for child in list(root)[2:]:
            root.remove(child)
        sub(root, f"{{{OAI}}}error", error.message, code=error.code)
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode").encode()

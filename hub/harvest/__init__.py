"""Metadata other systems can harvest: OAI-PMH 2.0, a sitemap and schema.org JSON-LD.

Regional platforms, libraries and search engines learn what the hub holds without
scraping pages: OAI-PMH (``/oai``) serves one record per course that is or was
public, in ``oai_dc`` and IEEE LOM, with sets by subject and school and incremental harvests by
datestamp; ``/sitemap.xml`` lists the public course and lesson pages for crawlers;
the course and lesson pages carry a schema.org ``LearningResource`` description.

What a harvester sees changes only through :class:`~hub.harvest.models.HarvestRecord`,
which an ``after_flush`` hook keeps in step with every writer (catalog services,
the media pipeline, sync imports), the way ``Lesson.changed_at`` is kept.
"""

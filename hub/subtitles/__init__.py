"""Subtitles of video and audio materials: WebVTT tracks uploaders attach (or SRT, converted).

`webvtt.py` reads, converts and checks the files (pure functions), `models.py` the
`subtitle` table, `services.py` the use cases shared by the API, the pages, sync and
search, `api.py` the JSON endpoints and the same-origin `.vtt` the players load,
`views.py` what lesson pages need (`?t=` links into a recording). The uploader's form
is in hub.uploads.views; search (hub.search.documents) indexes the transcripts, sync
(hub.sync.manifest) and course ZIPs (hub.media.course_download) carry the tracks.
"""

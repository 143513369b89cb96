"""nginx on loopback in front of the hub, serving blobs by X-Accel-Redirect.

The generated configuration is the README's deployment snippet plus what a
throw-away instance needs (its own pid, logs and temp paths, no daemon).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path


def nginx_binary() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)


def uploads_location(uploads: str) -> str:
    """tus to `hub serve --upload-port` (HUB_UPLOAD_PORT), streamed (README "Uploads without the spool")."""
    return f"""
        location /api/v1/uploads/ {{
            proxy_pass http://{uploads};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            client_max_body_size 0;
            # Each PATCH goes on to the hub as it arrives, which writes it into the upload
            # as it reads: no spool file in nginx nor in the hub. The hub's thread waits
            # on a slow client meanwhile; HUB_UPLOAD_THREADS bounds how many at once.
            proxy_request_buffering off;
            client_body_timeout 15s;         # a silent PATCH ends (its bytes kept), freeing the upload's lock
            proxy_read_timeout 300s;         # the last PATCH of a big file finishes it (S3: a copy)
        }}"""


def site_config(listen: str, hub: str, storage_dir: Path, prefix: str = "/_blobs/", uploads: str = "") -> str:
    """The part a deployment copies: internal blob location + proxy to the hub (+ its upload listener)."""
    return f"""
    server {{{uploads_location(uploads) if uploads else ""}
        listen {listen};
        # HUB_DOWNLOAD_OFFLOAD=x-accel-redirect: the hub answers a blob request with
        # X-Accel-Redirect: {prefix}ab/cd/<sha256> and nginx sends the file from here,
        # with Range and If-Range, while the hub's worker thread is already free.
        location {prefix} {{
            internal;
            alias {storage_dir}/;
            # nginx keeps the hub's Content-Type, Content-Disposition and
            # Cache-Control but not its ETag: put the sha256 back (If-Range compares
            # against it) instead of nginx's mtime-size tag, and send no
            # Last-Modified, as the hub does (a dated If-Range gets the whole file).
            etag off;
            add_header ETag $upstream_http_etag;
            add_header Last-Modified "";
        }}
        location / {{
            proxy_pass http://{hub};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            client_max_body_size 0;          # tus uploads are chunked by the client
            proxy_request_buffering off;     # stream upload chunks straight to the hub
        }}
    }}
"""


def write_config(
    workdir: Path, listen: str, hub: str, storage_dir: Path, prefix: str = "/_blobs/", uploads: str = ""
) -> Path:
    """A whole nginx.conf; ``uploads`` ("host:port") adds the tus location for the upload listener."""
    workdir.mkdir(parents=True, exist_ok=True)
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    # A throw-away instance reads blobs in the caller's (private) temp directories:
    # as root, keep the workers root too rather than nginx's default "nobody".
    user = "user root;" if os.geteuid() == 0 else ""
    config = f"""
{user}
worker_processes 1;
daemon off;
pid {workdir}/nginx.pid;
error_log {workdir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
    upstream hub_upstream {{ server {hub}; keepalive 16; }}
    {f"upstream hub_uploads {{ server {uploads}; keepalive 16; }}" if uploads else ""}
{site_config(listen, "hub_upstream", storage_dir, prefix, "hub_uploads" if uploads else "")}
}}
"""
    path = workdir / "nginx.conf"
    path.write_text(config)
    return path


def start_nginx(config: Path, log: Path) -> subprocess.Popen[bytes]:
    binary = nginx_binary()
    if binary is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    with log.open("wb") as out:
        return subprocess.Popen(
            [binary, "-c", str(config), "-p", str(config.parent)],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

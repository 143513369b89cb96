/* Media Source Extensions for the lesson players: seeks that fetch what they need (issue 14).
 *
 * Why. A rendition is a fragmented MP4 whose head (ftyp, moov, sidx) indexes every
 * fragment (hub/media/ffmpeg.py). A bare <video src> plays it, but Chromium's media
 * cache does not cancel its running download on a seek a little ahead of it: it waits
 * for that download to arrive there, up to 5 blocks of 32 KB, which at 256 kbit/s is
 * 4-5 s before the fragment the seek needs even starts (benchmarks/media/RESULTS.md).
 * Here the page reads the index itself and asks for exactly the fragment a seek needs,
 * aborting what it was reading, as DASH and HLS players do.
 *
 * Progressive enhancement. The server renders <video>/<audio> with a plain src (or
 * <source>s) and that is what plays without JavaScript, from a course ZIP opened from
 * disk (file:), without MediaSource or the codecs, or when anything here fails: the
 * element is then given back its plain URL at the same position (never a dead player).
 *
 * - The head is read with one range request (HEAD_BYTES, more only if the moov or sidx
 *   is longer); what came after the sidx is the first fragment's start and is kept.
 * - Codecs are read from the file (avcC and esds in the moov), not rendered by the
 *   hub: the string then always matches the bytes, also for renditions made by older
 *   encoder revisions or mirrored from another hub, and the page needs no new markup.
 * - Fragments are fetched with range requests, several in one request while they are
 *   consecutive, appended as bytes arrive. Read-ahead: READ_AHEAD_S (30 s) ahead of
 *   the position while playing; while paused nothing beyond the fragment on screen
 *   (a paused lesson does not spend a teacher's data allowance).
 * - On a seek to a fragment not buffered, the running request is aborted
 *   (AbortController) unless it is about to reach that fragment, and the fragment
 *   holding the target is fetched first.
 * - Through S3 the hub answers the blob URL with a 302 to a signed URL: the first
 *   response's final URL is reused for the following ranges (one redirect, not one per
 *   range, and the same signed URL as long as it works); a 403 (expired) resolves it
 *   again through the hub. S3 must allow this origin with CORS (README, "S3 storage").
 *
 * Used by player.js: HubStream.attach(element, url) returns a controller, or null when
 * the element keeps its plain src. element.dataset.stream says "mse" or "plain: why".
 */
(function () {
  "use strict";
  var HEAD_BYTES = 16384;
  var READ_AHEAD_S = 30;
  var MAX_REQUEST_BYTES = 1048576;  // a request spans consecutive fragments up to this much
  var KEEP_DOWNLOAD_BYTES = 16384;  // a seek keeps a download this close to its fragment (< 1 round trip of data)
  var KEEP_BEHIND_S = 60;           // on a full buffer, what is kept behind the position

  function u32(b, i) { return ((b[i] << 24) >>> 0) + (b[i + 1] << 16) + (b[i + 2] << 8) + b[i + 3]; }
  function u64(b, i) { return u32(b, i) * 4294967296 + u32(b, i + 4); }
  function type(b, i) { return String.fromCharCode(b[i], b[i + 1], b[i + 2], b[i + 3]); }

  /* The boxes in b[start, end): {type, start, end, body}; a box running past the data has end > b.length. */
  function boxes(b, start, end) {
    var out = [];
    var i = start;
    while (i + 8 <= Math.min(end, b.length)) {
      var size = u32(b, i);
      var header = 8;
      if (size === 1) { if (i + 16 > b.length) { break; } size = u64(b, i + 8); header = 16; }
      else if (size === 0) { size = end - i; }
      if (size < header) { break; }
      out.push({ type: type(b, i + 4), start: i, end: i + size, body: i + header });
      i += size;
    }
    return out;
  }
  function child(b, box, name) {
    var found = boxes(b, box.body, box.end).filter(function (c) { return c.type === name; });
    return found[0] || null;
  }
  function path(b, box, names) {
    for (var i = 0; box && i < names.length; i++) { box = child(b, box, names[i]); }
    return box;
  }

  function hex2(n) { return (n + 256).toString(16).slice(1); }

  /* An MPEG-4 descriptor's tag, the start of its payload and its end. */
  function descriptor(b, i) {
    var tag = b[i++];
    var length = 0;
    for (var n = 0; n < 4; n++) { var x = b[i++]; length = length * 128 + (x & 0x7f); if (!(x & 0x80)) { break; } }
    return { tag: tag, body: i, end: i + length };
  }

  /* "mp4a.40.2" from an esds box: the object type and, for AAC, the audio object type. */
  function audioCodec(b, esds) {
    var es = descriptor(b, esds.body + 4);
    if (es.tag !== 3) { return null; }
    var i = es.body + 2;
    var flags = b[i++];
    if (flags & 0x80) { i += 2; }
    if (flags & 0x40) { i += 1 + b[i]; }
    if (flags & 0x20) { i += 2; }
    var config = descriptor(b, i);
    if (config.tag !== 4) { return null; }
    var object = b[config.body];
    var codec = "mp4a." + object.toString(16);
    var specific = descriptor(b, config.body + 13);
    if (object === 0x40 && specific.tag === 5 && specific.body < specific.end) {
      var aot = b[specific.body] >> 3;
      if (aot === 31) { aot = 32 + (((b[specific.body] & 7) << 3) | (b[specific.body + 1] >> 5)); }
      codec += "." + aot;
    }
    return codec;
  }

  /* Each track of the moov: {id, handler, codec}. */
  function tracks(b, moov) {
    return boxes(b, moov.body, moov.end).filter(function (t) { return t.type === "trak"; }).map(function (trak) {
      var tkhd = child(b, trak, "tkhd");
      var hdlr = path(b, trak, ["mdia", "hdlr"]);
      var stsd = path(b, trak, ["mdia", "minf", "stbl", "stsd"]);
      var track = { id: tkhd ? u32(b, tkhd.body + (b[tkhd.body] === 1 ? 20 : 12)) : 0,
                    handler: hdlr ? type(b, hdlr.body + 8) : "", codec: null };
      var entry = stsd && boxes(b, stsd.body + 8, stsd.end)[0];
      if (entry && (entry.type === "avc1" || entry.type === "avc3")) {
        var avcC = boxes(b, entry.body + 78, entry.end).filter(function (c) { return c.type === "avcC"; })[0];
        if (avcC) { track.codec = entry.type + "." + hex2(b[avcC.body + 1]) + hex2(b[avcC.body + 2]) + hex2(b[avcC.body + 3]); }
      } else if (entry && entry.type === "mp4a") {
        var esds = boxes(b, entry.body + 28, entry.end).filter(function (c) { return c.type === "esds"; })[0];
        if (esds) { track.codec = audioCodec(b, esds); }
      }
      return track;
    });
  }

  /* The fragments a sidx indexes: [{start, end, time, until}] (bytes in the file, seconds). */
  function fragments(b, sidx) {
    var v = b[sidx.body];
    var i = sidx.body + 8;
    var scale = u32(b, i); i += 4;
    var time = v === 0 ? u32(b, i) : u64(b, i); i += v === 0 ? 4 : 8;
    var offset = sidx.end + (v === 0 ? u32(b, i) : u64(b, i)); i += v === 0 ? 4 : 8;
    var count = (b[i + 2] << 8) + b[i + 3]; i += 4;
    var out = [];
    for (var n = 0; n < count; n++, i += 12) {
      var size = u32(b, i);
      if (size & 0x80000000) { return null; }  // a sidx of sidxs: not what the hub writes
      var duration = u32(b, i + 4);
      out.push({ start: offset, end: offset + size, time: time / scale, until: (time + duration) / scale });
      offset += size; time += duration;
    }
    return out;
  }

  function concat(parts) {
    var total = 0;
    parts.forEach(function (p) { total += p.length; });
    var out = new Uint8Array(total);
    var at = 0;
    parts.forEach(function (p) { out.set(p, at); at += p.length; });
    return out;
  }

  function Stream(media, url) {
    this.media = media;
    this.plain = url;
    this.url = url.split("#")[0];
    var start = /#t=(\d+(?:\.\d+)?)/.exec(url);
    this.start = start ? Number(start[1]) : 0;
    this.resolved = null;
    this.request = null;     // {controller, next: byte offset reached, last: its last fragment index}
    this.queue = [];         // byte chunks waiting for the SourceBuffer
    this.loaded = [];        // fragment index -> its bytes were all handed to the SourceBuffer
    this.done = false;
    this.listeners = [];
    this.source = new window.MediaSource();
    this.objectUrl = URL.createObjectURL(this.source);
    var self = this;
    this.source.addEventListener("sourceopen", function () { self.opened(); });
    this.source.addEventListener("sourceclose", function () { self.closed(); });
    this.on("play", function () { self.wake(); });
    this.on("seeking", function () { self.seeking(); });
    this.on("timeupdate", function () { self.pump(); });
    this.on("error", function () { if (!self.done) { self.fallback("media-error-" + (media.error && media.error.code)); } });
    media.setAttribute("data-stream", "mse");
    media.src = this.objectUrl;
  }

  Stream.prototype.on = function (name, handler) {
    this.media.addEventListener(name, handler);
    this.listeners.push([name, handler]);
  };

  Stream.prototype.stop = function () {
    this.done = true;
    if (this.request) { this.request.controller.abort(); this.request = null; }
    this.listeners.forEach(function (l) { this.media.removeEventListener(l[0], l[1]); }, this);
    URL.revokeObjectURL(this.objectUrl);
  };

  /* Back to the plain URL, where the element was, playing if it was. `why` is a short code for
     developers (data-stream and the console), never shown to the reader: no words to translate. */
  Stream.prototype.fallback = function (why) {
    if (this.done) { return; }
    var media = this.media;
    var at = media.currentTime || this.start;
    var playing = !media.paused;
    this.stop();
    media.hubStream = null;
    media.setAttribute("data-stream", "plain: " + why);
    if (window.console) { window.console.warn("stream.js:", why); }
    if (at > 0) {
      media.addEventListener("loadedmetadata", function () { media.currentTime = at; }, { once: true });
    }
    media.src = this.plain;
    if (playing) { var p = media.play(); if (p && p.catch) { p.catch(function () {}); } }
  };

  /* Bytes [start, end) of the file, following the hub's redirect once (S3) and again on a 403. */
  Stream.prototype.fetchRange = function (start, end, signal) {
    var self = this;
    var ask = function (url) {
      return window.fetch(url, { headers: { Range: "bytes=" + start + "-" + (end - 1) }, signal: signal,
                                 credentials: "same-origin" });
    };
    var first = this.resolved;
    return ask(first || this.url).then(function (response) {
      if (first && (response.status === 403 || response.status === 401)) {
        self.resolved = null;  // the signed URL expired: ask the hub for a new one
        return ask(self.url);
      }
      return response;
    }).then(function (response) {
      if (response.status !== 206) { throw new Error("range-http-" + response.status); }
      if (!self.resolved && response.url && response.url !== self.url) { self.resolved = response.url; }
      return response;
    });
  };

  Stream.prototype.wanted = function () {
    return !this.media.paused || this.media.preload !== "none" || this.media.seeking;
  };

  Stream.prototype.wake = function () {
    if (this.head === undefined && this.source.readyState === "open" && this.wanted()) { this.readHead(); }
    this.pump();
  };

  /* Attached (again, after the page called load(): the same MediaSource, now empty). */
  Stream.prototype.opened = function () {
    if (this.done || this.buffer) { return; }  // an append reopening an ended source: nothing to redo
    if (this.head) { this.setup(); } else { this.wake(); }
  };

  Stream.prototype.closed = function () {
    if (this.done) { return; }
    if (this.request) { var r = this.request; this.request = null; r.controller.abort(); }
    this.buffer = null;
    this.queue = [];
    this.loaded = [];
  };

  /* The SourceBuffer and the init segment, from the head read once. */
  Stream.prototype.setup = function () {
    var self = this;
    this.buffer = this.source.addSourceBuffer(this.mime);
    this.buffer.addEventListener("updateend", function () { self.drain(); });
    this.buffer.addEventListener("error", function () { self.fallback("sourcebuffer-error"); });
    this.source.duration = this.fragments[this.fragments.length - 1].until;
    this.enqueue(this.head.subarray(0, this.initEnd), 0);  // ftyp and moov: no fragment's end
  };

  Stream.prototype.readHead = function () {
    var self = this;
    this.head = null;
    var parts = [];
    var got = 0;
    var more = function (end) {
      return self.fetchRange(got, end).then(function (r) { return r.arrayBuffer(); }).then(function (data) {
        parts.push(new Uint8Array(data));
        got += data.byteLength;
        var b = concat(parts);
        var top = boxes(b, 0, Infinity);
        var short = top.filter(function (x) { return x.type !== "moof" && x.type !== "mdat" && x.end > b.length; });
        if (short.length && data.byteLength > 0 && parts.length < 4) { return more(short[0].end + HEAD_BYTES); }
        return b;
      });
    };
    more(HEAD_BYTES).then(function (b) {
      if (self.done) { return; }
      var top = boxes(b, 0, b.length);
      var moov = top.filter(function (x) { return x.type === "moov"; })[0];
      var sidxs = top.filter(function (x) { return x.type === "sidx" && x.end <= b.length; });
      if (!moov || moov.end > b.length || !sidxs.length) { throw new Error("no-moov-sidx-at-start"); }
      var list = tracks(b, moov);
      var codecs = list.map(function (t) { return t.codec; });
      if (!codecs.length || codecs.indexOf(null) >= 0) { throw new Error("codecs-unread"); }
      var mime = (list.some(function (t) { return t.handler === "vide"; }) ? "video" : "audio") +
        '/mp4; codecs="' + codecs.join(",") + '"';
      if (!window.MediaSource.isTypeSupported(mime)) { throw new Error("unsupported: " + mime); }
      // Times from the video track's sidx (fragments start at its keyframes), else the first.
      var video = list.filter(function (t) { return t.handler === "vide"; })[0];
      var sidx = sidxs.filter(function (s) { return video && u32(b, s.body + 4) === video.id; })[0] || sidxs[0];
      self.fragments = fragments(b, sidx);
      if (!self.fragments || !self.fragments.length) { throw new Error("empty-sidx"); }
      self.head = b;
      self.initEnd = moov.end;
      self.mime = mime;
      self.on("loadedmetadata", function () {
        // A media fragment (#t=, a chapter link's page) says where to start, the first time.
        if (self.start && self.media.currentTime < self.start) { self.media.currentTime = self.start; }
        self.start = 0;
        window.setTimeout(function () { self.pump(); }, 0);
      });
      if (self.source.readyState === "open" && !self.buffer) { self.setup(); }
    }).catch(function (e) { self.fallback(String(e && e.message || e)); });
  };

  /* Queues a file's bytes that end at offset `end` (0: the init segment). */
  Stream.prototype.enqueue = function (bytes, end) {
    this.queue.push({ bytes: bytes, end: end });
    this.drain();
  };

  /* Hands what is queued to the SourceBuffer, and marks the fragments it completes. */
  Stream.prototype.drain = function () {
    if (this.done || !this.buffer || this.buffer.updating) { return; }
    if (this.pendingRemove) {
      var r = this.pendingRemove;
      this.pendingRemove = null;
      try { this.buffer.remove(r[0], r[1]); return; } catch (e) { /* fall through: append again */ }
    }
    if (!this.queue.length) { this.pump(); return; }
    var queued = this.queue;
    try {
      this.buffer.appendBuffer(concat(queued.map(function (q) { return q.bytes; })));  // reopens an ended source
    } catch (e) {
      if (e && e.name === "QuotaExceededError") {
        // Full (a long lesson watched far): drop what is well behind the position, then append again.
        var behind = this.media.currentTime - KEEP_BEHIND_S;
        if (behind > 1) { this.pendingRemove = [0, behind]; this.loaded = []; window.setTimeout(this.drain.bind(this), 0); }
        else { window.setTimeout(this.drain.bind(this), 1000); }
        return;
      }
      this.fallback("append: " + (e && e.name));
      return;
    }
    this.queue = [];
    var self = this;
    this.appending = [];
    queued.forEach(function (q) {
      self.fragments.forEach(function (f, i) {
        if (f.end <= q.end && f.end > q.end - q.bytes.length) { self.loaded[i] = true; self.appending.push(i); }
      });
    });
  };

  Stream.prototype.indexAt = function (t) {
    var list = this.fragments;
    var i = 0;
    while (i + 1 < list.length && list[i + 1].time <= t + 0.001) { i++; }
    return i;
  };

  Stream.prototype.buffered = function (t) {
    var ranges = this.buffer ? this.buffer.buffered : null;
    for (var i = 0; ranges && i < ranges.length; i++) {
      if (ranges.start(i) <= t + 0.1 && t < ranges.end(i)) { return true; }
    }
    return false;
  };

  /* Fragment i was appended whole. Not asked of `buffered`: a fragment whose times the browser
     shifts a little (an edit list) must not be fetched again and again. Chromium evicts nothing
     below its quota (150 MB of video, 12 MB of audio; a 45-minute 360p rendition is 8 MB), and a
     full buffer forgets what it drops (drain). */
  Stream.prototype.present = function (i) {
    return !!this.loaded[i];
  };

  /* A seek: keep the running request if it is about to reach the target's fragment, else abort it. */
  Stream.prototype.seeking = function () {
    if (!this.fragments) { this.wake(); return; }
    var t = this.media.currentTime;
    var i = this.indexAt(t);
    var request = this.request;
    if (request && !(this.present(i) || this.buffered(t))) {
      var target = this.fragments[i].start;
      var near = request.first <= i && i <= request.last && target - request.next <= KEEP_DOWNLOAD_BYTES;
      if (!near) { this.abortRequest(); }
    }
    this.pump();
  };

  Stream.prototype.abortRequest = function () {
    var request = this.request;
    if (!request) { return; }
    this.request = null;
    request.controller.abort();
    // Mid-fragment: the parser must start afresh at the next fragment's moof.
    this.queue = [];
    if (this.buffer && this.buffer.updating) {
      // abort() cuts the append in progress short: what it was completing is not in.
      (this.appending || []).forEach(function (i) { this.loaded[i] = false; }, this);
    }
    try { if (this.source.readyState === "open") { this.buffer.abort(); } } catch (e) { /* nothing to reset */ }
  };

  /* Starts the next request when one is needed: from the first fragment not buffered at or after
     the position, while within READ_AHEAD_S (or only the position's fragment while paused). */
  Stream.prototype.pump = function () {
    var media = this.media;
    // Fragments only once the init segment is in (the element has its metadata and any resume seek).
    if (this.done || !this.buffer || this.request || media.readyState < 1) { return; }
    var t = media.currentTime;
    var list = this.fragments;
    var i = this.indexAt(t);
    // Playing, seeking, or starting (preload=auto): else nothing, so a paused page spends no data.
    var reading = !media.paused || media.seeking || (media.readyState < 2 && media.preload === "auto");
    var horizon = media.paused ? t : t + READ_AHEAD_S;
    while (i < list.length && this.present(i) && list[i].time <= horizon) { i++; }
    if (i >= list.length) { this.finish(); return; }
    if (!reading || list[i].time > horizon) { return; }
    var last = i;
    while (last + 1 < list.length && !this.loaded[last + 1] && list[last + 1].time <= horizon &&
           list[last + 1].end - list[i].start <= MAX_REQUEST_BYTES) { last++; }
    this.fetchFragments(i, last);
  };

  Stream.prototype.finish = function () {
    // Once the last fragment is in: the element can then end (a later append reopens the source).
    if (this.source.readyState !== "open" || this.buffer.updating || this.queue.length) { return; }
    if (!this.loaded[this.fragments.length - 1]) { return; }
    try { this.source.endOfStream(); } catch (e) { /* already ended */ }
  };

  Stream.prototype.fetchFragments = function (first, last) {
    var self = this;
    var start = this.fragments[first].start;
    var end = this.fragments[last].end;
    var request = { controller: new AbortController(), first: first, last: last, next: start };
    this.request = request;
    // The head read may already hold the first fragment's beginning.
    if (start < this.head.length) {
      var from = Math.min(end, this.head.length);
      this.enqueue(this.head.subarray(start, from), from);
      request.next = from;
      if (from >= end) { this.request = null; return; }
    }
    this.fetchRange(request.next, end, request.controller.signal).then(function (response) {
      var reader = response.body.getReader();
      var step = function () {
        return reader.read().then(function (chunk) {
          if (self.request !== request) { reader.cancel().catch(function () {}); return; }
          if (chunk.done) {
            if (request.next < end) { throw new Error("range-ended-early"); }
            self.request = null;
            self.pump();
            return;
          }
          request.next += chunk.value.length;
          self.enqueue(chunk.value, request.next);
          return step();
        });
      };
      return step();
    }).catch(function (e) {
      if (self.request !== request || (e && e.name === "AbortError")) { return; }
      self.fallback("fetch: " + (e && e.message || e));
    });
  };

  window.HubStream = {
    /* Plays `url` in `media` through MSE; null (and the element untouched) where it cannot. */
    attach: function (media, url) {
      if (media.hubStream) { media.hubStream.stop(); media.hubStream = null; }
      if (!window.MediaSource || !window.fetch || !window.AbortController || !url ||
          !/^https?:$/.test(window.location.protocol) || !window.MediaSource.isTypeSupported('video/mp4; codecs="avc1.42E01E,mp4a.40.2"')) {
        media.setAttribute("data-stream", "plain: no-mediasource");
        return null;
      }
      media.hubStream = new Stream(media, url);
      return media.hubStream;
    },
  };
})();

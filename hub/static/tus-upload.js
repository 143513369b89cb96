/*
 * A small tus 1.0 client for the lesson upload page (no library, no CDN).
 *
 * Without this script the form posts the file in one request (small files only).
 * With it, files of any size go through /api/v1/uploads/ in chunks: a progress bar,
 * pause and resume, automatic retry with growing delays after a dropped connection,
 * and resume after a closed laptop or a reloaded page (the upload URL is kept in
 * localStorage under the file's name, size and date). The finished upload's URL is
 * then posted to the same form endpoint, and the material's processing is followed.
 *
 * Pieces follow the link. `hub serve` (waitress) and a reverse proxy in front of it
 * read a request's whole body before the hub sees any of it, so the bytes of a PATCH
 * that does not finish are lost: pausing used to abort the piece in flight, and 7 %
 * of a 38 MB lesson went again (5 MiB pieces; issue 16). Now each PATCH carries
 * about PIECE_SECONDS of the measured speed (small on a slow link, up to
 * data-chunk-size on a fast one), and Pause lets the piece in flight finish when it
 * will within PAUSE_WAIT_S: nothing is sent twice, and the bar never goes back.
 * A piece that would take longer (the link slowed down under it) is aborted and
 * resumed from the server's offset, which HEAD gives.
 *
 * ES5 on purpose: the page must work on old Android phones and PCs.
 */
(function () {
  'use strict';

  var form = document.getElementById('upload-form');
  if (!form || !window.XMLHttpRequest || !window.FormData || !window.Blob || !Blob.prototype.slice) {
    return; // the plain form keeps working
  }
  var endpoint = form.getAttribute('data-endpoint');
  var api = form.getAttribute('data-api');
  var lesson = form.getAttribute('data-lesson');
  var maxChunk = parseInt(form.getAttribute('data-chunk-size'), 10);
  var maxSize = parseInt(form.getAttribute('data-max-size'), 10);
  // The page's words in its language (hub/uploads/messages.py): this script has none of its own.
  var messages = JSON.parse(form.getAttribute('data-messages') || '{}');
  var csrf = form.querySelector('input[name=csrf_token]').value;
  var fileInput = form.querySelector('input[type=file]');
  var transfers = document.getElementById('transfers');
  var materials = document.getElementById('materials');
  // Seconds to wait before each retry: quick for a blip, patient for a long outage.
  var RETRY_DELAYS = [1, 2, 4, 8, 15, 30, 30, 60, 60, 60, 120, 120, 300];
  // A request that makes no progress for this long is presumed dead and retried.
  var STALL_MS = 60000;
  var POLL_MS = 5000;
  // Seconds of transfer per PATCH: a request's round trip (0.3 s on a rural mobile link)
  // stays under a tenth of it, and what a page closed mid-piece loses stays a few seconds.
  var PIECE_SECONDS = 4;
  var MIN_CHUNK = 64 * 1024;
  // The first piece, before any speed is known: 8 s at 256 kbit/s, 0.25 s at 8 Mbit/s.
  var FIRST_CHUNK = 256 * 1024;
  // Pause waits for the piece in flight when it should end within this many seconds.
  var PAUSE_WAIT_S = 10;
  // Speed is measured over this window: long enough to smooth a mobile link's bursts,
  // short enough to follow it when it changes.
  var SPEED_WINDOW_MS = 15000;

  var note = form.querySelector('.nojs-note');
  if (note) { note.hidden = true; }
  fileInput.multiple = true;

  function storage() {
    try { return window.localStorage; } catch (e) { return null; } // private mode may refuse
  }

  function remember(key, value) {
    var s = storage();
    if (!s) { return; }
    try {
      if (value) { s.setItem(key, value); } else { s.removeItem(key); }
    } catch (e) { /* quota: resuming after a reload just starts over */ }
  }

  function base64(text) {
    // UTF-8 first: file names are often Chinese.
    return window.btoa(unescape(encodeURIComponent(text)));
  }

  function absolute(url) {
    var a = document.createElement('a');
    a.href = url;
    return a.href;
  }

  function errorMessage(xhr, fallback) {
    try {
      return JSON.parse(xhr.responseText).error.message;
    } catch (e) {
      return t('http_error', {message: fallback, status: xhr.status});
    }
  }

  // A message by key, its %(name)s placeholders filled from values.
  function t(key, values) {
    var text = messages[key] || key;
    return text.replace(/%\((\w+)\)s/g, function (whole, name) {
      return values && Object.prototype.hasOwnProperty.call(values, name) ? String(values[name]) : whole;
    });
  }

  // A code of the data model (status, kind) as the page shows it.
  function label(table, code) {
    return (messages[table] && messages[table][code]) || code;
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text) { node.appendChild(document.createTextNode(text)); }
    return node;
  }

  // Bytes as the pages write them (hub.i18n.filesize): 800 B, 12.3 KB, 4.5 MB.
  function size(bytes) {
    var units = ['KB', 'MB', 'GB'];
    if (bytes < 1024) { return Math.round(bytes) + ' B'; }
    var value = bytes;
    for (var i = 0; i < units.length; i += 1) {
      value /= 1024;
      if (value < 1024 || i === units.length - 1) { return value.toFixed(1) + ' ' + units[i]; }
    }
    return '';
  }

  // Time left, as precise as someone waiting cares: 45 s, 3 min 20 s, 1 h 5 min.
  function timeLeft(seconds) {
    var total = seconds < 60 ? Math.ceil(seconds / 5) * 5 : seconds < 600 ? Math.ceil(seconds / 10) * 10
      : Math.ceil(seconds / 60) * 60;
    var h = Math.floor(total / 3600);
    var m = Math.floor((total % 3600) / 60);
    var s = total % 60;
    if (h) { return t('h_m', {h: h, m: m}); }
    if (m) { return s ? t('m_s', {m: m, s: s}) : t('m', {m: m}); }
    return t('s', {s: Math.max(s, 1)});
  }

  function Transfer(file, title) {
    this.file = file;
    this.title = title;
    this.key = 'hub-tus:' + lesson + ':' + file.name + ':' + file.size + ':' + file.lastModified;
    var s = storage();
    this.url = s ? s.getItem(this.key) : null;
    this.offset = 0;
    this.attempt = 0;
    this.paused = false;
    this.pausing = false;
    this.xhr = null;
    this.timer = null;
    this.chunk = Math.min(FIRST_CHUNK, maxChunk);
    this.pieceSpeed = 0; // bytes per second of the last whole piece
    this.samples = []; // [time in ms, bytes sent] over the last SPEED_WINDOW_MS

    var item = el('li');
    var top = el('div', 'row');
    top.appendChild(el('b', '', file.name));
    this.pct = el('span', 'pct', '0 %');
    top.appendChild(this.pct);
    item.appendChild(top);
    this.bar = el('progress');
    this.bar.max = 100;
    this.bar.value = 0;
    item.appendChild(this.bar);
    var bottom = el('div', 'row');
    this.state = el('span', 'state', t('starting'));
    bottom.appendChild(this.state);
    this.rate = el('span', 'rate');
    bottom.appendChild(this.rate);
    var buttons = el('span');
    this.pauseButton = el('button', 'pause', t('pause'));
    this.pauseButton.type = 'button';
    this.resumeButton = el('button', 'resume', t('resume'));
    this.resumeButton.type = 'button';
    this.resumeButton.hidden = true;
    buttons.appendChild(this.pauseButton);
    buttons.appendChild(this.resumeButton);
    bottom.appendChild(buttons);
    item.appendChild(bottom);
    this.item = item;
    transfers.appendChild(item);
    // On a phone the form fills the screen: bring the progress box into view, all of it.
    if (item.scrollIntoView) { item.scrollIntoView(false); }

    var self = this;
    this.pauseButton.onclick = function () { self.pause(); };
    this.resumeButton.onclick = function () { self.start(); };
  }

  Transfer.prototype.say = function (text) {
    this.state.textContent = text;
  };

  Transfer.prototype.show = function (sent) {
    var pct = this.file.size ? Math.floor(100 * sent / this.file.size) : 100;
    this.bar.value = pct;
    this.pct.textContent = pct + ' %';
    this.item.setAttribute('data-sent', String(sent)); // for tests and for a reader of the DOM
  };

  // Bytes per second over the last SPEED_WINDOW_MS, or 0 before there is enough to tell.
  Transfer.prototype.speed = function () {
    var s = this.samples;
    if (s.length < 2 || s[s.length - 1][0] - s[0][0] < 1500) { return 0; }
    return 1000 * (s[s.length - 1][1] - s[0][1]) / (s[s.length - 1][0] - s[0][0]);
  };

  Transfer.prototype.progress = function (sent) {
    var now = Date.now();
    this.samples.push([now, sent]);
    while (this.samples.length > 2 && now - this.samples[1][0] > SPEED_WINDOW_MS) { this.samples.shift(); }
    this.show(sent);
    var speed = this.speed();
    if (speed > 0) {
      this.rate.textContent = t('rate', {speed: size(speed), left: timeLeft((this.file.size - sent) / speed)});
    }
  };

  // A measurement starts afresh after a pause or a dropped connection: the time in between is no speed.
  Transfer.prototype.still = function () {
    this.samples = [];
    this.rate.textContent = '';
  };

  Transfer.prototype.start = function () {
    this.paused = false;
    this.attempt = 0;
    this.item.className = '';
    this.pauseButton.hidden = false;
    this.resumeButton.hidden = true;
    if (this.pausing) {
      // Resumed before the piece in flight ended: it simply goes on.
      clearTimeout(this.timer);
      this.pausing = false;
      this.say(t('uploading'));
      return;
    }
    if (this.file.size > maxSize) {
      this.fail(t('too_large'));
      return;
    }
    this.next();
  };

  Transfer.prototype.next = function () {
    if (this.url) { this.head(); } else { this.create(); }
  };

  Transfer.prototype.pause = function () {
    this.pauseButton.hidden = true;
    this.resumeButton.hidden = false;
    // Right after a resume the window is empty: the last piece's speed stands in; with
    // neither (the first piece, small on purpose) the piece is waited for too.
    var speed = this.speed() || this.pieceSpeed;
    if (this.piece && (!speed || (this.piece.end - this.piece.sent) / speed <= PAUSE_WAIT_S)) {
      // The piece in flight ends soon: let it, or the server (which only sees whole
      // request bodies) would drop its bytes and they would go again after Resume.
      this.pausing = true;
      this.say(t('pausing'));
      // The estimate is the recent speed: if the link collapsed under the piece, stop
      // waiting for it after a while, as a person pressing Pause would expect.
      var self = this;
      this.timer = setTimeout(function () { if (self.pausing) { self.stop(); } }, 1500 * PAUSE_WAIT_S);
      return;
    }
    this.stop();
  };

  // Pause now: a piece in flight is aborted, and Resume asks the server where to go on from.
  Transfer.prototype.stop = function () {
    this.pausing = false;
    this.paused = true;
    this.piece = null;
    clearTimeout(this.timer);
    if (this.xhr) { this.xhr.abort(); }
    this.still();
    this.say(t('paused'));
    this.pauseButton.hidden = true;
    this.resumeButton.hidden = false;
    this.resumeButton.textContent = t('resume'); // it may still say Retry from an earlier failure
  };

  Transfer.prototype.fail = function (message) {
    this.item.className = 'failed';
    this.say(message);
    this.pauseButton.hidden = true;
    this.resumeButton.hidden = false;
    this.resumeButton.textContent = t('retry');
  };

  Transfer.prototype.retry = function () {
    if (this.paused) { return; }
    this.piece = null;
    if (this.pausing) { this.stop(); return; } // the connection went: nothing left to wait for
    this.still();
    if (this.attempt >= RETRY_DELAYS.length) {
      this.fail(t('gave_up'));
      return;
    }
    var delay = RETRY_DELAYS[this.attempt];
    this.attempt += 1;
    this.say(t('retrying_in', {seconds: delay}));
    var self = this;
    this.timer = setTimeout(function () { self.next(); }, delay * 1000);
  };

  // One request; a network error, a stall, 423 (locked) or a 5xx means "retry".
  Transfer.prototype.send = function (method, url, headers, body, done) {
    var self = this;
    var xhr = new XMLHttpRequest();
    var watchdog = null;
    function alive() {
      clearTimeout(watchdog);
      watchdog = setTimeout(function () { xhr.abort(); self.retry(); }, STALL_MS);
    }
    xhr.open(method, url, true);
    xhr.setRequestHeader('Tus-Resumable', '1.0.0');
    xhr.setRequestHeader('X-CSRFToken', csrf);
    for (var name in headers) {
      if (Object.prototype.hasOwnProperty.call(headers, name)) { xhr.setRequestHeader(name, headers[name]); }
    }
    xhr.onload = function () {
      clearTimeout(watchdog);
      self.xhr = null;
      // 507: the server's disk stays full until someone makes room; say so instead of retrying.
      if (xhr.status === 423 || (xhr.status >= 500 && xhr.status !== 507)) { self.retry(); return; }
      done(xhr);
    };
    xhr.onerror = function () { clearTimeout(watchdog); self.xhr = null; self.retry(); };
    xhr.onabort = function () { clearTimeout(watchdog); self.xhr = null; };
    if (xhr.upload && body) {
      xhr.upload.onprogress = function (event) {
        alive();
        if (self.piece) { self.piece.sent = self.offset + event.loaded; }
        self.progress(self.offset + event.loaded);
      };
    }
    this.xhr = xhr;
    alive();
    xhr.send(body || null);
  };

  Transfer.prototype.create = function () {
    var self = this;
    var metadata = 'filename ' + base64(this.file.name);
    if (this.file.type) { metadata += ',filetype ' + base64(this.file.type); }
    this.say(t('connecting'));
    this.send('POST', endpoint, {'Upload-Length': String(this.file.size), 'Upload-Metadata': metadata}, null,
      function (xhr) {
        if (xhr.status !== 201) { self.fail(errorMessage(xhr, t('could_not_start'))); return; }
        self.url = absolute(xhr.getResponseHeader('Location'));
        remember(self.key, self.url);
        self.offset = 0;
        self.patch();
      });
  };

  Transfer.prototype.head = function () {
    var self = this;
    this.say(t('resuming'));
    this.send('HEAD', this.url, {}, null, function (xhr) {
      if (xhr.status === 404 || xhr.status === 410) {
        // Expired or removed on the server: start again from the first byte.
        remember(self.key, null);
        self.url = null;
        self.create();
        return;
      }
      if (xhr.status !== 200) { self.fail(errorMessage(xhr, t('could_not_resume'))); return; }
      self.offset = parseInt(xhr.getResponseHeader('Upload-Offset'), 10);
      self.show(self.offset);
      if (self.offset >= self.file.size) { self.finish(); } else { self.patch(); }
    });
  };

  Transfer.prototype.patch = function () {
    if (this.paused) { return; }
    var self = this;
    var start = this.offset;
    var end = Math.min(start + this.chunk, this.file.size);
    var began = Date.now();
    this.piece = {end: end, sent: start};
    if (!this.pausing) { this.say(t('uploading')); }
    this.send('PATCH', this.url,
      {'Upload-Offset': String(start), 'Content-Type': 'application/offset+octet-stream'},
      this.file.slice(start, end),
      function (xhr) {
        self.piece = null;
        if (xhr.status === 409) { self.head(); return; } // we and the server disagree: ask it
        if (xhr.status !== 204) { self.pausing = false; self.fail(errorMessage(xhr, t('upload_failed'))); return; }
        self.attempt = 0;
        self.offset = parseInt(xhr.getResponseHeader('Upload-Offset'), 10);
        // The next piece takes about PIECE_SECONDS at the speed this one went (its
        // round trip included), within MIN_CHUNK and the page's data-chunk-size.
        var seconds = Math.max(0.05, (Date.now() - began) / 1000);
        self.pieceSpeed = (self.offset - start) / seconds;
        var fit = Math.round(self.pieceSpeed * PIECE_SECONDS);
        self.chunk = Math.max(MIN_CHUNK, Math.min(maxChunk, fit));
        self.progress(self.offset);
        if (self.offset >= self.file.size) { self.pausing = false; self.finish(); return; }
        if (self.pausing) { self.stop(); return; }
        self.patch();
      });
  };

  Transfer.prototype.finish = function () {
    var self = this;
    this.show(this.file.size);
    this.still();
    this.pauseButton.hidden = true;
    this.say(t('adding'));
    var data = new FormData();
    data.append('csrf_token', csrf);
    data.append('title', this.title);
    data.append('upload', this.url);
    var xhr = new XMLHttpRequest();
    xhr.open('POST', form.action, true);
    xhr.setRequestHeader('Accept', 'application/json');
    xhr.setRequestHeader('X-CSRFToken', csrf);
    xhr.onload = function () {
      if (xhr.status !== 201) { self.fail(errorMessage(xhr, t('could_not_add'))); return; }
      remember(self.key, null);
      var material = JSON.parse(xhr.responseText);
      self.say(t('added'));
      addMaterial(material);
    };
    xhr.onerror = function () { self.retryFinish(); };
    xhr.send(data);
  };

  Transfer.prototype.retryFinish = function () {
    var self = this;
    this.say(t('retrying'));
    // Safe to repeat: the server answers a repeated request with the material it made.
    this.timer = setTimeout(function () { self.finish(); }, 5000);
  };

  function addMaterial(material) {
    var empty = materials.querySelector('.empty');
    if (empty) { materials.removeChild(empty); }
    var item = el('li');
    item.setAttribute('data-material', material.id);
    item.id = 'material-' + material.id;
    item.setAttribute('data-status', material.status);
    item.appendChild(el('b', '', material.title));
    item.appendChild(document.createTextNode(' '));
    var meta = el('span', 'meta', label('kind', material.kind) + ' · ');
    meta.appendChild(el('span', 'status', label('status', material.status)));
    item.appendChild(meta);
    item.appendChild(el('p', 'error', material.error || ''));
    materials.appendChild(item);
    watch(item);
  }

  // A settled material as the server shows it: its renditions (sizes, SSIM, download
  // times) and any error in the page's language, from the page itself, not re-made here.
  function refresh(item, error) {
    var xhr = new XMLHttpRequest();
    // The API's stored English, only when the page itself cannot be had.
    function fallback() { item.querySelector('.error').textContent = error; }
    xhr.open('GET', window.location.pathname, true);
    xhr.responseType = 'document';
    xhr.onload = function () {
      var fresh = xhr.status === 200 && xhr.response && xhr.response.getElementById(item.id);
      if (!fresh) { fallback(); return; }
      if (item.parentNode) { item.parentNode.replaceChild(document.importNode(fresh, true), item); }
    };
    xhr.onerror = fallback;
    xhr.send();
  }

  // Follow a material's processing until it is ready or failed.
  function watch(item) {
    var id = item.getAttribute('data-material');
    function poll() {
      var xhr = new XMLHttpRequest();
      xhr.open('GET', api + '/materials/' + id, true);
      xhr.setRequestHeader('Accept', 'application/json');
      xhr.onload = function () {
        if (xhr.status !== 200) { setTimeout(poll, POLL_MS * 4); return; }
        var m = JSON.parse(xhr.responseText);
        item.setAttribute('data-status', m.status);
        item.querySelector('.status').textContent = label('status', m.status) + (m.status === 'processing' ? ' ' + m.progress + '%' : '');
        if (m.status === 'pending' || m.status === 'processing') { setTimeout(poll, POLL_MS); return; }
        refresh(item, m.error || '');
      };
      xhr.onerror = function () { setTimeout(poll, POLL_MS * 4); };
      xhr.send();
    }
    setTimeout(poll, POLL_MS);
  }

  var busy = materials.querySelectorAll('[data-status=pending], [data-status=processing]');
  for (var i = 0; i < busy.length; i += 1) { watch(busy[i]); }

  form.addEventListener('submit', function (event) {
    var files = fileInput.files;
    if (!files || !files.length) { return; } // the browser says the field is required
    event.preventDefault();
    var title = form.elements.title.value;
    for (var j = 0; j < files.length; j += 1) {
      new Transfer(files[j], files.length === 1 ? title : '').start();
    }
    form.reset();
  });
}());

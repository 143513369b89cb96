/* The lesson page's players, improved: the page works without this file.
 *
 * - speed buttons (0.75-2x), the choice kept on this device for every lesson;
 * - chapter links seek in place instead of reloading the page (their href, ?m=&t=,
 *   is the no-JavaScript way: the server starts the player there);
 * - a quality link between two videos swaps the source in place, keeping the position;
 * - the position in each recording is kept on this device (localStorage) and resumed
 *   when the reader comes back, unless a chapter link says where to start;
 * - a play is reported once the player has played 10 s or a quarter of the media
 *   (navigator.sendBeacon to the list's data-plays URL, with a random id this browser
 *   keeps, so the hub counts one play per device, material and day: hub.reach). A cookie
 *   scoped to the blob URLs tells the hub this browser reports its plays, so the
 *   media requests themselves, which count plays when this file does not run, do not;
 *   a chapter link's player asks for its metadata only after that (data-preload);
 * - where the browser can, stream.js (HubStream) plays the same file through Media Source
 *   Extensions, so a seek fetches the fragment it needs at once; the element keeps its
 *   plain src wherever that cannot run or fails.
 */
(function () {
  "use strict";
  var SPEED_KEY = "hub.speed";
  var POSITION_KEY = "hub.position.";
  var SAVE_EVERY_S = 5;
  var DEVICE_KEY = "hub.device";
  var PLAY_SECONDS = 10;
  var PLAY_SHARE = 0.25;
  var PLAYER_COOKIE_DAYS = 30;

  function store(key, value) {
    try {
      if (value === null) { window.localStorage.removeItem(key); } else { window.localStorage.setItem(key, value); }
    } catch (e) { /* private mode or storage full: the page works without it */ }
  }
  function stored(key) {
    try { return window.localStorage.getItem(key); } catch (e) { return null; }
  }

  var params = new URLSearchParams(window.location.search);
  var seekMaterial = params.get("m");

  function deviceId() {
    var id = stored(DEVICE_KEY);
    if (!id || !/^[0-9a-f]{32}$/.test(id)) {
      var bytes = new Uint8Array(16);
      window.crypto.getRandomValues(bytes);
      id = Array.prototype.map.call(bytes, function (b) { return (b + 256).toString(16).slice(1); }).join("");
      store(DEVICE_KEY, id);  // where storage fails, a new id per page: a play may count twice that day
    }
    return id;
  }

  function sendPlay(url, material) {
    var body = new FormData();
    body.append("material", material);
    body.append("device", deviceId());
    if (navigator.sendBeacon && navigator.sendBeacon(url, body)) { return; }
    var request = new XMLHttpRequest();  // no sendBeacon, or its queue was full
    request.open("POST", url);
    request.send(body);
  }

  function secondsPlayed(player) {
    var total = 0;
    for (var i = 0; i < player.played.length; i++) { total += player.played.end(i) - player.played.start(i); }
    return total;
  }

  function reportPlay(player, url) {
    // Time really played, not the position: a chapter link starts the player well past 10 s.
    var reported = false;
    player.addEventListener("timeupdate", function () {
      if (reported) { return; }
      var played = secondsPlayed(player);
      var length = player.duration;
      if (played >= PLAY_SECONDS || (length && isFinite(length) && played >= length * PLAY_SHARE)) {
        reported = true;
        sendPlay(url, player.getAttribute("data-material"));
      }
    });
  }

  function setSpeed(tools, player, speed) {
    player.playbackRate = speed;
    player.defaultPlaybackRate = speed;
    tools.querySelectorAll("[data-speed]").forEach(function (button) {
      button.setAttribute("aria-pressed", String(Number(button.getAttribute("data-speed")) === speed));
    });
  }

  function rememberPosition(player) {
    var key = POSITION_KEY + player.getAttribute("data-material");
    var lastSaved = 0;
    player.addEventListener("timeupdate", function () {
      var now = player.currentTime;
      if (Math.abs(now - lastSaved) < SAVE_EVERY_S) { return; }
      lastSaved = now;
      // Not the first seconds (nothing to resume) nor the last (it was watched to the end).
      var nearEnd = player.duration && now > player.duration - SAVE_EVERY_S;
      store(key, now > SAVE_EVERY_S && !nearEnd ? now.toFixed(1) : null);
    });
    player.addEventListener("pause", function () {
      if (player.currentTime > SAVE_EVERY_S && !player.ended) { store(key, player.currentTime.toFixed(1)); }
    });
    player.addEventListener("ended", function () { store(key, null); });
    var saved = Number(stored(key));
    if (saved > 0 && seekMaterial !== player.getAttribute("data-material")) {
      var resume = function () {
        if (player.currentTime < 1) { player.currentTime = saved; }
      };
      if (player.readyState >= 1) { resume(); } else { player.addEventListener("loadedmetadata", resume, { once: true }); }
      player.setAttribute("data-resume", String(saved));
    }
  }

  /* The file the element would play: its src, else its first <source> it can play. */
  function plainSource(player) {
    var src = player.getAttribute("src");
    if (!src) {
      var sources = player.querySelectorAll("source");
      for (var i = 0; i < sources.length && !src; i++) {
        var type = sources[i].getAttribute("type");
        if (!type || player.canPlayType(type)) { src = sources[i].getAttribute("src"); }
      }
    }
    return src ? new URL(src, window.location.href).href : null;
  }

  /* Load what preload now says: through the stream when there is one (a load() would detach it). */
  function load(player) {
    if (player.hubStream) { player.hubStream.wake(); } else { player.load(); }
  }

  function seekTo(player, seconds) {
    var go = function () {
      player.currentTime = seconds;
      var played = player.play();
      if (played && played.catch) { played.catch(function () {}); }
    };
    if (player.readyState >= 1) { go(); } else {
      player.addEventListener("loadedmetadata", go, { once: true });
      player.preload = "metadata";
      load(player);
    }
  }

  function switchSource(player, link) {
    var at = player.currentTime;
    var playing = !player.paused;
    var speed = player.playbackRate;
    var url = new URL(link.getAttribute("data-src"), window.location.href).href;
    player.querySelectorAll("source").forEach(function (source) { source.remove(); });
    player.addEventListener("loadedmetadata", function () {
      player.currentTime = at;
      player.playbackRate = speed;
      if (playing) { var p = player.play(); if (p && p.catch) { p.catch(function () {}); } }
    }, { once: true });
    // A new source starts paused: ask for its metadata, else preload="none" would leave it empty.
    if (player.preload === "none") { player.preload = "metadata"; }
    if (!(window.HubStream && window.HubStream.attach(player, url))) {
      player.src = url;
      player.load();
    }
  }

  var list = document.querySelector(".materials[data-plays]");
  var playsUrl = list && list.getAttribute("data-plays");
  if (playsUrl) {
    document.cookie = "hub_player=1; path=" + list.getAttribute("data-blobs") + "; max-age=" +
      PLAYER_COOKIE_DAYS * 86400 + "; SameSite=Lax" + (window.location.protocol === "https:" ? "; Secure" : "");
  }

  document.querySelectorAll(".materials > li").forEach(function (item) {
    var player = item.querySelector(".player");
    var tools = item.querySelector(".player-tools");
    if (!player || !tools) { return; }
    if (window.HubStream) { window.HubStream.attach(player, plainSource(player)); }
    // A chapter link's page: show the player at the chapter now that the cookie above marks
    // this browser's requests (the HTML says preload="none" so no request leaves before it).
    var preload = player.getAttribute("data-preload");
    if (preload && player.readyState === 0 && player.paused) {
      player.preload = preload;
      load(player);
    }
    rememberPosition(player);
    if (playsUrl) { reportPlay(player, playsUrl); }

    var speedBox = tools.querySelector(".speed");
    if (speedBox) {
      speedBox.hidden = false;
      setSpeed(tools, player, Number(stored(SPEED_KEY)) || 1);
      speedBox.addEventListener("click", function (event) {
        var button = event.target.closest("[data-speed]");
        if (!button) { return; }
        var speed = Number(button.getAttribute("data-speed"));
        store(SPEED_KEY, String(speed));
        setSpeed(tools, player, speed);
      });
    }

    tools.addEventListener("click", function (event) {
      var link = event.target.closest("a[data-src]");
      // Only video to video in place: to or from audio only, the page is rendered anew.
      if (!link || player.tagName !== "VIDEO" || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
      event.preventDefault();
      switchSource(player, link);
      tools.querySelectorAll("a[data-quality]").forEach(function (other) { other.removeAttribute("aria-current"); });
      link.setAttribute("aria-current", "true");
    });

    var chapters = item.querySelector(".chapters");
    if (chapters) {
      chapters.addEventListener("click", function (event) {
        var link = event.target.closest("a[data-start]");
        if (!link || event.ctrlKey || event.metaKey || event.shiftKey) { return; }
        event.preventDefault();
        seekTo(player, Number(link.getAttribute("data-start")));
      });
    }
  });
})();

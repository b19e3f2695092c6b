/*! armor-ab.js: ARMOR A/B content and events for catalog pages. No dependencies. See docs/snippet.md */
(function (w, d) {
  "use strict";
  if (w.ArmorAB) return;
  var P = "armorab:", MAXQ = 1000, BATCH = 200, BEACON = 16000, TIMEOUT = 8000;
  var cfg = null, mem = {}, views = [], renders = [], flushing = false, left = false;
  var me = d.currentScript, shownAt = d.visibilityState == "hidden" ? null : 0, visible = 0;

  // localStorage with an in-memory stand-in (private modes, disabled storage, quota).
  function load(k) {
    var v;
    try { v = localStorage.getItem(P + k) } catch (e) {}
    return v == null ? mem[k] : v;
  }
  function save(k, v) {
    mem[k] = v;
    try { localStorage.setItem(P + k, v) } catch (e) {}
  }
  function loadJSON(k, dflt) {
    try { return JSON.parse(load(k)) || dflt } catch (e) { return dflt }
  }

  function uuid() {
    var c = w.crypto, b = new Uint8Array(16), h = "", i;
    if (c && c.randomUUID) return c.randomUUID();
    if (c && c.getRandomValues) c.getRandomValues(b);
    else for (i = 0; i < 16; i++) b[i] = Math.random() * 256;
    b[6] = (b[6] & 15) | 64;
    b[8] = (b[8] & 63) | 128;
    for (i = 0; i < 16; i++) h += (b[i] + 256).toString(16).slice(1);
    return h.slice(0, 8) + "-" + h.slice(8, 12) + "-" + h.slice(12, 16) + "-" + h.slice(16, 20) + "-" + h.slice(20);
  }

  function req(path, opts) {
    var c = w.AbortController && new AbortController();
    if (c) { opts.signal = c.signal; setTimeout(function () { c.abort() }, TIMEOUT) }
    opts.headers = opts.headers || {};
    opts.headers.Authorization = "Bearer " + cfg.key;
    return fetch(cfg.api + path, opts);
  }

  // -- events: a durable queue in localStorage, removed only after a 2xx ------------------------
  function queue() {
    var q = loadJSON("q", []);
    return Array.isArray(q) ? q : [];
  }

  function enqueue(evs, later) {
    var q = queue().concat(evs);
    save("q", JSON.stringify(q.slice(Math.max(0, q.length - MAXQ))));
    if (!later) setTimeout(flush, 0);
  }

  function drop(evs, ok) {
    var ids = {}, x = loadJSON("x", []);
    evs.forEach(function (e) {
      ids[e.event_id] = 1;
      if (ok && e.type == "exposure" && x.indexOf(e.event_id) < 0) x.push(e.event_id);
    });
    save("q", JSON.stringify(queue().filter(function (e) { return !ids[e.event_id] })));
    if (ok) save("x", JSON.stringify(x.slice(-20)));
  }

  function flush() {
    var batch = cfg && !flushing ? queue().slice(0, BATCH) : [];
    if (!batch.length) return Promise.resolve(0);
    flushing = true;
    return req("/v1/events", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ events: batch })
    }).then(function (r) {
      if (r.ok) return drop(batch, 1), 1;
      if (r.status == 400 || r.status == 422) {
        // A batch the API will never take: drop the event at fault (or the batch), keep the rest.
        return r.json().then(function (b) {
          var m = /^events\[(\d+)\]/.exec((b.error && b.error.field) || "");
          drop(m && batch[m[1]] ? [batch[m[1]]] : batch);
          return 1;
        }, function () { return drop(batch), 1 });
      }
      return 0; // 401, 403, 429, 5xx: keep everything and retry later
    }).then(function (more) {
      flushing = false;
      return more ? flush() : 0;
    }, function () { flushing = false; return 0 });
  }

  // sendBeacon cannot send a header: the publishable key goes in the URL of a CORS-simple POST.
  function beacon() {
    var q = queue(), out = [], size = 12, i, s;
    if (!cfg || !navigator.sendBeacon) return;
    for (i = 0; i < q.length && out.length < BATCH; i++) {
      s = JSON.stringify(q[i]).length + 1;
      if (size + s > BEACON) break;
      out.push(q[i]);
      size += s;
    }
    if (out.length) try {
      navigator.sendBeacon(cfg.api + "/v1/events/beacon?key=" + encodeURIComponent(cfg.key),
        new Blob([JSON.stringify({ events: out })], { type: "text/plain" }));
    } catch (e) {}
  }

  var skew = 0; // server clock minus this browser's clock, from the last content answer

  function event(v, type, value, props) {
    var e = { event_id: uuid(), experiment: v.experiment, variant: v.variant, user_id: cfg.uid,
      item_id: v.item, type: type, ts: new Date(Date.now() + skew).toISOString() };
    if (value != null) e.value = value;
    if (props) e.properties = props;
    return e;
  }

  // -- dwell: visible time only --------------------------------------------------------------------
  function pause() {
    if (shownAt != null) { visible += performance.now() - shownAt; shownAt = null }
  }
  function onVisibility() {
    if (d.visibilityState == "hidden") pause();
    else if (shownAt == null) shownAt = performance.now();
  }
  function onPagehide() {
    pause();
    if (!left) {
      left = true;
      var ms = Math.min(Math.round(visible), 864e5);
      if (views.length) enqueue(views.map(function (v) { return event(v, "dwell", ms) }), 1);
    }
    beacon();
  }
  function onPageshow(e) {
    if (!e.persisted) return; // back from the back/forward cache: a new page view
    left = false;
    visible = 0;
    shownAt = performance.now();
    if (views.length) enqueue(views.map(function (v) { return event(v, "page_view", null, { source: v.source }) }));
  }

  // -- content ---------------------------------------------------------------------------------------
  function draw(el, segs, alt) {
    var f = d.createDocumentFragment(), last = "";
    segs.forEach(function (s) {
      if (s.type == "text") {
        last = String(s.text || "").trim();
        String(s.text || "").split(/\n\s*\n/).forEach(function (t) {
          if (!t.trim()) return;
          var p = d.createElement("p");
          p.textContent = t.trim();
          f.appendChild(p);
        });
      } else if (s.type == "image" && s.url) {
        var img = d.createElement("img");
        img.className = "armor-ab-img";
        img.alt = alt || last.slice(0, 125);
        if (s.width > 0 && s.height > 0) {
          img.width = s.width;
          img.height = s.height;
          img.style.aspectRatio = s.width + " / " + s.height; // reserve the box: no layout jump
          img.style.height = "auto";
          img.style.maxWidth = "100%";
        }
        img.decoding = "async";
        img.src = /^https?:\/\//.test(s.url) ? s.url : cfg.api + s.url;
        f.appendChild(img);
      }
    });
    el.textContent = "";
    el.appendChild(f);
  }

  function view(el, v, evs) {
    el.setAttribute("data-armor-ab-variant", v.variant || "");
    el.setAttribute("data-armor-ab-source", v.source);
    views.push(v);
    enqueue(evs);
    return { variant: v.variant, source: v.source };
  }

  function render(el, o) {
    o = o || {};
    if (typeof el == "string") el = d.querySelector(el);
    if (!cfg || !el || !o.experiment || o.item == null) {
      return Promise.resolve(null);
    }
    var x = String(o.experiment), item = String(o.item), ck = "a:" + x, enc = encodeURIComponent;
    var p = req("/v1/experiments/" + enc(x) + "/content?user_id=" + enc(cfg.uid) + "&item_id=" + enc(item), {})
      .then(function (r) {
        if (!r.ok) throw Error("armor-ab: content answered " + r.status);
        return r.json();
      })
      .then(function (b) {
        // Event times on the server's clock: the server stamps the exposure, and analysis counts
        // only what follows it, so a visitor's slow clock must not push its first view before it.
        var st = Date.parse(b.server_time);
        if (st) skew = st - Date.now();
        var v = { experiment: x, item: item, variant: b.variant, source: "catalog" }, evs = [];
        var c = b.content;
        // Control (and every fallback) keeps the page's own copy: it is today's page.
        if (b.source == "armor" && c && c.segments && c.segments.length) {
          draw(el, c.segments, o.alt);
          v.source = "armor";
        }
        save(ck, JSON.stringify({ u: cfg.uid, v: b.variant }));
        if (b.exposure_id && loadJSON("x", []).indexOf(b.exposure_id) < 0) {
          var ex = event(v, "exposure");
          ex.event_id = b.exposure_id; // the server's fixed id: a no-op when it already has it
          evs.push(ex);
        }
        evs.push(event(v, "page_view", null, { source: v.source }));
        return view(el, v, evs);
      })
      .then(null, function (err) {
        // The API is unreachable: the page's own copy stays. A visitor whose variant is known
        // from an earlier page still counts (intention to treat); a new visitor is not tracked.
        if (w.console) console.warn(err);
        var a = loadJSON(ck, null);
        if (!a || a.u != cfg.uid) return null;
        var v = { experiment: x, item: item, variant: a.v, source: "page" };
        return view(el, v, [event(v, "page_view", null, { source: "page" })]);
      });
    renders.push(p);
    return p;
  }

  function track(type, o) {
    o = o || {};
    if (!cfg) return Promise.resolve(0);
    return Promise.all(renders).then(function () {
      var evs = views.filter(function (v) {
        return (!o.experiment || v.experiment == o.experiment) && (o.item == null || v.item == String(o.item));
      }).map(function (v) { return event(v, type, o.value == null ? null : +o.value, o.properties) });
      if (evs.length) enqueue(evs);
      return evs.length;
    });
  }

  function init(o) {
    o = o || {};
    var api = o.api == null ? (me && me.src ? new URL(me.src, location.href).origin : "") : String(o.api);
    var uid = o.userId ? String(o.userId) : load("uid");
    if (!uid) save("uid", (uid = uuid()));
    var first = !cfg;
    cfg = { api: api.replace(/\/+$/, ""), key: o.clientKey, uid: uid };
    if (first) {
      setInterval(flush, o.flushInterval || 10000);
      w.addEventListener("online", flush);
      w.addEventListener("pagehide", onPagehide);
      w.addEventListener("pageshow", onPageshow);
      d.addEventListener("visibilitychange", onVisibility);
    }
    flush(); // what earlier pages could not deliver
    return w.ArmorAB;
  }

  w.ArmorAB = {
    init: init,
    render: render,
    track: track,
    flush: flush,
    queued: function () { return queue().length },
    userId: function () { return cfg && cfg.uid }
  };
})(window, document);

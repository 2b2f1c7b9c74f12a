// pushbench demo page: live prices over SSE, WebSocket or long polling.
//
// Every transport feeds the same two functions, onTick and onGap, which keep
// the delivery check: seq is global and gap-free, so with no symbol filter
// every seq must arrive once, in order. A jump without a gap signal counts as
// missing, a seq at or below the last one as a duplicate. Each client resumes
// from the last seq it has after a disconnect (Last-Event-ID for SSE, ?since
// for WebSocket, ?cursor for polling) with a capped, jittered backoff.
//
// window.pushbench holds the counters as plain data, for the browser test.
'use strict';
(function () {
  const TRANSPORTS = {
    sse: { label: 'SSE', long: 'Server-Sent Events (EventSource)', resume: 'Last-Event-ID header, sent by the browser' },
    ws: { label: 'WebSocket', long: 'WebSocket (RFC 6455)', resume: '?since=<last seq>, backoff 0.25–5 s' },
    poll: { label: 'Long polling', long: 'HTTP long polling (fetch)', resume: '?cursor=<last seq>, backoff 0.25–5 s' },
  };
  const WINDOW_MS = 5000; // latency and rate window
  const MAX_SAMPLES = 50000; // bound on the latency window
  const SPARK_POINTS = 48;
  const BACKOFF_MIN_MS = 250;
  const BACKOFF_MAX_MS = 5000;
  const POLL_TIMEOUT = '20s';
  const LOG_LINES = 9;

  const params = new URLSearchParams(location.search);
  let transport = TRANSPORTS[params.get('transport')] ? params.get('transport') : 'sse';

  // hasPos: the page has a position in the feed (a tick, a gap, or ?since).
  let hasPos = false;
  const pb = {
    transport: transport,
    received: 0, // ticks accepted
    firstSeq: 0,
    lastSeq: 0,
    missing: 0, // seqs skipped without a gap signal
    duplicates: 0,
    gaps: 0, // gap signals
    gapTicks: 0, // ticks those signals said are lost
    connects: 0,
    disconnects: 0,
    reconnects: 0, // connections made again after a loss
    failures: 0, // losses and failed attempts to connect
    connected: false,
    p50: null, // ms, over the last WINDOW_MS
    p99: null,
    symbols: {}, // sym -> {seq, price, count}
  };
  window.pushbench = pb;

  const since = params.get('since');
  if (since !== null && /^\d+$/.test(since)) {
    hasPos = true;
    pb.lastSeq = Number(since);
  }
  const position = () => (hasPos ? pb.lastSeq : null);

  const $ = (id) => document.getElementById(id);
  const now = () => performance.timeOrigin + performance.now();

  // ---- events log -------------------------------------------------------
  const logEl = $('log');
  function log(kind, text) {
    const li = document.createElement('li');
    li.className = kind;
    const t = document.createElement('time');
    t.textContent = new Date().toTimeString().slice(0, 8);
    const s = document.createElement('span');
    s.textContent = text;
    li.append(t, s);
    logEl.prepend(li);
    while (logEl.children.length > LOG_LINES) logEl.lastChild.remove();
  }

  // ---- latency window ---------------------------------------------------
  // samples[i] = [receivedAtMs, latencyMs]; head is the oldest live index.
  let samples = [];
  let head = 0;
  function addSample(at, latency) {
    samples.push([at, latency]);
    if (samples.length - head > MAX_SAMPLES) head++;
  }
  function windowSamples(at) {
    while (head < samples.length && samples[head][0] < at - WINDOW_MS) head++;
    if (head > 4096 && head > samples.length / 2) {
      samples = samples.slice(head);
      head = 0;
    }
    return samples.slice(head).map((s) => s[1]);
  }
  function quantile(sorted, q) {
    return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))];
  }

  // ---- the quote table --------------------------------------------------
  const tbody = document.querySelector('#quotes tbody');
  const rows = new Map();
  const SVG = 'http://www.w3.org/2000/svg';

  function cell(tr, cls) {
    const td = document.createElement('td');
    td.className = cls;
    tr.append(td);
    return td;
  }
  function row(sym) {
    let r = rows.get(sym);
    if (r) return r;
    const tr = document.createElement('tr');
    tr.dataset.sym = sym;
    cell(tr, 'sym').textContent = sym;
    r = { tr, first: null, last: null, points: [] };
    r.price = cell(tr, 'num price');
    r.chg = cell(tr, 'num chg');
    r.pct = cell(tr, 'num pct');
    r.spark = cell(tr, 'spark');
    const svg = document.createElementNS(SVG, 'svg');
    svg.setAttribute('viewBox', '0 0 140 22');
    svg.setAttribute('preserveAspectRatio', 'none');
    r.area = document.createElementNS(SVG, 'path');
    r.area.setAttribute('class', 'area');
    r.line = document.createElementNS(SVG, 'polyline');
    svg.append(r.area, r.line);
    r.spark.append(svg);
    r.n = cell(tr, 'num n');
    r.seq = cell(tr, 'num seq');
    // keep rows sorted by symbol
    let before = null;
    for (const [s, other] of rows) {
      if (s > sym && (!before || s < before.tr.dataset.sym)) before = other;
    }
    tbody.insertBefore(tr, before ? before.tr : null);
    rows.set(sym, r);
    $('empty').hidden = true;
    return r;
  }

  function drawSpark(r) {
    const p = r.points;
    if (p.length < 2) return;
    let lo = Infinity;
    let hi = -Infinity;
    for (const v of p) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    const span = hi - lo || 1;
    const w = 140;
    const h = 22;
    const step = w / (p.length - 1);
    const pts = p.map((v, i) => (i * step).toFixed(1) + ',' + (h - 2 - ((v - lo) / span) * (h - 4)).toFixed(1));
    r.line.setAttribute('points', pts.join(' '));
    r.area.setAttribute('d', 'M0,' + h + ' L' + pts.join(' L') + ' L' + w + ',' + h + ' Z');
    r.spark.className = 'spark ' + (p[p.length - 1] >= p[0] ? 'up' : 'down');
  }

  const FLASH_UP = [{ backgroundColor: 'rgba(47, 208, 138, 0.32)' }, { backgroundColor: 'rgba(47, 208, 138, 0)' }];
  const FLASH_DOWN = [{ backgroundColor: 'rgba(255, 93, 115, 0.32)' }, { backgroundColor: 'rgba(255, 93, 115, 0)' }];

  function showTick(t) {
    const r = row(t.sym);
    const prev = r.last;
    if (r.first === null) r.first = t.price;
    r.last = t.price;
    r.price.textContent = t.price.toFixed(2);
    const chg = t.price - r.first;
    const dir = chg > 0 ? 'up' : chg < 0 ? 'down' : '';
    r.chg.textContent = (chg > 0 ? '+' : chg < 0 ? '−' : '') + Math.abs(chg).toFixed(2);
    r.chg.className = 'num chg ' + dir;
    r.pct.textContent = (chg > 0 ? '+' : chg < 0 ? '−' : '') + Math.abs((chg / r.first) * 100).toFixed(2) + '%';
    r.pct.className = 'num pct ' + dir;
    if (prev !== null && prev !== t.price && r.price.animate) {
      r.price.animate(t.price > prev ? FLASH_UP : FLASH_DOWN, { duration: 900, easing: 'ease-out' });
    }
    r.points.push(t.price);
    if (r.points.length > SPARK_POINTS) r.points.shift();
    drawSpark(r);
    const s = pb.symbols[t.sym] || (pb.symbols[t.sym] = { seq: 0, price: 0, count: 0 });
    s.seq = t.seq;
    s.price = t.price;
    s.count++;
    r.n.textContent = s.count;
    r.seq.textContent = t.seq;
  }

  // ---- the delivery check -----------------------------------------------
  function onTick(t) {
    const at = now();
    if (hasPos && t.seq <= pb.lastSeq) {
      pb.duplicates++;
      log('bad', 'duplicate seq ' + t.seq + ' (last ' + pb.lastSeq + ')');
      return;
    }
    if (hasPos && t.seq > pb.lastSeq + 1) {
      pb.missing += t.seq - pb.lastSeq - 1;
      log('bad', 'missing seq ' + (pb.lastSeq + 1) + '–' + (t.seq - 1) + ' without a gap signal');
      showBanner('bad', 'Lost without notice: seq ' + (pb.lastSeq + 1) + '–' + (t.seq - 1) + ' never arrived and no gap was signalled.');
    }
    if (!hasPos) pb.firstSeq = t.seq;
    hasPos = true;
    pb.lastSeq = t.seq;
    pb.received++;
    addSample(at, at - t.ts / 1e6);
    showTick(t);
    scheduleRender();
  }

  // A gap says ticks from..to-1 are no longer retained; the stream goes on at to.
  function onGap(g) {
    if (hasPos && g.to - 1 <= pb.lastSeq) return; // a resume repeated a gap we know
    let from = g.from;
    if (hasPos) {
      if (g.from > pb.lastSeq + 1) pb.missing += g.from - pb.lastSeq - 1;
      from = Math.max(g.from, pb.lastSeq + 1);
    }
    pb.gaps++;
    pb.gapTicks += g.to - from;
    hasPos = true;
    pb.lastSeq = g.to - 1;
    scheduleRender();
    const n = g.to - from;
    log('warn', 'gap: seq ' + from + '–' + (g.to - 1) + ' no longer retained (' + n + ' lost)');
    showBanner('warn', 'Gap signalled by the server: seq ' + from + '–' + (g.to - 1) + ' (' + n +
      ' ticks) were no longer in its history when this page asked for them. ' + pb.gaps + ' gap' +
      (pb.gaps > 1 ? 's' : '') + ', ' + pb.gapTicks + ' ticks lost so far.');
  }

  // A silent loss stays on screen: a later gap message is added below it.
  let silentLoss = '';
  function showBanner(kind, text) {
    const b = $('gap-banner');
    if (kind === 'bad') silentLoss = '⚠ ' + text;
    b.className = 'banner ' + (silentLoss ? 'bad' : kind);
    b.textContent = kind === 'bad' ? silentLoss : (silentLoss ? silentLoss + '\n' : '') + '⚠ ' + text;
    b.hidden = false;
  }

  // ---- connection state -------------------------------------------------
  let lostFlag = false;
  let attempts = 0;
  function setStatus(kind, text) {
    $('status').className = 'pill ' + kind;
    $('status-text').textContent = text;
  }
  function opened() {
    if (pb.connected) return;
    pb.connected = true;
    pb.connects++;
    attempts = 0;
    backoff.reset();
    if (lostFlag) {
      pb.reconnects++;
      log('ok', 'reconnected, resuming after seq ' + pb.lastSeq);
    } else {
      log('ok', 'connected over ' + TRANSPORTS[transport].label + (hasPos ? ', after seq ' + pb.lastSeq : ', live'));
    }
    lostFlag = false;
    setStatus('live', 'live');
  }
  // lost is called for every failed attempt; it counts a disconnect once.
  function lost(why, retryMs) {
    const wasUp = pb.connected;
    pb.connected = false;
    pb.failures++;
    attempts++;
    if (wasUp || !lostFlag) {
      if (wasUp) pb.disconnects++;
      log('warn', why);
    }
    lostFlag = true;
    setStatus('reconnecting', retryMs == null ? 'reconnecting' : 'retry ' + attempts + ' in ' + (retryMs / 1000).toFixed(1) + ' s');
  }
  const backoff = {
    d: 0,
    next() {
      this.d = this.d ? Math.min(this.d * 2, BACKOFF_MAX_MS) : BACKOFF_MIN_MS;
      return Math.round(this.d / 2 + (Math.random() * this.d) / 2); // jitter: no thundering herd
    },
    reset() {
      this.d = 0;
    },
  };
  function setRequest(path) {
    $('endpoint').textContent = 'GET ' + path;
  }

  // ---- the three clients: each returns {stop()} -------------------------
  function sseClient() {
    let es = null;
    let lastId = ''; // the id the browser will send as Last-Event-ID
    let timer = 0;
    let stopped = false;
    function open() {
      const pos = position();
      // The first request carries the position in the query; later the
      // browser reconnects on its own and sends Last-Event-ID, which wins.
      const url = '/sse' + (pos !== null ? '?lastEventId=' + pos : '');
      setRequest(url);
      es = new EventSource(url);
      es.onopen = opened;
      es.onmessage = (e) => {
        lastId = e.lastEventId;
        onTick(JSON.parse(e.data));
      };
      es.addEventListener('gap', (e) => onGap(JSON.parse(e.data)));
      es.onerror = () => {
        if (stopped) return;
        if (es.readyState === EventSource.CLOSED) {
          // An HTTP error (such as 503 while a server stops) ends an
          // EventSource for good: start a new one from our own position.
          es.close();
          const d = backoff.next();
          lost('stream refused', d);
          timer = setTimeout(open, d);
        } else if (lastId) {
          setRequest(url + ' · Last-Event-ID: ' + lastId);
          lost('stream ended; the browser reconnects with Last-Event-ID: ' + lastId, null);
        } else {
          lost('stream ended; the browser reconnects', null);
        }
      };
    }
    open();
    return {
      stop() {
        stopped = true;
        clearTimeout(timer);
        if (es) es.close();
      },
    };
  }

  function wsClient() {
    let ws = null;
    let timer = 0;
    let stopped = false;
    const base = (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host;
    function open() {
      const pos = position();
      const path = '/ws' + (pos !== null ? '?since=' + pos : '');
      setRequest(path);
      ws = new WebSocket(base + path);
      ws.onopen = opened;
      ws.onmessage = (e) => {
        const m = JSON.parse(e.data);
        if (m.gap) onGap(m.gap);
        else onTick(m);
      };
      ws.onclose = (e) => {
        if (stopped) return;
        const d = backoff.next();
        lost('closed (' + e.code + (e.reason ? ' ' + e.reason : '') + ')', d);
        timer = setTimeout(open, d);
      };
    }
    open();
    return {
      stop() {
        stopped = true;
        clearTimeout(timer);
        if (ws) ws.close(1000);
      },
    };
  }

  function pollClient() {
    const abort = new AbortController();
    let stopped = false;
    let timer = 0;
    let cursor = position();
    const sleep = (ms) => new Promise((resolve) => { timer = setTimeout(resolve, ms); });
    (async function loop() {
      while (!stopped) {
        const path = '/poll?timeout=' + POLL_TIMEOUT + (cursor !== null ? '&cursor=' + cursor : '');
        setRequest(path);
        let body;
        try {
          const res = await fetch(path, { signal: abort.signal, cache: 'no-store' });
          if (!res.ok) {
            let msg = 'HTTP ' + res.status;
            try {
              msg += ': ' + (await res.json()).error;
            } catch (_) { /* not JSON */ }
            throw new Error(msg);
          }
          body = await res.json();
        } catch (err) {
          if (stopped) return;
          const d = backoff.next();
          lost('poll failed (' + (err && err.message ? err.message : err) + ')', d);
          await sleep(d);
          continue;
        }
        if (stopped) return;
        opened();
        if (body.gap) onGap(body.gap);
        for (const t of body.ticks) onTick(t);
        cursor = body.cursor;
        // An empty answer means a timeout or a stopping server: never spin.
        if (!body.ticks.length && !body.gap) await sleep(BACKOFF_MIN_MS);
      }
    })();
    return {
      stop() {
        stopped = true;
        clearTimeout(timer);
        abort.abort();
      },
    };
  }

  const CLIENTS = { sse: sseClient, ws: wsClient, poll: pollClient };
  let client = null;

  function start(name) {
    transport = name;
    pb.transport = name;
    document.querySelectorAll('.switch button').forEach((b) => {
      b.setAttribute('aria-checked', String(b.dataset.transport === name));
    });
    $('st-transport').textContent = TRANSPORTS[name].long;
    $('resume').textContent = TRANSPORTS[name].resume;
    setStatus('connecting', 'connecting');
    client = CLIENTS[name]();
  }

  function switchTo(name) {
    if (name === transport || !TRANSPORTS[name]) return;
    client.stop();
    pb.connected = false;
    lostFlag = false;
    backoff.reset();
    log('', 'switched to ' + TRANSPORTS[name].label + (hasPos ? ', resuming after seq ' + pb.lastSeq : ''));
    params.set('transport', name);
    params.delete('since');
    history.replaceState(null, '', '?' + params.toString());
    start(name);
  }

  document.querySelectorAll('.switch button').forEach((b) => {
    b.addEventListener('click', () => switchTo(b.dataset.transport));
  });

  // ---- statistics, redrawn a few times a second -------------------------
  let lastReceived = 0;
  const startedAt = now();
  function render() {
    const at = now();
    const lat = windowSamples(at).sort((a, b) => a - b);
    pb.p50 = lat.length ? quantile(lat, 0.5) : null;
    pb.p99 = lat.length ? quantile(lat, 0.99) : null;
    const fmt = (v) => (v === null ? '–' : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0));
    $('st-p50').textContent = fmt(pb.p50);
    $('st-p99').textContent = fmt(pb.p99);
    $('st-window').textContent = 'last 5 s · ' + lat.length + ' samples';
    // over the window, or since the page started (at least 1 s) when younger
    const span = Math.max(1000, Math.min(WINDOW_MS, at - startedAt)) / 1000;
    $('st-rate').textContent = (lat.length / span).toFixed(1);
    if (pb.received !== lastReceived) {
      lastReceived = pb.received;
      $('st-received').textContent = pb.received.toLocaleString('en-US');
    }
    $('st-seq').textContent = hasPos ? pb.lastSeq.toLocaleString('en-US') : '–';
    $('st-first').textContent = pb.firstSeq ? 'first seq ' + pb.firstSeq.toLocaleString('en-US') : '\u00a0';
    $('st-reconnects').textContent = pb.reconnects;
    $('st-disconnects').textContent = pb.disconnects;
    const missing = $('st-missing');
    missing.textContent = pb.missing;
    missing.className = pb.missing ? 'bad' : 'ok';
    const dups = $('st-dups');
    dups.textContent = pb.duplicates;
    dups.className = pb.duplicates ? 'bad' : 'ok';
    const gaps = $('st-gaps');
    gaps.textContent = pb.gaps;
    gaps.className = pb.gaps ? 'warn' : '';
    $('st-gapticks').textContent = pb.gapTicks;
  }
  // Redraw after each burst of messages (once per frame) and on a timer,
  // so that the latency window also moves when nothing arrives.
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => {
      renderQueued = false;
      render();
    });
  }
  setInterval(render, 250);

  start(transport);
  render();
})();

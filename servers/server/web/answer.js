// pushbench demo page, answer panel: type anything and watch a synthetic
// reply stream in over the transport chosen at the top of the page, as a
// chat assistant's answer does (PROTOCOL.md, "Answer streaming").
//
// SSE: fetch POST /answer and read the event stream (EventSource cannot
// POST). WebSocket: one session on GET /answer, each question a request
// message tagged with its own req. Long polling: POST /answer for an id,
// then GET /answer/{id}?after=k until done.
//
// The seed is a hash of the question, so the same question gets the same
// answer on every transport. Every chunk is checked: its index must be the
// next one (duplicates and gaps are counted), and TTFT is measured from the
// click to the first chunk. window.pushbenchAnswer holds the state as plain
// data, for the browser test.
'use strict';
(function () {
  const TOKENS = 48;
  const RATE = 40; // chunks per second
  const THINK = '300ms';
  const POLL_TIMEOUT = '20s';

  const pa = {
    transport: '',
    state: 'idle', // idle, streaming, done, error
    id: '',
    seed: 0,
    tokens: TOKENS,
    chunks: 0,
    text: '',
    ttft: null, // ms, click to first chunk
    tps: null, // chunks per second after the first
    outOfOrder: 0, // chunks whose index was not the next one
    error: '',
    runs: 0, // answers completed
  };
  window.pushbenchAnswer = pa;

  const $ = (id) => document.getElementById(id);
  const form = $('answer-form');
  const input = $('answer-input');
  const out = $('answer-text');

  // FNV-1a of the question: its seed.
  function seedOf(s) {
    let h = 0x811c9dc5;
    for (let i = 0; i < s.length; i++) {
      h ^= s.charCodeAt(i);
      h = Math.imul(h, 0x01000193) >>> 0;
    }
    return h;
  }

  let sentAt = 0;
  let firstAt = 0;
  let current = null; // the answer in progress: {stop()}

  function render() {
    $('answer-state').textContent = pa.state + (pa.error ? ': ' + pa.error : '');
    $('answer-state').className = 'answer-state ' + pa.state;
    $('answer-ttft').textContent = pa.ttft === null ? '–' : pa.ttft.toFixed(0);
    $('answer-tps').textContent = pa.tps === null ? '–' : pa.tps.toFixed(1);
    $('answer-count').textContent = pa.chunks + ' / ' + pa.tokens;
    $('answer-via').textContent = pa.transport || '–';
  }

  function onChunk(c) {
    if (pa.state !== 'streaming') return;
    const at = performance.now();
    if (c.i !== pa.chunks) {
      pa.outOfOrder++;
      if (c.i < pa.chunks) return; // a duplicate: shown once
    }
    if (pa.chunks === 0) {
      firstAt = at;
      pa.ttft = at - sentAt;
    } else if (at > firstAt) {
      pa.tps = pa.chunks / ((at - firstAt) / 1000);
    }
    pa.chunks = c.i + 1;
    pa.text += c.text;
    out.textContent = pa.text;
    render();
  }
  function onDone(n) {
    if (pa.state !== 'streaming') return;
    pa.state = n === pa.chunks ? 'done' : 'error';
    if (pa.state === 'error') pa.error = 'done after ' + pa.chunks + ' of ' + n + ' chunks';
    pa.runs++;
    current = null;
    render();
  }
  function onError(msg) {
    if (pa.state !== 'streaming') return;
    pa.state = 'error';
    pa.error = msg;
    current = null;
    render();
  }

  async function failure(res) {
    let msg = 'HTTP ' + res.status;
    try {
      msg += ': ' + (await res.json()).error;
    } catch (_) { /* not JSON */ }
    return new Error(msg);
  }

  // ---- SSE: fetch and a small event-stream parser -------------------------
  function sseAnswer(body) {
    const abort = new AbortController();
    (async () => {
      const res = await fetch('/answer', {
        method: 'POST', body, signal: abort.signal, cache: 'no-store',
        headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      });
      if (!res.ok) throw await failure(res);
      pa.id = res.headers.get('X-Answer-Id') || '';
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let type = '';
          let data = '';
          for (const line of block.split('\n')) {
            if (line.startsWith('event:')) type = line.slice(6).trim();
            else if (line.startsWith('data:')) data += line.slice(5).replace(/^ /, '');
          }
          if (!data) continue;
          const m = JSON.parse(data);
          if (type === 'done') onDone(m.chunks);
          else onChunk(m);
        }
      }
      if (pa.state === 'streaming') onError('stream ended before done');
    })().catch((err) => onError(err.message || String(err)));
    return { stop: () => abort.abort() };
  }

  // ---- WebSocket: one session, requests tagged by req ---------------------
  let ws = null;
  let wsReady = null;
  let reqSeq = 0;
  let wsReq = '';
  function session() {
    if (ws && ws.readyState <= WebSocket.OPEN) return wsReady;
    ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/answer');
    wsReady = new Promise((resolve, reject) => {
      ws.onopen = () => resolve(ws);
      ws.onerror = () => reject(new Error('WebSocket error'));
    });
    ws.onmessage = (e) => {
      const m = JSON.parse(e.data);
      if (m.id !== wsReq) return; // an answer this page gave up on
      if (m.error) onError(m.error);
      else if (m.done) onDone(m.chunks);
      else onChunk(m);
    };
    ws.onclose = (e) => {
      ws = null;
      onError('session closed (' + e.code + ')');
    };
    return wsReady;
  }
  function wsAnswer(body) {
    wsReq = 'q' + ++reqSeq;
    pa.id = wsReq;
    const req = wsReq;
    session()
      .then((s) => s.send(JSON.stringify(Object.assign({ req }, JSON.parse(body)))))
      .catch((err) => onError(err.message));
    return { stop: () => { wsReq = ''; } };
  }

  // ---- long polling --------------------------------------------------------
  function pollAnswer(body) {
    const abort = new AbortController();
    (async () => {
      const res = await fetch('/answer', {
        method: 'POST', body, signal: abort.signal, cache: 'no-store',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      });
      if (!res.ok) throw await failure(res);
      pa.id = (await res.json()).id;
      let after = null;
      while (pa.state === 'streaming') {
        const q = '?timeout=' + POLL_TIMEOUT + (after === null ? '' : '&after=' + after);
        const r = await fetch('/answer/' + encodeURIComponent(pa.id) + q, {
          signal: abort.signal, cache: 'no-store', headers: { Accept: 'application/json' },
        });
        if (!r.ok) throw await failure(r);
        const page = await r.json();
        for (const c of page.chunks) {
          onChunk(c);
          after = c.i;
        }
        if (page.done) onDone(after === null ? pa.chunks : after + 1);
      }
    })().catch((err) => onError(err.message || String(err)));
    return { stop: () => abort.abort() };
  }

  const CLIENTS = { sse: sseAnswer, ws: wsAnswer, poll: pollAnswer };

  function ask(question) {
    if (current) current.stop();
    const transport = (window.pushbench && window.pushbench.transport) || 'sse';
    pa.transport = transport;
    pa.state = 'streaming';
    pa.seed = seedOf(question);
    pa.id = '';
    pa.chunks = 0;
    pa.text = '';
    pa.ttft = null;
    pa.tps = null;
    pa.outOfOrder = 0;
    pa.error = '';
    out.textContent = '';
    render();
    sentAt = performance.now();
    const body = JSON.stringify({ tokens: TOKENS, rate: RATE, think: THINK, seed: pa.seed });
    current = CLIENTS[transport](body);
  }

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ask(input.value);
  });
  render();
})();

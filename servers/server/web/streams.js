// Streams mode of the demo page, ?streams=N (2..64): besides the page's own
// subscription (app.js, subscription 1), N-1 more independent subscriptions
// of the same transport, each with its own counter. It shows the browser's
// connection limit: over HTTP/1.1 a browser opens at most 6 connections to
// one origin, so event streams past the 6th wait and receive nothing; over
// HTTP/2 every stream shares one connection and all receive. WebSocket
// connections do not count against that pool in the same way.
//
// window.pushbenchStreams holds the counters as plain data, for the browser
// test: {n, transport, received: [ticks per subscription], receiving}.
'use strict';
(function () {
  const params = new URLSearchParams(location.search);
  const n = Number(params.get('streams'));
  if (!Number.isInteger(n) || n < 2) return;
  const N = Math.min(n, 64);
  const transport = ['sse', 'ws', 'poll'].includes(params.get('transport')) ? params.get('transport') : 'sse';
  const state = { n: N, transport: transport, received: new Array(N).fill(0), receiving: 0 };
  window.pushbenchStreams = state;
  const RETRY_MS = 1000;
  const retry = (fn) => setTimeout(fn, RETRY_MS);

  // Subscription 0 is the page's own: its count is window.pushbench's.
  const open = {
    // EventSource reconnects by itself.
    sse: (i) => {
      new EventSource('/sse').onmessage = () => state.received[i]++;
    },
    ws: function ws(i) {
      const c = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + '/ws');
      c.onmessage = (e) => {
        if (!e.data.startsWith('{"gap"')) state.received[i]++;
      };
      c.onclose = () => retry(() => ws(i));
    },
    poll: async function poll(i) {
      let cursor = null;
      for (;;) {
        try {
          const r = await fetch('/poll?timeout=20s' + (cursor === null ? '' : '&cursor=' + cursor));
          const b = await r.json();
          cursor = b.cursor;
          state.received[i] += b.ticks.length;
        } catch (e) {
          await new Promise(retry);
        }
      }
    },
  };
  for (let i = 1; i < N; i++) open[transport](i);

  // A panel above the quotes: one cell per subscription.
  const panel = document.createElement('section');
  panel.id = 'streams';
  panel.className = 'streams';
  const title = document.createElement('h2');
  const cells = document.createElement('ol');
  panel.append(title, cells);
  for (let i = 0; i < N; i++) cells.append(document.createElement('li'));
  document.querySelector('main').prepend(panel);

  function render() {
    state.received[0] = window.pushbench ? window.pushbench.received : 0;
    state.receiving = state.received.filter((c) => c > 0).length;
    title.textContent = state.receiving + ' of ' + N + ' subscriptions receiving (' + location.protocol.replace(':', '') + ')';
    state.received.forEach((c, i) => {
      const li = cells.children[i];
      li.textContent = '#' + (i + 1) + ' ' + c.toLocaleString('en-US');
      li.className = c > 0 ? 'on' : 'waiting';
    });
  }
  setInterval(render, 250);
  render();
})();

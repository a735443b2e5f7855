// Wires the page: the graph feed (one snapshot a second over Server-Sent Events), the side
// panel's JSON, the header and the feed status.

import { renderGraph } from './graph.js';
import { renderReload, renderVirtualServices } from './panel.js';
import { renderCanaries } from './canary.js';
import { clockTime } from './format.js';

const $ = (id) => document.getElementById(id);

// A feed with no event for this long is shown as stale (events come every second).
const STALE_MS = 3500;

let latest = null;
let lastEventAt = 0;
let updates = 0;
let panelBusy = false;

function setFeed(state, text) {
  const el = $('feed-status');
  el.dataset.state = state;
  el.textContent = text || state;
}

function drawGraph() {
  const pane = $('graph-scroll');
  const drawn = renderGraph($('graph'), latest, { width: pane.clientWidth, height: pane.clientHeight - 8 });
  $('graph').hidden = !drawn;
  $('graph-empty').hidden = drawn;
}

function drawHeader(snap) {
  $('meta-version').textContent = snap.config_version ?? '–';
  $('meta-window').textContent = `${snap.window_secs} s`;
  $('meta-updated').textContent = clockTime(snap.generated_at_ms);
  // At scale the feed carries the first routes only (every edge with traffic is there).
  const capped = $('graph-capped');
  capped.hidden = snap.routes_total == null;
  if (!capped.hidden) {
    capped.textContent = `Idle routes: the first ${snap.routes.length} of ${snap.routes_total} configured routes are drawn; every edge with traffic is. /api/graph?host=… lists one service's.`;
  }
}

async function getJson(path) {
  const r = await fetch(path, { cache: 'no-store' });
  if (!r.ok) throw new Error(`${path}: ${r.status}`);
  return r.json();
}

// The panel follows the feed's pace; a slow answer skips a beat instead of piling requests up.
async function refreshPanel() {
  if (panelBusy) return;
  panelBusy = true;
  try {
    const [vs, reload, canaries] = await Promise.all([
      getJson('/api/virtualservices'), getJson('/api/reload'), getJson('/api/canaries')]);
    renderReload($('reload'), $('reload-body'), reload);
    renderCanaries($('canaries'), $('canary-list'), canaries);
    renderVirtualServices($('vs-list'), $('vs-caption'), vs, latest);
  } catch (err) {
    $('reload-body').textContent = `cannot load: ${err.message}`;
  } finally {
    panelBusy = false;
  }
}

function onSnapshot(ev) {
  let snap;
  try {
    snap = JSON.parse(ev.data);
  } catch {
    return;
  }
  latest = snap;
  lastEventAt = Date.now();
  updates += 1;
  document.body.dataset.updates = String(updates);
  setFeed('live');
  drawHeader(snap);
  drawGraph();
  refreshPanel();
}

const feed = new EventSource('/api/graph/stream');
feed.addEventListener('message', onSnapshot);
// EventSource reconnects by itself; this only tells the reader.
feed.addEventListener('error', () => setFeed('reconnecting', 'reconnecting…'));
setInterval(() => {
  if (lastEventAt && Date.now() - lastEventAt > STALE_MS && feed.readyState === EventSource.OPEN) {
    setFeed('stale');
  }
}, 1000);
window.addEventListener('resize', () => latest && drawGraph());
refreshPanel();

// Wires the page: the graph feed (one snapshot a second over Server-Sent Events), the side
// panel's JSON, the header and the feed status. With a host filter the graph and the panel
// are that host's (`?host=` of /api/graph and /api/virtualservices, asked every second), which
// is how one service is seen among thousands: the feed carries the first routes only.

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
let graphBusy = false;
// The host the page shows ('' : all); lowercase, as the admin compares hosts.
let hostFilter = '';

// `path` for the filter in force.
function filtered(path) {
  return hostFilter ? `${path}?host=${encodeURIComponent(hostFilter)}` : path;
}

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
    capped.textContent = `Idle routes: the first ${snap.routes.length} of ${snap.routes_total} configured routes are drawn; every edge with traffic is. Filter by host to see one service's.`;
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
      getJson(filtered('/api/virtualservices')), getJson('/api/reload'), getJson('/api/canaries')]);
    renderReload($('reload'), $('reload-body'), reload);
    renderCanaries($('canaries'), $('canary-list'), canaries);
    renderVirtualServices($('vs-list'), $('vs-caption'), vs, latest, hostFilter);
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
  lastEventAt = Date.now();
  setFeed('live');
  // Filtered, the feed only says the proxy is live: the graph is the host's.
  if (hostFilter) return;
  show(snap);
}

function show(snap) {
  latest = snap;
  updates += 1;
  document.body.dataset.updates = String(updates);
  drawHeader(snap);
  drawGraph();
  refreshPanel();
}

// The filtered graph, at the feed's pace; a slow answer skips a beat.
async function refreshFiltered() {
  if (!hostFilter || graphBusy) return;
  graphBusy = true;
  const asked = hostFilter;
  try {
    const snap = await getJson(filtered('/api/graph'));
    if (asked === hostFilter) show(snap);
  } catch (err) {
    setFeed('stale', `cannot load: ${err.message}`);
  } finally {
    graphBusy = false;
  }
}

function setFilter(value) {
  const host = value.trim().replace(/\.$/, '').toLowerCase();
  if (host === hostFilter) return;
  hostFilter = host;
  document.body.dataset.host = host;
  if (host) {
    refreshFiltered();
  } else {
    refreshPanel();
  }
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
setInterval(refreshFiltered, 1000);
let typing = 0;
$('host-filter').addEventListener('input', (ev) => {
  clearTimeout(typing);
  typing = setTimeout(() => setFilter(ev.target.value), 300);
});
$('host-filter').addEventListener('change', (ev) => setFilter(ev.target.value));
window.addEventListener('resize', () => latest && drawGraph());
refreshPanel();

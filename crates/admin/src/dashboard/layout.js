// Where nodes go: three columns (entry, services, versions), versions stacked under their
// service, each service centred on its versions and each entry on the services it feeds.
// Also what a node says (its name, title and detail lines), since that sets its height.

import { shortService, serviceDetail, versionName, sourceName } from './format.js';
import { nodeTraffic } from './hops.js';

export const WIDTH = { source: 180, service: 190, version: 220 };
export const MARGIN = 24;
export const LINE = 15;
export const TEXT_X = 38; // node text starts right of the icon
const TOP = 52; // column titles sit above the first row
// Between version nodes: at least room for two stacked edge labels, at most what keeps a
// node's edges short; in between, the graph spreads out to fill the pane's height.
const ROW_GAP = { min: 60, max: 150 };
const BLOCK_GAP = 24; // extra space between one service's versions and the next service's
const NODE_H = 74;
const MAX_WORKLOADS = 3;

// The node's stable name (its `data-node`), as tests and people refer to it.
export function displayName(n) {
  if (n.kind === 'source') return sourceName(n.name);
  if (n.kind === 'service') return shortService(n.service);
  return versionName(n);
}

// The bold first line: the source's kind alone (its gateways go on the detail line).
export function titleOf(n) {
  if (n.kind === 'source') return n.name.split(':')[0];
  return displayName(n);
}

export function detailOf(n) {
  if (n.kind === 'source') {
    if (n.name === 'mesh') return 'sidecar outbound';
    // `gateway:ns/a,ns/b`: the names alone fit; the namespaces are in the tooltip.
    return n.name.slice(n.name.indexOf(':') + 1).split(',').map((g) => g.split('/').pop()).join(', ');
  }
  if (n.kind === 'service') return serviceDetail(n.service);
  return null;
}

export const fits = (w, advance) => Math.floor((w - TEXT_X - 10) / advance);

export function workloadLines(n) {
  const w = n.workloads || [];
  if (w.length === 0) return [n.rps ? 'workload not reported' : 'no traffic yet'];
  const lines = w.slice(0, MAX_WORKLOADS);
  if (w.length > MAX_WORKLOADS) lines.push(`+${w.length - MAX_WORKLOADS} more`);
  return lines;
}

function nodeHeight(n) {
  return n.kind === 'version' ? NODE_H + LINE * (workloadLines(n).length - 1) : NODE_H;
}

const byText = (f) => (a, b) => f(a).localeCompare(f(b), undefined, { numeric: true });

// The vertical gap between version nodes that makes the graph about `available` tall.
function rowGap(snap, available) {
  const versions = snap.nodes.filter((n) => n.kind === 'version');
  const services = snap.nodes.filter((n) => n.kind === 'service').length;
  const heights = versions.reduce((sum, n) => sum + nodeHeight(n), 0);
  const free = available - TOP - MARGIN - heights - Math.max(0, services - 1) * BLOCK_GAP;
  const gap = versions.length > 1 ? free / (versions.length - 1) : ROW_GAP.min;
  return Math.min(ROW_GAP.max, Math.max(ROW_GAP.min, gap));
}

// Places every node: versions stacked per service, each service centred on its versions,
// each source centred on the services it feeds (pushed down where two would overlap).
export function layout(snap, hops, width, height) {
  const gap = rowGap(snap, height);
  const inner = width - 2 * MARGIN - WIDTH.source - WIDTH.service - WIDTH.version;
  const col = {
    source: MARGIN,
    // The entry hop's label is narrower than a version hop's, but needs about 150 px.
    service: MARGIN + WIDTH.source + Math.min(Math.max(inner * 0.38, 150), inner * 0.45),
    version: width - MARGIN - WIDTH.version,
  };
  const nodes = new Map();
  const traffic = nodeTraffic(hops);
  const place = (n, y) => {
    const t = traffic.get(n.id) || { rps: 0, requests: 0, errors: 0 };
    const p = {
      ...n, rps: t.rps, error_rate: t.requests > 0 ? t.errors / t.requests : 0,
      label: displayName(n), x: col[n.kind], y, w: WIDTH[n.kind], h: nodeHeight(n),
    };
    nodes.set(n.id, p);
    return p;
  };
  const versions = new Map();
  for (const n of snap.nodes.filter((n) => n.kind === 'version')) {
    if (!versions.has(n.service)) versions.set(n.service, []);
    versions.get(n.service).push(n);
  }
  let y = TOP;
  for (const svc of snap.nodes.filter((n) => n.kind === 'service').sort(byText(displayName))) {
    const top = y;
    for (const v of (versions.get(svc.service) || []).sort(byText((n) => n.name))) {
      y += place(v, y).h + gap;
    }
    const bottom = Math.max(y - gap, top + NODE_H);
    place(svc, (top + bottom) / 2 - NODE_H / 2);
    y = bottom + gap + BLOCK_GAP;
  }
  const feeds = new Map();
  for (const h of hops.filter((h) => h.kind === 'entry')) {
    const s = nodes.get(h.to);
    if (!s) continue;
    if (!feeds.has(h.from)) feeds.set(h.from, []);
    feeds.get(h.from).push(s.y + s.h / 2);
  }
  const sources = snap.nodes
    .filter((n) => n.kind === 'source')
    .map((n) => {
      const ys = feeds.get(n.id) || [TOP];
      return { n, centre: ys.reduce((a, b) => a + b, 0) / ys.length };
    })
    .sort((a, b) => a.centre - b.centre);
  let floor = TOP;
  for (const { n, centre } of sources) {
    const p = place(n, Math.max(centre - NODE_H / 2, floor));
    floor = p.y + p.h + ROW_GAP.min;
  }
  let bottom = TOP;
  for (const n of nodes.values()) bottom = Math.max(bottom, n.y + n.h);
  return { nodes, col, height: bottom + MARGIN };
}

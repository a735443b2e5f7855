// The traffic graph as inline SVG, in three columns: entry (gateway or mesh) → service →
// version. The snapshot's edges run from a source straight to a version node; they are drawn
// as two hops through the service node and summed per hop, as in a versioned-app graph.

import {
  svg, shortService, serviceDetail, versionName, sourceName,
  fmtRate, fmtPct, fmtMs, health, clip,
} from './format.js';

const WIDTH = { source: 180, service: 190, version: 220 };
const MIN_WIDTH = 980;
const MARGIN = 24;
const TOP = 52; // column titles sit above the first row
// Between version nodes: at least room for two stacked edge labels, at most what keeps a
// node's edges short; in between, the graph spreads out to fill the pane's height.
const ROW_GAP = { min: 60, max: 150 };
const BLOCK_GAP = 24; // extra space between one service's versions and the next service's
const NODE_H = 74;
const LINE = 15;
const MAX_WORKLOADS = 3;
const CHAR_W = 7.3; // advance of the 12px monospace used in edge labels
const TITLE_W = 8.6; // average advance of the bold 14.5px node titles
const DETAIL_W = 7; // average advance of 12px node details
const TEXT_X = 38; // node text starts right of the icon
const LABEL_PAD = 6;

// Sums graph edges into one drawn hop per (from, to, mirror).
function addTo(map, key, base, e) {
  let hop = map.get(key);
  if (!hop) {
    hop = { ...base, rps: 0, requests: 0, errors: 0, p99: null, parts: [] };
    map.set(key, hop);
  }
  hop.rps += e.rps;
  hop.requests += e.requests;
  hop.errors += e.error_rate * e.requests;
  // The p99 of a sum is not known from the parts; the largest part's is its upper bound.
  if (e.p99_ms !== null && e.p99_ms !== undefined) hop.p99 = Math.max(hop.p99 ?? 0, e.p99_ms);
  hop.parts.push(e);
  return hop;
}

function hopsOf(snap) {
  const entry = new Map();
  const version = new Map();
  for (const e of snap.edges) {
    const svc = `service:${e.service}`;
    addTo(entry, `${e.source}\n${svc}\n${e.mirror}`, { kind: 'entry', from: e.source, to: svc, mirror: e.mirror }, e);
    addTo(version, `${svc}\n${e.target}\n${e.mirror}`, { kind: 'version', from: svc, to: e.target, mirror: e.mirror }, e);
  }
  const hops = [...entry.values(), ...version.values()];
  for (const h of hops) h.errorRate = h.requests > 0 ? h.errors / h.requests : 0;
  return hops;
}

// Request rate and errors per node, from the hops: a source or service counts the requests
// routed through it (mirror copies are extra work, not client traffic), a version everything
// it receives.
function nodeTraffic(hops) {
  const traffic = new Map();
  const add = (id, h) => {
    const t = traffic.get(id) || { rps: 0, requests: 0, errors: 0 };
    t.rps += h.rps;
    t.requests += h.requests;
    t.errors += h.errors;
    traffic.set(id, t);
  };
  for (const h of hops) {
    if (h.kind === 'version') add(h.to, h);
    else if (!h.mirror) {
      add(h.from, h);
      add(h.to, h);
    }
  }
  return traffic;
}

// Requests per (virtual host, route) without mirrors: the denominator of observed shares.
function routeTotals(snap) {
  const totals = new Map();
  for (const e of snap.edges) {
    if (e.mirror) continue;
    const k = `${e.virtual_host}\n${e.route}`;
    totals.set(k, (totals.get(k) || 0) + e.requests);
  }
  return totals;
}

// Configured weight and observed share of a version hop, one entry per route that sends
// traffic there (a route bound on several ports counts once, with all its requests).
function splitsOf(hop, totals) {
  const byRoute = new Map();
  for (const e of hop.parts) {
    if (e.mirror || e.configured_weight === null || e.configured_weight === undefined) continue;
    let s = byRoute.get(e.route);
    if (!s) {
      s = { route: e.route, weight: e.configured_weight, share: e.configured_share, requests: 0, total: 0, groups: new Set() };
      byRoute.set(e.route, s);
    }
    s.requests += e.requests;
    const group = `${e.virtual_host}\n${e.route}`;
    if (!s.groups.has(group)) {
      s.groups.add(group);
      s.total += totals.get(group) || 0;
    }
  }
  return [...byRoute.values()].map((s) => ({ ...s, observed: s.total > 0 ? s.requests / s.total : null }));
}

// A service without a VirtualService still has its implicit `default` route; while idle it
// only adds lines to services that get their traffic another way (e.g. through a gateway).
function visible(snap) {
  const edges = snap.edges.filter((e) => e.requests > 0 || e.route !== 'default');
  const used = new Set();
  for (const e of edges) {
    used.add(e.source);
    used.add(`service:${e.service}`);
    used.add(e.target);
  }
  return { ...snap, edges, nodes: snap.nodes.filter((n) => used.has(n.id)) };
}

// The node's stable name (its `data-node`), as tests and people refer to it.
function displayName(n) {
  if (n.kind === 'source') return sourceName(n.name);
  if (n.kind === 'service') return shortService(n.service);
  return versionName(n);
}

// The bold first line: the source's kind alone (its gateways go on the detail line).
function titleOf(n) {
  if (n.kind === 'source') return n.name.split(':')[0];
  return displayName(n);
}

function detailOf(n) {
  if (n.kind === 'source') {
    if (n.name === 'mesh') return 'sidecar outbound';
    // `gateway:ns/a,ns/b`: the names alone fit; the namespaces are in the tooltip.
    return n.name.slice(n.name.indexOf(':') + 1).split(',').map((g) => g.split('/').pop()).join(', ');
  }
  if (n.kind === 'service') return serviceDetail(n.service);
  return null;
}

const fits = (w, advance) => Math.floor((w - TEXT_X - 10) / advance);

function workloadLines(n) {
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
function layout(snap, hops, width, height) {
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

function arrowMarkers() {
  const defs = svg('defs');
  for (const cls of ['healthy', 'degraded', 'failing', 'idle', 'mirror']) {
    const m = svg('marker', {
      id: `arrow-${cls}`, class: `arrowhead ${cls}`, viewBox: '0 0 10 10', refX: 9, refY: 5,
      markerWidth: 9, markerHeight: 9, markerUnits: 'userSpaceOnUse', orient: 'auto',
    });
    m.append(svg('path', { d: 'M0,0 L10,5 L0,10 z' }));
    defs.append(m);
  }
  return defs;
}

function kindIcon(kind) {
  // Shapes as in common mesh graphs: diamond for the entry, triangle for a service, circle
  // for a version.
  if (kind === 'source') return svg('path', { class: 'icon', d: 'M20,15 L28,23 L20,31 L12,23 z' });
  if (kind === 'service') return svg('path', { class: 'icon', d: 'M20,15 L28,30 L12,30 z' });
  return svg('circle', { class: 'icon', cx: 20, cy: 23, r: 7.5 });
}

function drawNode(n) {
  const cls = health(n.rps, n.error_rate);
  const g = svg('g', {
    class: `node ${n.kind} ${cls}`,
    transform: `translate(${n.x},${n.y})`,
    'data-node': n.label,
    'data-id': n.id,
    'data-kind': n.kind,
    'data-rate': n.rps.toFixed(3),
    'data-error-rate': n.error_rate.toFixed(4),
    'data-service': n.service,
    'data-subset': n.subset,
  });
  const tip = [n.label, n.service, n.version && `version label ${n.version}`,
    `${fmtRate(n.rps)}, ${fmtPct(n.error_rate)} errors`].filter(Boolean);
  g.append(svg('title', {}, tip.join('\n')));
  g.append(svg('rect', { class: 'box', width: n.w, height: n.h, rx: 9 }));
  g.append(kindIcon(n.kind));
  g.append(svg('text', { class: 'title', x: TEXT_X, y: 28 }, clip(titleOf(n), fits(n.w, TITLE_W))));
  const metrics = svg('text', { class: 'metrics', x: TEXT_X, y: 47 });
  metrics.append(svg('tspan', { class: 'rate' }, fmtRate(n.rps)));
  if (n.rps) {
    metrics.append(svg('tspan', { class: `err ${cls}` }, ` · ${fmtPct(n.error_rate)} err`));
  }
  g.append(metrics);
  const extra = n.kind === 'version' ? workloadLines(n) : [detailOf(n)];
  extra.forEach((line, i) => {
    const cls = n.kind === 'version' ? 'workload' : 'detail';
    g.append(svg('text', { class: cls, x: TEXT_X, y: 64 + i * LINE }, clip(line, fits(n.w, DETAIL_W))));
  });
  return g;
}

// The label lines of a hop: each line a list of [text, class] runs.
function labelLines(hop, totals) {
  const err = [`${fmtPct(hop.errorRate)} err`, `err ${health(hop.rps, hop.errorRate)}`];
  const lines = hop.requests > 0
    ? [[[fmtRate(hop.rps), 'rate'], [' · '], err], [[`p99 ${fmtMs(hop.p99)}`]]]
    : [[['no traffic', 'muted']]];
  if (hop.mirror) {
    const pct = [...new Set(hop.parts.map((e) => e.mirror_percentage).filter((p) => p !== undefined))];
    lines.push([['mirror ', 'muted'], [pct.length ? pct.map((p) => `${p}%`).join(', ') : 'copies', 'weight']]);
    return { lines, splits: [] };
  }
  if (hop.kind !== 'version') return { lines, splits: [] };
  const splits = splitsOf(hop, totals);
  for (const s of splits.slice(0, 3)) {
    const drift = s.observed !== null && s.share !== null && Math.abs(s.observed - s.share) > 0.05;
    const runs = splits.length > 1 ? [[`${clip(s.route, 14)} `, 'muted']] : [['weight ', 'muted']];
    runs.push([String(s.weight), 'weight']);
    runs.push([' → ', 'muted']);
    runs.push([s.observed === null ? 'idle' : fmtPct(s.observed), drift ? 'observed drift' : 'observed']);
    lines.push(runs);
  }
  return { lines, splits };
}

function drawLabel(cx, cy, lines, forEdge) {
  const width = Math.max(...lines.map((l) => l.reduce((n, [t]) => n + t.length, 0))) * CHAR_W + 2 * LABEL_PAD;
  const height = lines.length * LINE + LABEL_PAD;
  const g = svg('g', { class: 'edge-label', 'data-label-for': forEdge, transform: `translate(${cx - width / 2},${cy - height / 2})` });
  g.append(svg('rect', { width, height, rx: 5 }));
  lines.forEach((runs, i) => {
    const t = svg('text', { x: LABEL_PAD, y: LABEL_PAD / 2 + LINE * (i + 1) - 3.5 });
    for (const [text, cls] of runs) t.append(svg('tspan', { class: cls }, text));
    g.append(t);
  });
  return g;
}

function drawHop(hop, nodes, maxRps, totals, hops) {
  const a = nodes.get(hop.from);
  const b = nodes.get(hop.to);
  if (!a || !b) return null;
  // A mirror running alongside a routed hop between the same nodes is drawn just below it.
  const twin = hop.mirror && hops.some((h) => !h.mirror && h.from === hop.from && h.to === hop.to);
  const off = twin ? 10 : 0;
  const x1 = a.x + a.w;
  const y1 = a.y + a.h / 2 + off;
  const x2 = b.x - 1;
  const y2 = b.y + b.h / 2 + off;
  const dx = (x2 - x1) / 2;
  const at = (t) => {
    // A point of the cubic Bézier drawn below (control points level with each end).
    const u = 1 - t;
    return [
      u * u * u * x1 + 3 * u * u * t * (x1 + dx) + 3 * u * t * t * (x2 - dx) + t * t * t * x2,
      u * u * u * y1 + 3 * u * u * t * y1 + 3 * u * t * t * y2 + t * t * t * y2,
    ];
  };
  const cls = health(hop.rps, hop.errorRate);
  const marker = hop.mirror && (cls === 'healthy' || cls === 'idle') ? 'mirror' : cls;
  const name = `${a.label} → ${b.label}${hop.mirror ? ' (mirror)' : ''}`;
  const { lines, splits } = labelLines(hop, totals);
  const first = splits[0];
  const g = svg('g', {
    class: `edge ${hop.kind} ${cls}${hop.mirror ? ' mirror' : ''}`,
    'data-edge': name,
    'data-from': a.label,
    'data-to': b.label,
    'data-hop': hop.kind,
    'data-mirror': String(hop.mirror),
    'data-rate': hop.rps.toFixed(3),
    'data-requests': hop.requests,
    'data-error-rate': hop.errorRate.toFixed(4),
    'data-p99': hop.p99 === null ? '' : hop.p99.toFixed(2),
    'data-weight': splits.map((s) => s.weight).join(','),
    'data-observed': first && first.observed !== null ? first.observed.toFixed(4) : '',
  });
  const routes = [...new Set(hop.parts.map((e) => `${e.route} (${e.virtual_host})`))];
  g.append(svg('title', {}, [name, ...routes.map((r) => `route ${r}`),
    `${hop.requests} requests in the window`].join('\n')));
  g.append(svg('path', {
    d: `M${x1},${y1} C${x1 + dx},${y1} ${x2 - dx},${y2} ${x2},${y2}`,
    'stroke-width': (1.5 + 4.5 * Math.sqrt(maxRps > 0 ? hop.rps / maxRps : 0)).toFixed(2),
    'marker-end': `url(#arrow-${marker})`,
  }));
  // A mirror beside routed traffic into a service would put its label on the routed one's;
  // its numbers are on the hop into the mirrored version anyway.
  if (twin && hop.kind === 'entry') return { edge: g, label: null };
  // Hops fanning out of a service to its versions get their labels past the middle, where
  // the curves are further apart.
  const [lx, ly] = at(hop.kind === 'version' ? 0.6 : 0.5);
  return { edge: g, label: drawLabel(lx, ly, lines, name) };
}

function columnTitles(col, width) {
  const g = svg('g', { class: 'columns' });
  g.append(svg('text', { x: col.source, y: 26 }, 'ENTRY'));
  g.append(svg('text', { x: col.service, y: 26 }, 'SERVICES'));
  g.append(svg('text', { x: col.version, y: 26 }, 'VERSIONS · WORKLOADS'));
  g.append(svg('line', { x1: MARGIN, x2: width - MARGIN, y1: 36, y2: 36 }));
  return g;
}

// Redraws the graph for `snap` to fit a pane of `available` pixels ({ width, height });
// returns whether anything is drawn.
export function renderGraph(root, full, available) {
  const snap = full && visible(full);
  if (!snap || snap.nodes.length === 0) {
    root.replaceChildren();
    return false;
  }
  const width = Math.max(MIN_WIDTH, Math.floor(available.width));
  const hops = hopsOf(snap);
  const totals = routeTotals(snap);
  const { nodes, col, height } = layout(snap, hops, width, available.height);
  const maxRps = Math.max(0, ...hops.map((h) => h.rps));
  const edges = svg('g', { class: 'edges' });
  const labels = svg('g', { class: 'labels' });
  // Mirrors first, so routed traffic is drawn on top where they cross.
  for (const hop of [...hops].sort((p, q) => Number(q.mirror) - Number(p.mirror))) {
    const drawn = drawHop(hop, nodes, maxRps, totals, hops);
    if (!drawn) continue;
    edges.append(drawn.edge);
    if (drawn.label) labels.append(drawn.label);
  }
  const nodeLayer = svg('g', { class: 'nodes' });
  for (const n of nodes.values()) nodeLayer.append(drawNode(n));
  root.setAttribute('viewBox', `0 0 ${width} ${height}`);
  root.setAttribute('width', width);
  root.setAttribute('height', height);
  root.replaceChildren(arrowMarkers(), columnTitles(col, width), edges, nodeLayer, labels);
  return true;
}

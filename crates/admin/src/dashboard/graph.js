// The traffic graph as inline SVG, in three columns: entry (gateway or mesh) → service →
// version. The snapshot's edges run from a source straight to a version node; they are drawn
// as two hops through the service node and summed per hop, as in a versioned-app graph.

import { svg, fmtRate, fmtPct, fmtMs, health, clip } from './format.js';
import { hopsOf, routeTotals, splitsOf, visible } from './hops.js';
import {
  layout, titleOf, detailOf, workloadLines, fits, MARGIN, LINE, TEXT_X,
} from './layout.js';

const MIN_WIDTH = 980;
const CHAR_W = 7.3; // advance of the 12px monospace used in edge labels
const TITLE_W = 8.6; // average advance of the bold 14.5px node titles
const DETAIL_W = 7; // average advance of 12px node details
const LABEL_PAD = 6;

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

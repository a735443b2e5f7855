// Shared helpers: element builders, names and number formats used by the graph and the panel.

const SVG_NS = 'http://www.w3.org/2000/svg';

// An SVG element with attributes; `text` (if given) goes in as text, never as markup.
export function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  }
  if (text !== undefined) el.textContent = text;
  return el;
}

// An HTML element with attributes and children (strings become text nodes).
export function html(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') el.className = v;
    else el.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

const CLUSTER_SUFFIX = '.svc.cluster.local';

// `reviews.default.svc.cluster.local` → `reviews`; other hosts are kept whole, since their
// first label alone would be ambiguous (`api.example.com`).
export function shortService(host) {
  if (host && host.endsWith(CLUSTER_SUFFIX)) return host.split('.')[0];
  return host || '?';
}

// The namespace of an in-cluster host, or the host itself for anything else.
export function serviceDetail(host) {
  if (host && host.endsWith(CLUSTER_SUFFIX)) return `ns ${host.split('.')[1]}`;
  return 'external';
}

// The version node's label: `<service> <subset>`, else `<service> <version label seen>`, else
// the service alone (a destination without subset that has had no traffic yet).
export function versionName(node) {
  const which = node.subset || node.version;
  return which ? `${shortService(node.service)} ${which}` : shortService(node.service);
}

// `gateway:default/gw` → `gateway default/gw`; `mesh` stays.
export function sourceName(name) {
  const i = name.indexOf(':');
  return i < 0 ? name : `${name.slice(0, i)} ${name.slice(i + 1)}`;
}

export function fmtRate(rps) {
  if (!rps) return '0 rps';
  if (rps < 1) return `${rps.toFixed(2)} rps`;
  if (rps < 100) return `${rps.toFixed(1)} rps`;
  return `${Math.round(rps)} rps`;
}

// A share in 0..1 as a percentage; small non-zero values keep a decimal so they do not read 0.
export function fmtPct(share) {
  if (share === null || share === undefined) return '–';
  const p = share * 100;
  if (p === 0) return '0%';
  if (p < 10 || p % 1 !== 0) return `${p.toFixed(1)}%`;
  return `${p.toFixed(0)}%`;
}

export function fmtMs(ms) {
  if (ms === null || ms === undefined) return '–';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 10) return `${Math.round(ms)} ms`;
  return `${ms.toFixed(1)} ms`;
}

// Health of a node or edge, as a CSS class: errors from 0.1 % are degraded, from 5 % failing.
export function health(rps, errorRate) {
  if (!rps) return 'idle';
  if (errorRate >= 0.05) return 'failing';
  if (errorRate >= 0.001) return 'degraded';
  return 'healthy';
}

export function clockTime(ms) {
  return new Date(ms).toLocaleTimeString([], { hour12: false });
}

// `12 s ago`, `3 min ago`: for reload times, which matter relative to now.
export function ago(ms, now = Date.now()) {
  const s = Math.max(0, Math.round((now - ms) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  return `${Math.floor(s / 3600)} h ago`;
}

// Cuts a label to `max` characters with an ellipsis (the full text goes in a tooltip).
export function clip(text, max) {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

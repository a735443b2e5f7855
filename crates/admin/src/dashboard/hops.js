// The numbers behind the drawing: the snapshot's edges (source → version) summed into the
// hops that are drawn (source → service, service → version), per-node traffic, and each
// route's configured weight against its observed share.

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

export function hopsOf(snap) {
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
export function nodeTraffic(hops) {
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
export function routeTotals(snap) {
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
export function splitsOf(hop, totals) {
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
export function visible(snap) {
  const edges = snap.edges.filter((e) => e.requests > 0 || e.route !== 'default');
  const used = new Set();
  for (const e of edges) {
    used.add(e.source);
    used.add(`service:${e.service}`);
    used.add(e.target);
  }
  return { ...snap, edges, nodes: snap.nodes.filter((n) => used.has(n.id)) };
}

// The side panel: the outcome of the last config reload, and every VirtualService with its
// configured weights next to the share of requests each destination actually received.

import { html, shortService, fmtPct, clockTime, ago } from './format.js';

function position(d) {
  if (!d.file) return null;
  const loc = d.location ? `:${d.location.line}:${d.location.column}` : '';
  return `${d.file}${loc}`;
}

function diagnosticItem(d) {
  const object = d.resource && `${d.resource.kind} ${d.resource.namespace}/${d.resource.name}`;
  return html('li', { class: `diag ${d.severity}` },
    html('span', { class: 'code' }, d.code),
    html('span', { class: 'message' }, d.message),
    position(d) && html('span', { class: 'where file' }, position(d)),
    (object || d.field) && html('span', { class: 'where' }, [object, d.field && html('code', {}, d.field)]
      .filter(Boolean).flatMap((x, i) => (i ? [' · ', x] : [x]))));
}

function diagnosticList(diags, max = 8) {
  const shown = diags.slice(0, max);
  return html('ul', { class: 'diags' }, shown.map(diagnosticItem),
    diags.length > max && html('li', { class: 'more' }, `… ${diags.length - max} more in /config_dump`));
}

// Renders `/api/reload` into the reload card.
export function renderReload(card, body, status) {
  card.dataset.status = status.status;
  const parts = [];
  const a = status.active;
  if (!a) {
    parts.push(html('p', { class: 'muted' }, 'No configuration loaded yet.'));
  } else {
    const when = a.published_at_ms ? `${clockTime(a.published_at_ms)} (${ago(a.published_at_ms)})` : '–';
    parts.push(html('div', { class: 'reload-line' },
      html('span', { class: `badge ${status.status}` }, status.status === 'rejected' ? 'last reload rejected' : 'accepted'),
      html('div', {}, `version ${a.version} active since ${when}`)));
    const notable = a.diagnostics.filter((d) => d.severity !== 'info');
    if (notable.length > 0) {
      parts.push(html('p', { class: 'sub' }, `${a.warnings} warning${a.warnings === 1 ? '' : 's'}${a.errors ? `, ${a.errors} errors` : ''} in the active config:`));
      parts.push(diagnosticList(notable, 4));
    }
  }
  const r = status.last_rejected;
  if (r) {
    const when = `${clockTime(r.at_unix_secs * 1000)} (${ago(r.at_unix_secs * 1000)})`;
    if (status.status === 'rejected') {
      parts.push(html('div', { class: 'rejected-box' },
        html('p', {}, `Reload ${r.version} was rejected at ${when}; version ${a ? a.version : '–'} stays in force.`),
        diagnosticList(r.diagnostics.filter((d) => d.severity === 'error').concat(r.diagnostics.filter((d) => d.severity !== 'error')))));
    } else {
      parts.push(html('p', { class: 'sub' }, `Earlier rejected reload: version ${r.version} at ${when}, since superseded.`));
    }
  }
  body.classList.remove('muted');
  body.replaceChildren(...parts);
}

// Requests per (route, service, subset) and per route, from the graph snapshot.
function observedShares(graph) {
  const hits = new Map();
  const totals = new Map();
  for (const e of (graph && graph.edges) || []) {
    if (e.mirror) continue;
    const k = `${e.route}\n${e.service}\n${e.subset ?? ''}`;
    hits.set(k, (hits.get(k) || 0) + e.requests);
    const t = `${e.route}\n${e.service}`;
    totals.set(t, (totals.get(t) || 0) + e.requests);
  }
  // A route's total counts only requests to the services the rule sends to, so rules that
  // share a name in different VirtualServices do not mix.
  return (rule, d) => {
    const services = new Set(rule.destinations.map((x) => x.service));
    let total = 0;
    for (const s of services) total += totals.get(`${rule.route}\n${s}`) || 0;
    if (total === 0) return null;
    return (hits.get(`${rule.route}\n${d.service}\n${d.subset ?? ''}`) || 0) / total;
  };
}

function destinationRow(rule, d, observed) {
  const name = `${shortService(d.service)}${d.subset ? ` ${d.subset}` : ''}`;
  const seen = observed(rule, d);
  const configured = html('span', { class: 'configured' });
  configured.style.width = `${(d.share * 100).toFixed(2)}%`;
  const bar = html('div', { class: 'bar', title: `configured ${fmtPct(d.share)}, observed ${fmtPct(seen)}` }, configured);
  if (seen !== null) {
    const tick = html('span', { class: 'observed' });
    tick.style.left = `${(seen * 100).toFixed(2)}%`;
    bar.append(tick);
  }
  return html('div', {
    class: 'dest', 'data-destination': name, 'data-weight': d.weight,
    'data-observed': seen === null ? '' : seen.toFixed(4),
  },
  html('span', { class: 'dest-name', title: d.service }, d.subset || shortService(d.service)),
  bar,
  html('span', { class: 'dest-nums' }, html('b', {}, String(d.weight)), html('span', { class: 'arrow' }, ' → '),
    seen === null ? html('span', { class: 'muted' }, 'idle') : fmtPct(seen)));
}

function ruleBlock(rule, observed) {
  const what = rule.action === 'forward'
    ? (rule.catch_all ? 'all requests' : 'matched requests')
    : rule.action.replace('_', ' ');
  return html('div', { class: 'rule', 'data-route': rule.route },
    html('div', { class: 'rule-head' },
      html('span', { class: 'rule-name' }, `#${rule.index} ${rule.route}`),
      html('span', { class: 'muted' }, ` · ${what} · ${[...rule.sources].join(', ')}`)),
    rule.destinations.map((d) => destinationRow(rule, d, observed)),
    rule.mirrors.map((m) => html('div', { class: 'mirror-row' },
      html('span', { class: 'mirror-icon', 'aria-hidden': 'true' }),
      `mirror ${fmtPct(m.percentage / 100)} to ${shortService(m.service)}${m.subset ? ` ${m.subset}` : ''}`)));
}

// Renders `/api/virtualservices` into the list, with observed shares from the graph; the
// caption explaining the bars shows only when there are bars.
export function renderVirtualServices(list, caption, doc, graph, host) {
  const vss = doc.virtual_services || [];
  caption.hidden = vss.length === 0;
  if (vss.length === 0) {
    const none = host
      ? `No VirtualService names ${host}.`
      : 'No VirtualServices: every service gets its default route.';
    list.replaceChildren(html('p', { class: 'muted' }, none));
    return;
  }
  // At scale the admin answers the first page only: say so, and how to find the others.
  const total = doc.query?.totalVirtualServices;
  const more = total != null && total > vss.length
    ? html('p', { class: 'caption', id: 'vs-more' },
      `The first ${vss.length} of ${total} VirtualServices; filter by host to find one.`)
    : null;
  const observed = observedShares(graph);
  list.classList.remove('muted');
  list.replaceChildren(...vss.map((vs) => html('div', { class: 'vs', 'data-vs': `${vs.namespace}/${vs.name}` },
    html('div', { class: 'vs-head' },
      html('span', { class: 'vs-name' }, vs.name),
      html('span', { class: 'ns' }, vs.namespace)),
    html('div', { class: 'hosts' },
      `hosts ${vs.hosts.join(', ')}`,
      vs.gateways.length > 0 && ` · gateways ${vs.gateways.join(', ')}`),
    vs.rules.length > 0
      ? vs.rules.map((r) => ruleBlock(r, observed))
      : html('p', { class: 'muted' }, 'Not applied by this proxy (no listener serves its hosts and gateways).'))),
  ...(more ? [more] : []));
}

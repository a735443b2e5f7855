// The canaries card: each canary's phase and weight, every metric of the last check against its
// range, time in the stage, the rollback reason and the latest history.

import { html, clockTime } from './format.js';

function range(m) {
  if (m.min != null && m.max != null) return `${m.min}..${m.max}`;
  if (m.min != null) return `≥ ${m.min}`;
  if (m.max != null) return `≤ ${m.max}`;
  return 'any';
}

function stageText(c) {
  if (c.mirror != null) return `mirroring ${c.mirror} % to ${c.canarySubset}`;
  if (c.matched) return `A/B: match rules to ${c.canarySubset}`;
  return `${100 - c.weight} % ${c.stableSubset} · ${c.weight} % ${c.canarySubset}`;
}

function canaryItem(c) {
  const metrics = (c.lastCheck && c.lastCheck.metrics) || [];
  const history = (c.history || []).slice(-5).reverse();
  return html('div', { class: 'canary', 'data-phase': c.phase },
    html('div', { class: 'canary-head' },
      html('span', { class: `badge phase-${c.phase.toLowerCase()}` }, c.phase),
      html('strong', {}, `${c.namespace}/${c.name}`),
      html('span', { class: 'muted' }, ` → VirtualService ${c.virtualService}`)),
    html('div', { class: 'canary-weight' },
      html('div', { class: 'bar' }, html('div', { class: 'fill', style: `width:${c.weight}%` })),
      html('span', {}, stageText(c))),
    html('div', { class: 'sub' },
      `stage ${c.stage + 1} of ${(c.stages || []).length} · ${Math.round(c.timeInStageMs / 1000)} s in stage · failed checks ${c.failedChecks}/${c.threshold}`),
    metrics.length > 0 && html('ul', { class: 'metrics' }, metrics.map((m) =>
      html('li', { class: m.ok ? 'ok' : 'fail' },
        html('span', {}, m.name),
        html('span', {}, m.value == null ? 'no data' : m.value.toFixed(1)),
        html('span', { class: 'muted' }, range(m))))),
    html('p', { class: 'sub' }, c.message),
    c.rollbackReason && html('p', { class: 'rollback' }, `rollback: ${c.rollbackReason}`),
    history.length > 0 && html('ul', { class: 'history' }, history.map((h) =>
      html('li', {}, `${clockTime(h.atMs)} ${h.phase} ${h.weight} % · ${h.message}`))));
}

// Renders `/api/canaries` into the canaries card (hidden when there is none).
export function renderCanaries(card, body, list) {
  card.hidden = !Array.isArray(list) || list.length === 0;
  if (card.hidden) return;
  body.classList.remove('muted');
  body.replaceChildren(...list.map(canaryItem));
}

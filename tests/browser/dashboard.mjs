// Opens the admin dashboard in headless Chromium and checks what a person would see: the
// expected nodes with traffic, the expected weights on the edges and in the side panel, and
// live updates from the feed; with --filter, that the host filter shows that host's graph and
// VirtualServices, and a host nobody names shows none. Saves a screenshot.
//
// usage: node dashboard.mjs ADMIN_URL [--screenshot FILE] [--viewport WxH] [--node NAME]...
//        [--weight N]... [--filter HOST]
// Prints one JSON summary line on success; exits non-zero with a reason otherwise.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const STEP_MS = 10_000;
const TOTAL_MS = 45_000;
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

function parseArgs(argv) {
  const opts = { url: null, screenshot: null, viewport: { width: 1440, height: 900 }, nodes: [], weights: [], filter: null };
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (a === '--screenshot') opts.screenshot = argv[++i];
    else if (a === '--viewport') {
      const [width, height] = argv[++i].split('x').map(Number);
      opts.viewport = { width, height };
    } else if (a === '--node') opts.nodes.push(argv[++i]);
    else if (a === '--weight') opts.weights.push(argv[++i]);
    else if (a === '--filter') opts.filter = argv[++i];
    else if (!opts.url) opts.url = a;
    else throw new Error(`unexpected argument ${a}`);
  }
  if (!opts.url) throw new Error('usage: node dashboard.mjs ADMIN_URL [--screenshot FILE] [--viewport WxH] [--node NAME]... [--weight N]... [--filter HOST]');
  return opts;
}

function fail(message) {
  console.log(`FAIL: ${message}`);
  process.exitCode = 1;
}

async function check(page, opts) {
  await page.goto(opts.url, { waitUntil: 'load', timeout: STEP_MS });

  // Every expected node is drawn with a non-zero request rate.
  await page.waitForFunction((names) => names.every((n) => {
    const el = document.querySelector(`.node[data-node="${CSS.escape(n)}"]`);
    return el && Number(el.dataset.rate) > 0;
  }), opts.nodes, { timeout: STEP_MS });

  // The graph keeps being redrawn from the feed (one event a second).
  const before = Number(await page.getAttribute('body', 'data-updates'));
  await page.waitForFunction((n) => Number(document.body.dataset.updates) >= n + 2, before, { timeout: STEP_MS });

  // The side panel has loaded the VirtualServices.
  await page.waitForSelector('.vs .dest', { timeout: STEP_MS });

  const seen = await page.evaluate(() => ({
    feed: document.getElementById('feed-status').dataset.state,
    updates: Number(document.body.dataset.updates),
    nodes: [...document.querySelectorAll('.node')].map((n) => ({
      node: n.dataset.node, kind: n.dataset.kind, rate: Number(n.dataset.rate),
    })),
    edges: [...document.querySelectorAll('.edge')].map((e) => ({
      edge: e.dataset.edge, hop: e.dataset.hop, rate: Number(e.dataset.rate),
      weight: e.dataset.weight, observed: e.dataset.observed, mirror: e.dataset.mirror === 'true',
    })),
    labels: [...document.querySelectorAll('.edge-label')]
      .map((l) => [...l.querySelectorAll('text')].map((t) => t.textContent).join('\n')),
    panel: [...document.querySelectorAll('.dest')].map((d) => ({
      destination: d.dataset.destination, weight: d.dataset.weight, observed: d.dataset.observed,
    })),
    reload: document.getElementById('reload').dataset.status,
  }));

  const problems = [];
  if (seen.feed !== 'live') problems.push(`feed status is ${seen.feed}`);
  for (const w of opts.weights) {
    if (!seen.edges.some((e) => e.hop === 'version' && e.weight.split(',').includes(w))) {
      problems.push(`no version edge carries weight ${w}`);
    }
    if (!seen.labels.some((l) => new RegExp(`^weight ${w} →`, 'm').test(l))) {
      problems.push(`no edge label reads "weight ${w} →"`);
    }
    if (!seen.panel.some((d) => d.weight === w)) problems.push(`the side panel shows no weight ${w}`);
  }
  for (const n of opts.nodes) {
    const edge = seen.edges.find((e) => e.hop === 'version' && e.edge.endsWith(`→ ${n}`));
    if (!edge || !(edge.rate > 0) || edge.observed === '') problems.push(`edge into ${n} has no observed traffic`);
  }
  if (seen.reload !== 'accepted') problems.push(`reload status is ${seen.reload}`);
  if (opts.filter) problems.push(...await checkFilter(page, opts));
  return { seen, problems };
}

// The host filter: the host's graph and VirtualServices, redrawn each second; a host nobody
// names gives an empty panel that says so; cleared, the feed's graph comes back.
async function checkFilter(page, opts) {
  const problems = [];
  const redrawn = async () => {
    const at = Number(await page.getAttribute('body', 'data-updates'));
    await page.waitForFunction((n) => Number(document.body.dataset.updates) >= n + 2, at, { timeout: STEP_MS });
  };
  const drawn = () => page.evaluate(() => ({
    nodes: [...document.querySelectorAll('.node')].map((n) => n.dataset.node),
    vs: [...document.querySelectorAll('.vs')].map((v) => v.dataset.vs),
    panel: document.getElementById('vs-list').textContent,
  }));
  await page.fill('#host-filter', opts.filter);
  await page.waitForFunction((h) => document.body.dataset.host === h, opts.filter, { timeout: STEP_MS });
  await redrawn();
  const one = await drawn();
  for (const n of opts.nodes) if (!one.nodes.includes(n)) problems.push(`filtered on ${opts.filter}, no node ${n}`);
  if (one.vs.length === 0) problems.push(`filtered on ${opts.filter}, no VirtualService listed`);
  const nobody = 'nobody.example.com';
  await page.fill('#host-filter', nobody);
  await page.waitForFunction((h) => document.getElementById('vs-list').textContent.includes(`No VirtualService names ${h}`), nobody, { timeout: STEP_MS });
  const none = await drawn();
  if (none.nodes.some((n) => opts.nodes.includes(n))) problems.push(`filtered on ${nobody}, still drawn: ${none.nodes}`);
  await page.fill('#host-filter', '');
  await page.waitForFunction(() => document.body.dataset.host === '', null, { timeout: STEP_MS });
  await redrawn();
  const all = await drawn();
  for (const n of opts.nodes) if (!all.nodes.includes(n)) problems.push(`filter cleared, no node ${n}`);
  return problems;
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const profile = mkdtempSync(join(tmpdir(), 'sluice-chromium-'));
  const errors = [];
  let context;
  let page;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      timeout: STEP_MS * 2,
      viewport: opts.viewport,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
      ],
    });
    page = context.pages()[0] || await context.newPage();
    page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
    page.setDefaultTimeout(STEP_MS);
    const { seen, problems } = await check(page, opts);
    problems.push(...errors);
    console.log(JSON.stringify(seen));
    if (problems.length > 0) fail(problems.join('; '));
    else console.log('OK: dashboard shows the expected nodes, weights and live updates');
  } catch (e) {
    fail(`${e.message.split('\n')[0]}${errors.length ? ` (${errors.join('; ')})` : ''}`);
  } finally {
    // Taken on failure too: the picture usually tells what went wrong.
    if (page && opts.screenshot) {
      await page.screenshot({ path: opts.screenshot, fullPage: true, timeout: STEP_MS })
        .catch((e) => fail(`screenshot: ${e.message.split('\n')[0]}`));
    }
    if (context) await context.close().catch(() => {});
    rmSync(profile, { recursive: true, force: true });
  }
}

// A hard stop, whatever hangs: the caller also has its own timeout.
const guard = setTimeout(() => {
  console.log(`FAIL: gave up after ${TOTAL_MS / 1000} s`);
  process.exit(2);
}, TOTAL_MS);
guard.unref();
await main();

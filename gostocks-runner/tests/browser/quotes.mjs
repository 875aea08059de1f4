// The dashboard's quotes in Debian's chromium (headless, through playwright-core): the selected
// symbol's quote statistics per window equal GET /quotes, the alert form offers spread_above,
// and the spread alerts are listed with their events.
// Usage: node quotes.mjs <base url> <api key> <symbol> <output dir>   (NODE_PATH: playwright-core)
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

const [base, key, symbol, out] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
fs.mkdirSync(out, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gostocks-chromium-'));
const step = (s) => console.log(`step: ${s}`);

const browser = await chromium.launchPersistentContext(profile, {
  executablePath,
  headless: true,
  viewport: { width: 1280, height: 1000 },
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
let failed = false;
try {
  const page = await browser.newPage();
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  page.on('pageerror', (e) => errors.push(`page error: ${e.message}`));
  await page.goto(base, { waitUntil: 'load' });
  await page.locator(`#symbols tbody tr[data-symbol="${symbol}"]`).waitFor({ timeout: 30000 });
  await page.click(`#symbols tr[data-symbol="${symbol}"] button`);
  await page.waitForFunction(() => document.querySelectorAll('#quotes tbody tr').length >= 2, null, { timeout: 30000 });
  // Each window's row is the one REST serves, decimals as the exact strings.
  const windows = await page.$$eval('#quotes tbody tr', (rows) => rows.map((r) => r.dataset.window));
  for (const w of windows) {
    const res = await page.request.get(new URL(`/quotes/${symbol}?window=${w}`, base).href);
    const q = await res.json();
    const row = page.locator(`#quotes tbody tr[data-window="${w}"]`);
    const cell = async (c) => (await row.locator(`.${c}`).textContent()).trim();
    // The page polls: wait until it shows the row REST has now.
    await page.waitForFunction(([win, t]) => document.querySelector(`#quotes tr[data-window="${win}"]`)?.dataset.time === t,
      [w, String(q.time_ns)], { timeout: 10000 });
    for (const [c, v] of [['bid', q.bid], ['ask', q.ask], ['spread', q.spread], ['count', String(q.quotes)]]) {
      const shown = await cell(c);
      if (shown !== (v ?? '–')) throw new Error(`${w} ${c}: the page shows ${shown}, REST has ${v}`);
    }
    const bps = Number((await cell('bps')).replace(/,/g, ''));
    if (Math.abs(bps - q.mean_spread_bps) > 0.001) throw new Error(`${w} bps: ${bps} vs ${q.mean_spread_bps}`);
    step(`${w}: bid ${q.bid} ask ${q.ask} spread ${q.spread}, mean ${bps} bps over ${q.quotes} quotes`);
  }

  await page.fill('#api-key', key);
  await page.click('#key-form button[type=submit]');
  await page.locator('#alert-form').waitFor({ state: 'visible', timeout: 10000 });
  await page.selectOption('#a-condition', 'spread_above');
  const label = await page.locator('#a-threshold-name').textContent();
  if (label !== 'Spread (bps)') throw new Error(`the threshold is labelled ${label}`);
  await page.waitForFunction(() => [...document.querySelectorAll('#alerts tbody tr')].some((r) => r.textContent.includes('spread above 5 bps')),
    null, { timeout: 10000 });
  step('the form offers spread_above in bps; the spread alerts are listed');
  await page.screenshot({ path: path.join(out, 'quotes.png'), fullPage: true });
} catch (e) {
  failed = true;
  console.error(`FAILED: ${e.message}`);
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
if (errors.length) {
  console.error(`console errors:\n${errors.join('\n')}`);
  failed = true;
}
process.exit(failed ? 1 : 0);

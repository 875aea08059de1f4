// The dashboard's quotes in Debian's chromium (headless, through playwright-core): the selected
// symbol's quote statistics per window equal GET /quotes, the alert form offers spread_above,
// and the spread alerts are listed with their events.
// Usage: node quotes.mjs <base url> <api key> <symbol> <output dir>   (NODE_PATH: playwright-core)
import path from 'node:path';
import { step, withPage } from './chromium.mjs';

const [base, key, symbol, out] = process.argv.slice(2);

await withPage(out, async (page) => {
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
});

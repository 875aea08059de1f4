// Drives the dashboard in Debian's chromium (headless, through playwright-core), as a person
// would: waits for a price to change, for the chart to draw bars, creates an alert through the
// form that the next tick triggers, sees its event arrive, and saves screenshots.
// Usage: node dashboard.mjs <base url> <api key> <output dir>   (NODE_PATH: playwright-core)
import path from 'node:path';
import { leave, step, withPage } from './chromium.mjs';

const [base, key, out] = process.argv.slice(2);

await withPage(out, async (page) => {
  await page.goto(base, { waitUntil: 'load' });
  step('page loaded');
  const row = page.locator('#symbols tbody tr[data-symbol="MSFT"] .price');
  await row.waitFor({ timeout: 30000 });
  await page.waitForFunction(() => {
    const c = document.querySelector('#symbols tr[data-symbol="MSFT"] .price');
    return c && c.textContent !== '–';
  }, null, { timeout: 30000 });
  const first = await row.textContent();
  await page.waitForFunction((p) => document.querySelector('#symbols tr[data-symbol="MSFT"] .price').textContent !== p,
    first, { timeout: 60000 });
  const second = await row.textContent();
  step(`MSFT price changed: ${first} -> ${second}`);

  await page.waitForFunction(() => Number(document.querySelector('#chart').dataset.bars) >= 5, null, { timeout: 60000 });
  const bars = await page.locator('#chart').getAttribute('data-bars');
  // The chart library drew on its canvases: some pixels are not blank.
  const drawn = await page.evaluate(() => [...document.querySelectorAll('#chart canvas')].some((c) => {
    if (!c.width || !c.height) return false;
    const ctx = c.getContext('2d');
    if (!ctx) return false;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i] !== 0) return true;
    return false;
  }));
  if (!drawn) throw new Error('the chart canvases are blank');
  step(`chart drew ${bars} bars`);

  await page.waitForFunction(() => document.querySelectorAll('#stats tbody tr').length >= 2, null, { timeout: 30000 });
  step('stats table filled');

  await page.fill('#api-key', key);
  await page.click('#key-form button[type=submit]');
  await page.locator('#alert-form').waitFor({ state: 'visible', timeout: 10000 });
  step('key accepted');

  // An alert the next MSFT tick fires: price above half the last price, once.
  const symbol = await page.locator('#chart-select').inputValue();
  const last = await page.locator(`#symbols tr[data-symbol="${symbol}"] .price`).textContent();
  const threshold = (Number(last) / 2).toFixed(2);
  await page.selectOption('#a-symbol', symbol);
  await page.selectOption('#a-condition', 'price_above');
  await page.fill('#a-threshold', threshold);
  await page.selectOption('#a-mode', 'once');
  await page.click('#alert-form button[type=submit]');
  await page.waitForFunction(() => /^Created al_/.test(document.querySelector('#alert-message').textContent), null, { timeout: 10000 });
  const id = (await page.locator('#alert-message').textContent()).match(/al_[0-9a-f]+/)[0];
  step(`created ${id}: ${symbol} price_above ${threshold}`);
  await page.locator(`#events li[data-alert="${id}"]`).waitFor({ timeout: 60000 });
  step(`event of ${id} arrived: ${await page.locator(`#events li[data-alert="${id}"]`).textContent()}`);
  await page.waitForFunction((a) => document.querySelector(`#alerts tr[data-alert="${a}"] .badge`)?.textContent === 'triggered',
    id, { timeout: 10000 });
  step('alert listed as triggered, with a Resume button');

  // A storm: once_per_interval fires again each second while the price stays above half, and
  // a guard of one event pauses it at the second; the page shows it paused with Resume.
  await page.selectOption('#a-mode', 'once_per_interval');
  await page.fill('#a-cooldown', '1s');
  await page.selectOption('#a-storm', 'custom');
  await page.fill('#a-storm-max', '1');
  await page.fill('#a-storm-within', '3m');
  await page.click('#alert-form button[type=submit]');
  await page.waitForFunction((prev) => {
    const m = document.querySelector('#alert-message').textContent;
    return /^Created al_/.test(m) && !m.includes(prev);
  }, id, { timeout: 10000 });
  const stormy = (await page.locator('#alert-message').textContent()).match(/al_[0-9a-f]+/)[0];
  await page.waitForFunction((a) => document.querySelector(`#alerts tr[data-alert="${a}"] .badge`)?.textContent === 'paused',
    stormy, { timeout: 60000 });
  const pausedRow = await page.locator(`#alerts tr[data-alert="${stormy}"]`).textContent();
  if (!pausedRow.includes('storm')) throw new Error(`the paused alert does not say why: ${pausedRow}`);
  await page.locator(`#events li[data-alert="${stormy}"]`, { hasText: 'paused (storm)' }).first().waitFor({ timeout: 10000 });
  const resumed = page.waitForResponse((r) => r.url().endsWith(`/alerts/${stormy}/resume`) && r.status() === 200);
  await page.click(`#alerts tr[data-alert="${stormy}"] button:has-text("Resume")`);
  await resumed;
  step(`${stormy} paused by the storm guard, shown with its reason, resumed with its button`);

  // A storm-prone rearm alert is created with a warning, which the page shows.
  await page.selectOption('#a-mode', 'rearm');
  await page.selectOption('#a-storm', 'default');
  await page.fill('#a-cooldown', '');
  await page.click('#alert-form button[type=submit]');
  await page.waitForFunction(() => document.querySelector('#alert-message').textContent.includes('Warning:'), null, { timeout: 10000 });
  step(`warning shown: ${(await page.locator('#alert-message').textContent()).slice(0, 100)}…`);

  // Keyboard: the symbol buttons are reachable and select the chart's symbol.
  await page.focus('#symbols tr[data-symbol="AAPL"] button');
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('#chart-select').value === 'AAPL', null, { timeout: 5000 });
  step('keyboard selects a symbol');

  const shot = path.join(out, 'dashboard.png');
  await page.screenshot({ path: shot, fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(500);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
  if (overflow) throw new Error('the page scrolls sideways at a phone width');
  const phone = path.join(out, 'dashboard-phone.png');
  await page.screenshot({ path: phone, fullPage: true });
  step(`screenshots: ${shot} ${phone}`);

  // The API's page renders every operation of /openapi.json.
  await page.setViewportSize({ width: 1280, height: 1000 });
  await leave(page, new URL('/docs', base).href);
  await page.waitForFunction(() => document.querySelectorAll('#docs section').length >= 20, null, { timeout: 10000 });
  await page.screenshot({ path: path.join(out, 'docs.png') });
  step(`/docs lists ${await page.locator('#docs section').count()} operations`);
});

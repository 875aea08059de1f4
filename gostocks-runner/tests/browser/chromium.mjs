// What the browser tests share: Debian's chromium, headless, through playwright-core, with a
// fresh profile each run; a page that records console errors, page errors and failed requests;
// and an exit code that says whether the test body and the page were clean.
import { createRequire } from 'node:module';
import path from 'node:path';
import fs from 'node:fs';
import os from 'node:os';

const require = createRequire(import.meta.url);
const { chromium } = require('playwright-core');

export const step = (s) => console.log(`step: ${s}`);

// The pages on their way to another address: the requests in flight there are aborted.
const leaving = new Set();

// Takes `page` to `url`: what the page being left still had in flight (a poll, say) is aborted
// by the browser, and is not an error.
export async function leave(page, url) {
  leaving.add(page);
  try {
    await page.goto(url, { waitUntil: 'load' });
  } finally {
    leaving.delete(page);
  }
}

// Runs `body(page)` in a new page, then exits: 0 if it finished and the page logged no error.
export async function withPage(out, body) {
  fs.mkdirSync(out, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'gostocks-chromium-'));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
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
    page.on('requestfailed', (r) => {
      const why = r.failure()?.errorText;
      // Streams are cut when the page closes, and the requests of a page being left (see
      // `leave`) are aborted; anything else failing is an error.
      if (r.url().includes('/stream') || (why === 'net::ERR_ABORTED' && leaving.has(page))) return;
      errors.push(`request failed: ${r.url()} ${why}`);
    });
    await body(page);
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
}

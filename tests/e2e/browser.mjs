// A browser for `atl-token login`, set as $BROWSER: Debian's headless Chromium, driven by
// playwright-core (never a browser of its own download). It opens the URL atl-token gives
// it, signs in and consents on oidc-provider's pages, follows the redirect to atl-token's
// listener, and saves a screenshot and the text of the page it lands on.
//
// Usage: node browser.mjs URL. Environment: SCREENSHOT (the PNG to write; the page's text
// goes beside it, with .txt added), BROWSER_LOG (where to log, as $BROWSER runs detached).
import { appendFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const url = process.argv[2];
const screenshot = process.env.SCREENSHOT;
const log = (line) => {
  if (process.env.BROWSER_LOG) appendFileSync(process.env.BROWSER_LOG, `${new Date().toISOString()} ${line}\n`);
};

const profile = mkdtempSync(join(tmpdir(), 'atl-chromium-'));
let context;
try {
  if (!url || !screenshot) throw new Error('usage: SCREENSHOT=out.png node browser.mjs URL');
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless', '--no-sandbox', '--disable-gpu', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--disable-quic',
    ],
  });
  const page = context.pages()[0] ?? await context.newPage();
  log(`open ${new URL(url).origin}`);
  await page.goto(url);
  const listener = new URL(new URL(url).searchParams.get('redirect_uri'));
  for (let step = 0; step < 10 && new URL(page.url()).origin !== listener.origin; step += 1) {
    if (await page.locator('input[name="login"]').count()) {
      log('login form');
      await page.fill('input[name="login"]', 'alice');
      await page.fill('input[name="password"]', 'any');
    } else {
      log('consent form');
    }
    await Promise.all([page.waitForNavigation(), page.click('button[type="submit"]')]);
  }
  await page.waitForLoadState('load');
  log(`landed on ${new URL(page.url()).origin}${new URL(page.url()).pathname}`);
  await page.screenshot({ path: screenshot, fullPage: true });
  writeFileSync(`${screenshot}.txt`, await page.innerText('body'));
  log('saved the screenshot');
} catch (err) {
  log(`failed: ${err.stack || err}`);
  process.exitCode = 1;
} finally {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
}

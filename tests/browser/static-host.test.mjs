// The site on a plain static host (issue #25): www/ served with no cross-origin isolation
// headers, as GitHub Pages or an object store serve it. The first load is not isolated; the
// service worker adds the headers to what it serves and the page reloads itself once, after
// which it is isolated and a CPU model runs on a threaded build, with the CLI's maps. A page
// the user has started using is never reloaded.
//
//   node --test tests/browser/static-host.test.mjs

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { startSite } from './harness.mjs';
import { IMAGES, TIMEOUT, assertMatchesNative, loadModel, nativeReference, scorePair } from './page-driver.mjs';

describe('a host that sends no isolation headers', { concurrency: false }, () => {
  let site;

  before(async () => {
    site = await startSite({ isolation: false });
  });

  after(async () => {
    await site?.close();
  });

  test('the page isolates itself with one reload and runs threads', async () => {
    const page = await site.context.newPage();
    const loads = [];
    page.on('load', () => loads.push(Date.now()));
    const first = await page.goto(site.url);
    assert.equal(first.headers()['cross-origin-opener-policy'], undefined, 'the server sends no isolation headers');
    await page.waitForFunction(() => self.crossOriginIsolated === true, null, { timeout: TIMEOUT });
    await page.waitForFunction(() => document.body.dataset.state === 'idle');
    assert.equal(loads.length, 2, 'one reload');
    const info = await loadModel(page, { device: 'cpu' });
    assert.equal(info.device, 'cpu');
    assert.match(await page.evaluate(() => window.__duoclip.wasmBuild), /\+threads$/);
    assertMatchesNative(await scorePair(page), await nativeReference(), 'threads on a plain host');
    await page.close();
  });

  test('a started page is not reloaded, and a second reload never happens', async () => {
    // A new profile's first visit, where the user picks an image before the service worker is
    // ready: the page stays as it is (one thread this visit).
    const other = await startSite({ isolation: false });
    try {
      const page = await other.context.newPage();
      let loads = 0;
      page.on('load', () => { loads += 1; });
      // The service worker's script is held back until the image is picked, so that the
      // worker is surely ready after the user started.
      let picked;
      const pickedPromise = new Promise((resolve) => { picked = resolve; });
      await page.route('**/sw.js', async (route) => { await pickedPromise; await route.continue(); });
      await page.goto(other.url);
      await page.setInputFiles('#image-a', IMAGES[0]);
      picked();
      await page.evaluate(() => navigator.serviceWorker.ready);
      await page.waitForTimeout(1000);
      assert.equal(loads, 1, 'not reloaded with a picked image');
      assert.equal(await page.evaluate(() => self.crossOriginIsolated), false);
    } finally {
      await other.close();
    }
  });
});

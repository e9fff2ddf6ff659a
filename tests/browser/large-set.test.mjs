// A folder-sized set in the page (issue #21): 300 images scored as a set with the tiny model on
// the CPU against one known-good reference (each image against the reference: linear in the
// set's size; mutual scoring of 300 took 292 s here, too long for the suite), then browsed (next through 60 of them, every thumbnail scrolled into view). The
// page holds one decoded image at a time, whatever the set's size; the numbers go to the log.
//
//   node --test tests/browser/large-set.test.mjs

import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startSite, tempDir } from './harness.mjs';
import { counter, loadModel, waitFor } from './page-driver.mjs';
import { png } from './png.mjs';

const COUNT = 300;
const [W, H] = [256, 192];

/** 300 files from 10 patterns (a set needs images that differ; copies keep writing fast). */
function writeSet(dir) {
  const patterns = Array.from({ length: 10 }, (_, k) =>
    png(W, H, (x, y) => [(x * (k + 1)) % 256, (y * (k + 3)) % 256, ((x ^ y) + 25 * k) % 256]));
  return Array.from({ length: COUNT }, (_, i) => {
    const file = path.join(dir, `img-${String(i).padStart(3, '0')}.png`);
    writeFileSync(file, patterns[i % patterns.length]);
    return file;
  });
}

describe('a 300-image set', () => {
  let site;
  const dir = tempDir('duoclip-large-set-');

  before(async () => {
    site = await startSite();
  });

  after(async () => {
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('is scored and browsed with one decoded image held at a time', async () => {
    const page = await site.context.newPage();
    const cdp = await site.context.newCDPSession(page);
    await page.goto(site.url);
    await page.waitForFunction(() => document.body.dataset.state === 'idle');
    await loadModel(page, { device: 'cpu' });
    await page.check('input[name=mode][value=set]');
    const files = writeSet(dir);
    const reference = path.join(dir, 'reference.png');
    writeFileSync(reference, png(W, H, (x, y) => [x % 256, y % 256, 128]));
    await page.setInputFiles('#references', reference);
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    const started = Date.now();
    await page.setInputFiles('#image-set', files);
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, 600_000);
    const scoredMs = Date.now() - started;
    assert.equal(await page.evaluate(() => window.__duoclip.results.length), COUNT);

    await page.focus('#views-area');
    for (let i = 0; i < 60; i++) await page.keyboard.press('ArrowRight');
    await page.waitForFunction(() => document.getElementById('result-position').textContent.startsWith('61 of 300'));
    // Every thumbnail drawn: scroll the list through the viewport.
    await page.evaluate(async () => {
      for (const li of document.querySelectorAll('#result-list li')) {
        li.scrollIntoView();
        await new Promise((r) => requestAnimationFrame(r));
      }
    });
    await page.waitForFunction(() => document.querySelectorAll('#result-list canvas[data-drawn]').length === 300,
      null, { timeout: 60_000 });
    await page.waitForFunction(() => document.body.dataset.decoded === '1', null, { timeout: 10_000 });

    await cdp.send('HeapProfiler.collectGarbage');
    const { usedSize } = await cdp.send('Runtime.getHeapUsage');
    const wasm = await page.evaluate(() => window.__duoclip.wasmMemoryBytes);
    const mapBytes = COUNT * W * H * 4;
    console.log(`300-image set: scored in ${(scoredMs / 1000).toFixed(1)} s; after browsing: ` +
      `${(usedSize / 1e6).toFixed(1)} MB JS heap (the maps alone are ${(mapBytes / 1e6).toFixed(1)} MB), ` +
      `1 decoded image (${W}×${H}), wasm memory ${(wasm / 1e6).toFixed(0)} MB`);
    // The maps (kept for the exports) and little else: every image decoded at once would add
    // 300 × 256 × 192 × 4 bytes (59 MB) outside the JS heap, which the count above rules out.
    assert.ok(usedSize < mapBytes + 40e6, `JS heap ${usedSize} bytes`);
    await page.close();
  });
});

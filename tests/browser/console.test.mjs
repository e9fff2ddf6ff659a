// The page loads a model and scores a pair with nothing in the console (issue #25): no warning
// from the wasm glue (wasm-bindgen-rayon's pool threads once logged a deprecated-init warning
// each, fixed in scripts/build-web.sh), no error, on the threaded CPU build a cross-origin
// isolated page gets and on WebGPU.
//
//   node --test tests/browser/console.test.mjs

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';

import { startSite } from './harness.mjs';
import { WEBGPU_TIMEOUT, loadModel, openPage, scorePair } from './page-driver.mjs';

describe('a clean console', { concurrency: false }, () => {
  let site;

  before(async () => {
    site = await startSite();
  });

  after(async () => {
    await site?.close();
  });

  for (const device of ['cpu', 'webgpu']) {
    test(`loading and scoring on ${device} logs nothing`, { timeout: WEBGPU_TIMEOUT }, async () => {
      const page = await openPage(site);
      const from = site.consoleLines.length;
      const info = await loadModel(page, { device, timeout: WEBGPU_TIMEOUT });
      assert.equal(info.device, device);
      if (device === 'cpu') {
        // The threaded build, whose pool threads each start the module again.
        assert.match(await page.evaluate(() => window.__duoclip.wasmBuild), /\+threads$/);
      }
      await scorePair(page, WEBGPU_TIMEOUT);
      const lines = site.consoleLines.slice(from).filter((l) => !l.startsWith('log:') && !l.startsWith('debug:'));
      assert.deepEqual(lines, [], `the console had:\n${lines.join('\n')}`);
      await page.close();
    });
  }
});

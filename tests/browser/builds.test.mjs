// The builds page.test.mjs does not reach on this Chromium (which validates relaxed SIMD and
// gets a cross-origin isolated page, so its CPU detector runs pkg-threads-relaxed/): on a site
// without the better builds, as a browser that cannot run them gets nothing from them,
// worker.js falls back in order, and each build's scores and maps equal the native CLI's.
//
//   node --test tests/browser/      (needs the four builds of scripts/build-web.sh)

import assert from 'node:assert/strict';
import { readdirSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { WWW, startSite, tempDir } from './harness.mjs';
import { assertMatchesNative, loadModel, nativeReference, scorePair } from './page-driver.mjs';

/** A site root holding every entry of www/ but the folders `missing`. */
function siteWithout(missing) {
  const root = tempDir('duoclip-builds-site-');
  for (const entry of readdirSync(WWW).filter((e) => !missing.includes(e))) {
    symlinkSync(path.join(WWW, entry), path.join(root, entry));
  }
  return root;
}

const CASES = [
  { missing: ['pkg-threads-relaxed'], build: 'simd128+threads' },
  { missing: ['pkg-threads-relaxed', 'pkg-threads'], build: 'relaxed-simd' },
  { missing: ['pkg-threads-relaxed', 'pkg-threads', 'pkg-relaxed'], build: 'simd128' },
];

for (const { missing, build } of CASES) {
  describe(`the ${build} build (tiny model)`, { concurrency: false }, () => {
    let site;
    let page;
    let native;
    const root = siteWithout(missing);

    before(async () => {
      [native, site] = await Promise.all([nativeReference(), startSite({ root })]);
      page = await site.context.newPage();
      await page.goto(site.url);
      await page.waitForFunction(() => document.body.dataset.state === 'idle');
    });

    after(async () => {
      if (site?.consoleLines.length) console.log(`browser console:\n  ${site.consoleLines.join('\n  ')}`);
      await site?.close();
      rmSync(root, { recursive: true, force: true });
    });

    test(`without ${missing.join(', ')} the page runs ${build} and equals the native CLI`, async () => {
      const { device } = await loadModel(page, { device: 'cpu' });
      assert.equal(device, 'cpu');
      const results = await scorePair(page);
      assert.equal(await page.evaluate(() => window.__duoclip.wasmBuild), build);
      assertMatchesNative(results, native, `cpu (${build} build)`);
    });
  });
}

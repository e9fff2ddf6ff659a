// The plain SIMD128 build, which browsers without relaxed SIMD run: on a site without
// pkg-relaxed/ (as such a browser would get nothing from it), worker.js falls back to pkg/ and
// its scores and maps equal the native CLI's. page.test.mjs covers the relaxed build.
//
//   node --test tests/browser/      (needs both builds of scripts/build-web.sh)

import assert from 'node:assert/strict';
import { readdirSync, rmSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { WWW, startSite, tempDir } from './harness.mjs';
import { assertMatchesNative, loadModel, nativeReference, scorePair } from './page-driver.mjs';

/** A site root holding every entry of www/ but pkg-relaxed/. */
function siteWithoutRelaxedBuild() {
  const root = tempDir('duoclip-simd128-site-');
  for (const entry of readdirSync(WWW).filter((e) => e !== 'pkg-relaxed')) {
    symlinkSync(path.join(WWW, entry), path.join(root, entry));
  }
  return root;
}

describe('the plain SIMD128 build (tiny model)', { concurrency: false }, () => {
  let site;
  let page;
  let native;
  const root = siteWithoutRelaxedBuild();

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

  test('without pkg-relaxed/ the page runs pkg/ and equals the native CLI', async () => {
    const { device } = await loadModel(page, { device: 'cpu' });
    assert.equal(device, 'cpu');
    const results = await scorePair(page);
    assert.equal(await page.evaluate(() => window.__duoclip.wasmBuild), 'simd128');
    assertMatchesNative(results, native, 'cpu (simd128 build)');
  });
});

// The builds page.test.mjs does not reach on this Chromium (which validates relaxed SIMD and
// gets a cross-origin isolated page, so its CPU detector runs pkg-threads-relaxed/): on a site
// without the better builds, as a browser that cannot run them gets nothing from them,
// worker.js falls back in order, and each build's scores and maps equal the native CLI's.
//
//   node --test tests/browser/      (needs the four builds of scripts/build-web.sh)

import assert from 'node:assert/strict';
import { mkdirSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { WWW, startSite, tempDir } from './harness.mjs';
import { assertMatchesNative, loadModel, nativeReference, scorePair } from './page-driver.mjs';

/**
 * A site root holding every entry of www/ but the folders `missing`; with `stalledPool`, the
 * relaxed threaded build's pool helper is one whose workers never start (as in a browser that
 * cannot start workers from a worker).
 */
function siteWithout(missing, stalledPool = false) {
  const root = tempDir('duoclip-builds-site-');
  const build = 'pkg-threads-relaxed';
  for (const entry of readdirSync(WWW).filter((e) => !missing.includes(e))) {
    if (stalledPool && entry === build) continue;
    symlinkSync(path.join(WWW, entry), path.join(root, entry));
  }
  if (stalledPool) {
    mkdirSync(path.join(root, build));
    for (const file of ['duoclip.js', 'duoclip_bg.wasm']) {
      symlinkSync(path.join(WWW, build, file), path.join(root, build, file));
    }
    const [snippet] = readdirSync(path.join(WWW, build, 'snippets'));
    const helper = path.join(root, build, 'snippets', snippet, 'src');
    mkdirSync(helper, { recursive: true });
    writeFileSync(path.join(helper, 'workerHelpers.no-bundler.js'),
      'export function startWorkers() { return new Promise(() => {}); }\n');
  }
  return root;
}

const CASES = [
  { missing: ['pkg-threads-relaxed'], build: 'simd128+threads' },
  { missing: ['pkg-threads-relaxed', 'pkg-threads'], build: 'relaxed-simd' },
  { missing: ['pkg-threads-relaxed', 'pkg-threads', 'pkg-relaxed'], build: 'simd128' },
  // The pool's 30 s start-up limit (worker.js), then the next build this site has.
  { missing: ['pkg-threads'], stalledPool: true, build: 'relaxed-simd', timeout: 120_000 },
];

for (const { missing, stalledPool, build, timeout } of CASES) {
  describe(`the ${build} build (tiny model)`, { concurrency: false }, () => {
    let site;
    let page;
    let native;
    const root = siteWithout(missing, stalledPool);

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

    const what = `without ${missing.join(', ')}${stalledPool ? ', a pool that never starts,' : ''}`;
    test(`${what} the page runs ${build} and equals the native CLI`, async () => {
      const { device } = await loadModel(page, { device: 'cpu', timeout });
      assert.equal(device, 'cpu');
      const results = await scorePair(page);
      assert.equal(await page.evaluate(() => window.__duoclip.wasmBuild), build);
      assertMatchesNative(results, native, `cpu (${build} build)`);
    });
  });
}

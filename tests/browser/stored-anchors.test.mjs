// Text anchors computed in the browser are kept for the next visit (issue #25, "the first map
// in seconds"): the tiny bundle scored for an object it has no prompts for runs its text tower
// once; a second visit (a new page, the same browser profile) does no text-tower work and gives
// the same maps; another object is not served the first one's anchors; a damaged entry is
// recomputed and replaced. Maps equal the CLI's.
//
//   node --test tests/browser/stored-anchors.test.mjs

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { startSite } from './harness.mjs';
import { IMAGES, assertMatchesNative, nativeReference } from './page-driver.mjs';
import { openApiPage, siteCopy } from './site-copy.mjs';

describe('text anchors kept across visits (tiny bundle, CPU)', { concurrency: false }, () => {
  let copy;
  let site;

  before(async () => {
    copy = siteCopy();
    site = await startSite({ root: copy.root });
  });

  after(async () => {
    await site?.close();
    copy?.remove();
  });

  /** A fresh page (a visit): loads the bundle, scores the pair with `opts`; runs and results. */
  async function visit(opts) {
    const { page } = await openApiPage(site);
    const images = IMAGES.map((f) => [...readFileSync(f)]);
    try {
      return await page.evaluate(async ([bytes, o]) => {
        const { Detector } = await import('./duoclip.js');
        const detector = await Detector.load({ model: 'models/tiny/', device: 'cpu' });
        const stages = [];
        const blobs = bytes.map((b) => new Blob([new Uint8Array(b)], { type: 'image/png' }));
        const results = await detector.scorePair(blobs[0], blobs[1], { ...o, onProgress: (e) => stages.push(e.stage) });
        const out = {
          runs: detector.textTowerRuns,
          prompts: stages.includes('prompts'),
          results: results.map((r) => ({ score: r.score, height: r.height, width: r.width, map: Array.from(r.map) })),
        };
        detector.dispose();
        return out;
      }, [images, opts]);
    } finally {
      await page.close();
    }
  }

  test('the second visit runs no text tower and gives the same maps', async () => {
    const screw = { domain: 'object', object: 'screw' };
    const first = await visit(screw);
    assert.equal(first.runs, 1, 'the first visit embeds the prompts');
    assert.ok(first.prompts, 'and says so in its progress');
    const native = await nativeReference(['--domain', 'object', '--object', 'screw']);
    assertMatchesNative(first.results, native, 'first visit');

    const second = await visit(screw);
    assert.equal(second.runs, 0, 'the second visit reads the stored anchors');
    assert.ok(!second.prompts);
    assert.deepEqual(second.results, first.results, 'bit for bit the same maps and scores');

    // Another object has its own entry, not the screw's.
    const nut = await visit({ domain: 'object', object: 'metal_nut' });
    assert.equal(nut.runs, 1);
    assertMatchesNative(nut.results, await nativeReference(['--domain', 'object', '--object', 'metal_nut']), 'metal_nut');
  });

  test('a damaged entry is recomputed and replaced', async () => {
    const { page } = await openApiPage(site);
    const damaged = await page.evaluate(async () => {
      const cache = await caches.open('duoclip-anchors');
      const keys = await cache.keys();
      for (const request of keys) {
        const bytes = new Uint8Array(await (await cache.match(request)).arrayBuffer());
        bytes[bytes.length - 40] ^= 1;
        await cache.put(request, new Response(bytes));
      }
      return keys.length;
    });
    await page.close();
    assert.equal(damaged, 2, 'screw and metal_nut were stored');
    const screw = { domain: 'object', object: 'screw' };
    const again = await visit(screw);
    assert.equal(again.runs, 1, 'a damaged entry is not used');
    assertMatchesNative(again.results, await nativeReference(['--domain', 'object', '--object', 'screw']), 'recomputed');
    assert.equal((await visit(screw)).runs, 0, 'and the replacement is used next time');
  });
});

// The page's detector against the torch reference itself, not against the CLI (which shares
// its Rust code, so a bug in both would pass every other browser test): the shaped tiny model
// `openclip_signal` (tools/gen_signal_fixture.py; maps span 0.33–0.66, the pair's scores
// differ by 0.08) converted to a bundle, scored by the API on the CPU in each reference case of
// tests/fixtures/openclip_signal/detector/reference.json (tools/gen_detector_fixture.py):
// AnoVL with 1 and 22 views, the product preset on an image and a pasted copy, a wide image in
// two tiles. Swapped scores, a V-V stream without its value projection or maps without the
// 3×3 box filter each move a map or score by far more than the tolerance.
//
//   node --test tests/browser/reference.test.mjs

import assert from 'node:assert/strict';
import { readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO, maxAbsDiff, runDuoclip, startSite, tempDir } from './harness.mjs';
import { openApiPage, siteCopy } from './site-copy.mjs';

const FIXTURES = path.join(REPO, 'tests', 'fixtures');
const REFERENCE = JSON.parse(readFileSync(path.join(FIXTURES, 'openclip_signal', 'detector', 'reference.json'), 'utf8'));
// Measured max |Δ| against torch natively: 1.8e-7 (tests/detector_parity.rs); the browser's
// CPU builds equal the native CLI within 9e-8. 1e-5 is 3e-5 of the maps' range.
const TOL = 1e-5;

describe('the browser against the torch reference (shaped tiny model, CPU)', { concurrency: false }, () => {
  let copy;
  let site;
  let page;

  before(async () => {
    const bundle = path.join(tempDir('duoclip-signal-'), 'signal');
    await runDuoclip(['convert', '--model', path.join(FIXTURES, REFERENCE.model),
      '--text-heads', String(REFERENCE.text_heads), '--act', REFERENCE.act,
      '--domains', `${REFERENCE.domain}:${REFERENCE.object}`, '--test-model', '--out', bundle]);
    copy = siteCopy();
    symlinkSync(bundle, path.join(copy.root, 'signal'));
    symlinkSync(FIXTURES, path.join(copy.root, 'all-fixtures'));
    site = await startSite({ root: copy.root });
    ({ page } = await openApiPage(site));
    await page.evaluate(async () => {
      const { Detector } = await import('./duoclip.js');
      window.__ref = { detector: await Detector.load({ model: 'signal/', device: 'cpu' }) };
    });
  });

  after(async () => {
    await page?.evaluate(() => window.__ref?.detector.dispose());
    await site?.close();
    copy?.remove();
  });

  const options = (extra) => ({ domain: REFERENCE.domain, object: REFERENCE.object, ...extra });

  /** Scores fixture files `files` (or the pasted copy, 'pasted') as one call; plain results. */
  const score = (files, opts) => page.evaluate(async ([names, o, paste]) => {
    const fetched = async (name) => (await fetch(`all-fixtures/${name}`)).blob();
    // The reference's pasted image: `cells`×`cells` patches of one colour at patch `cell`.
    const pasted = async () => {
      const image = await createImageBitmap(await fetched('openclip_signal/image.png'),
        { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
      const canvas = new OffscreenCanvas(image.width, image.height);
      const ctx = canvas.getContext('2d');
      ctx.drawImage(image, 0, 0);
      ctx.fillStyle = `rgb(${paste.rgb.join(',')})`;
      const side = paste.patch * paste.cells;
      ctx.fillRect(paste.cell[1] * paste.patch, paste.cell[0] * paste.patch, side, side);
      return canvas.convertToBlob({ type: 'image/png' });
    };
    const blobs = await Promise.all(names.map((n) => (n === 'pasted' ? pasted() : fetched(n))));
    const { detector } = window.__ref;
    const results = blobs.length === 1
      ? await detector.scoreImage(blobs[0], o)
      : await detector.scorePair(blobs[0], blobs[1], o);
    return results.map((r) => ({ score: r.score, height: r.height, width: r.width, map: Array.from(r.map) }));
  }, [files, opts, REFERENCE.paste]);

  /** Each result equals its reference within TOL, in shape, map and score. */
  function assertMatchesTorch(got, want, what) {
    assert.equal(got.length, want.length, `${what}: one result per image`);
    for (const [i, w] of want.entries()) {
      const g = got[i];
      assert.deepEqual([g.height, g.width], [w.height, w.width], `${what} ${i}: map shape`);
      const diff = maxAbsDiff(g.map, Float32Array.from(w.map));
      assert.ok(diff <= TOL, `${what} ${i}: the map differs from torch's by up to ${diff}`);
      assert.ok(Math.abs(g.score - w.score) <= TOL, `${what} ${i}: score ${g.score} vs torch's ${w.score}`);
    }
  }

  test('AnoVL on one image, 1 and 22 views', async () => {
    for (const [key, views] of [['anovl_v1', 1], ['anovl_v22', 22]]) {
      const got = await score(['openclip_signal/image.png'], options({ preset: 'anovl', views }));
      assertMatchesTorch(got, REFERENCE[key], key);
    }
    // Views change the image score only (its map is the one view's), by far more than TOL.
    assert.ok(Math.abs(REFERENCE.anovl_v1[0].score - REFERENCE.anovl_v22[0].score) > 100 * TOL);
  });

  test('the product preset on an image and its pasted copy, in order', async () => {
    const c = REFERENCE.product_config;
    const got = await score(['openclip_signal/image.png', 'pasted'], options({
      preset: 'product', lambda: c.lambda, refLayers: c.ref_layers, neighbourhood: c.neighbourhood, views: c.views,
    }));
    assertMatchesTorch(got, REFERENCE.product, 'product');
    // Swapped results would fail: the two references' scores differ by far more than TOL.
    const [a, b] = REFERENCE.product;
    assert.ok(Math.abs(a.score - b.score) > 1000 * TOL, `${a.score} vs ${b.score}`);
  });

  test('a wide image in two tiles', async () => {
    const got = await score([REFERENCE.wide.file], options({ preset: 'anovl' }));
    assertMatchesTorch(got, [REFERENCE.wide], 'wide');
  });
});

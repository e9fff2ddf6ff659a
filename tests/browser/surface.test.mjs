// The browser API's less-trodden paths against the native CLI (issue #23's untested surface),
// with the tiny model on the CPU: the text tower run in the wasm (an object the bundle has no
// precomputed prompts for), one image alone (scoreImage), known-good references, and an
// unknown option refused with what is accepted.
//
//   node --test tests/browser/surface.test.mjs

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';

import { startSite } from './harness.mjs';
import { IMAGES, assertMatchesNative, nativeReference, openPage } from './page-driver.mjs';

describe('the browser API against the CLI (tiny model, CPU)', { concurrency: false }, () => {
  let site;
  let page;

  before(async () => {
    site = await startSite();
    page = await openPage(site);
    const images = IMAGES.map((f) => [...readFileSync(f)]);
    await page.evaluate(async (bytes) => {
      const { Detector } = await import('./duoclip.js');
      window.__api = {
        detector: await Detector.load({ model: 'models/tiny/', device: 'cpu' }),
        images: bytes.map((b) => new Blob([new Uint8Array(b)], { type: 'image/png' })),
      };
    }, images);
  });

  after(async () => {
    await page?.evaluate(() => window.__api?.detector.dispose());
    await site?.close();
  });

  /** Runs `call` (a score method's name) with `opts` in the page; plain results back. */
  const score = (call, opts) => page.evaluate(async ([c, o]) => {
    const { detector, images } = window.__api;
    const run = {
      pair: () => detector.scorePair(images[0], images[1], o),
      image: () => detector.scoreImage(images[0], o),
      set: () => detector.scoreSet(images, { ...o, references: [images[0]] }),
    }[c];
    const results = await run();
    return results.map((r) => ({ ...r, map: Array.from(r.map) }));
  }, [call, opts]);

  test('an object without precomputed prompts: the text tower runs in the wasm', async () => {
    const bundle = await page.evaluate(() => window.__api.detector.anchorSets.map((a) => a.object));
    assert.ok(!bundle.includes('screw'), `the bundle must not hold screw's prompts: ${bundle}`);
    const native = await nativeReference(['--domain', 'object', '--object', 'screw']);
    assertMatchesNative(await score('pair', { domain: 'object', object: 'screw' }), native, 'object screw');
    // And it is not the bottle's result under another name.
    const bottle = await nativeReference();
    assert.ok(Math.abs(bottle[0].score - native[0].score) > 1e-5, 'screw and bottle score alike');
  });

  test('one image alone (text prompts only) equals the CLI on that image', async () => {
    const native = await nativeReference(['--preset', 'anovl', '--domain', 'texture', '--object', 'carpet'], IMAGES.slice(0, 1));
    const browser = await score('image', { preset: 'anovl', domain: 'texture', object: 'carpet' });
    assert.equal(browser.length, 1);
    assertMatchesNative(browser, native, 'scoreImage');
  });

  test('known-good references equal the CLI\'s --reference', async () => {
    const native = await nativeReference(['--domain', 'object', '--object', 'bottle', '--reference', IMAGES[0]]);
    assertMatchesNative(await score('set', { domain: 'object', object: 'bottle' }), native, 'references');
  });

  test('an unknown option is refused, naming it and what is accepted', async () => {
    const refusal = await page.evaluate(() => window.__api.detector
      .scorePair(window.__api.images[0], window.__api.images[1], { domain: 'object', object: 'bottle', treshold: 0.5 })
      .then(() => null, (e) => ({ code: e.code, message: e.message })));
    assert.equal(refusal?.code, 'bad_option', JSON.stringify(refusal));
    assert.match(refusal.message, /treshold/);
    assert.match(refusal.message, /domainPhrases/, 'the accepted options are listed');
  });
});

// Model integrity and privacy in the page (issue #7, item 6), with the tiny bundle and one
// registry entry:
// - a download whose bytes differ from the published sha256 is refused and not cached;
// - a corrupted copy in Cache Storage is detected, fetched again, and the model then works;
// - loading a registry model sends exactly one request off 127.0.0.1: to the chosen model's
//   URL (fulfilled here by the test, as the machine has no network), and nothing else;
// - the page's CSP itself (not only this harness, which aborts anything off 127.0.0.1) stops
//   requests to other hosts, from the page and from the detector's worker.
//
// A registry model cannot be loaded to success here: its sha256 is that of the real
// published file (hundreds of MB, not available offline), so the registry test proves
// detection, the re-fetch and refusal; the bundle test, whose sha256 is of a file we have,
// proves the re-fetch ends in a working model.

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startSite } from './harness.mjs';
import {
  TIMEOUT, assertMatchesNative, detectorWorkers, expectError, loadModel, nativeReference, scorePair,
} from './page-driver.mjs';
import { TINY, tinyManifest } from './tiny-model.mjs';

const MODEL_CACHE = 'duoclip-models-v1'; // www/model-files.js

/** The tiny bundle's weights with one byte of tensor data changed: still valid safetensors. */
function corruptedWeights() {
  const bytes = Buffer.from(readFileSync(path.join(TINY, tinyManifest().weights.file)));
  bytes[bytes.length - 100] ^= 0x5a;
  return bytes;
}

/** Puts `bytes` into the page's model cache under `url`, as an earlier visit would have. */
function seedCache(page, url, bytes) {
  return page.evaluate(async ([cacheName, key, base64]) => {
    const body = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
    await (await caches.open(cacheName)).put(key, new Response(body));
  }, [MODEL_CACHE, url, Buffer.from(bytes).toString('base64')]);
}

/** sha256 of what the page's model cache holds under `url`, or null. */
function cachedSha256(page, url) {
  return page.evaluate(async ([cacheName, key]) => {
    const hit = await (await caches.open(cacheName)).match(key);
    if (!hit) return null;
    const digest = await crypto.subtle.digest('SHA-256', await hit.arrayBuffer());
    return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, '0')).join('');
  }, [MODEL_CACHE, url]);
}

describe('model integrity and privacy (tiny model)', { concurrency: false }, () => {
  let site;
  let page;
  let native;
  const workers = [];

  before(async () => {
    [native, site] = await Promise.all([nativeReference(), startSite()]);
    page = await site.context.newPage();
    page.on('worker', (w) => {
      workers.push(w);
      w.on('close', () => { // terminated (model reloads); a pool's workers close with theirs
        const at = workers.indexOf(w);
        if (at >= 0) workers.splice(at, 1);
      });
    });
    await page.goto(site.url);
    await page.waitForFunction(() => document.body.dataset.state === 'idle' && window.__duoclip.registry);
  });

  after(async () => {
    if (site?.consoleLines.length) console.log(`browser console:\n  ${site.consoleLines.join('\n  ')}`);
    await site?.close();
  });

  test('a download that is not the published file is refused and not cached', async () => {
    const { weights } = tinyManifest();
    const url = new URL(`models/tiny/${weights.file}`, site.url).href;
    const bad = corruptedWeights();
    // On the context, not the page: the page's service worker makes same-origin requests.
    await site.context.route(url, (route) => route.fulfill({ status: 200, body: bad }));
    try {
      await page.selectOption('#model-select', 'models/tiny/');
      await page.selectOption('#device-select', 'cpu');
      const error = await expectError(page, '#load-button');
      assert.equal(error.code, 'integrity', JSON.stringify(error));
      const actual = createHash('sha256').update(bad).digest('hex');
      assert.equal(error.shown, `A downloaded file is not the published one: ${weights.file} from ${url} ` +
        `has sha256 ${actual}, expected ${weights.sha256}; the file was not used`);
      assert.equal(await cachedSha256(page, url), null, 'the refused bytes were not cached');
    } finally {
      await site.context.unroute(url);
    }
  });

  test('a corrupted cached copy is detected, fetched again, and the model works', async () => {
    const { weights } = tinyManifest();
    const url = new URL(`models/tiny/${weights.file}`, site.url).href;
    await seedCache(page, url, corruptedWeights());
    assert.notEqual(await cachedSha256(page, url), weights.sha256);
    const servedBefore = site.served.filter((p) => p.endsWith(`models/tiny/${weights.file}`)).length;
    await loadModel(page, { device: 'cpu' });
    const served = site.served.filter((p) => p.endsWith(`models/tiny/${weights.file}`)).length;
    assert.equal(served, servedBefore + 1, 'the weights were fetched again instead of read from the cache');
    assert.equal(await cachedSha256(page, url), weights.sha256, 'the cache now holds the published file');
    assertMatchesNative(await scorePair(page), native, 'after re-fetching a corrupted cache entry');
  });

  test('a registry model: the corrupted cached copy is dropped, only its URL is fetched, bad bytes refused', async () => {
    // The smallest registry model the browser loads as published: one .safetensors file.
    const entry = (await page.evaluate(() => window.__duoclip.registry))
      .filter((e) => e.browser && e.files.length === 1)
      .sort((a, b) => a.files[0].bytes - b.files[0].bytes)[0];
    assert.ok(entry, 'the registry has a browser-loadable single-file model');
    const [file] = entry.files;
    const [url] = file.urls;
    const stale = Buffer.from('a truncated earlier download');
    await seedCache(page, url, stale);
    const routed = [];
    const served = readFileSync(path.join(TINY, tinyManifest().weights.file)); // not the published file
    await site.context.route(url, (route) => {
      routed.push(route.request().url());
      return route.fulfill({
        status: 200, body: served, headers: { 'Access-Control-Allow-Origin': '*' },
      });
    });
    try {
      await page.selectOption('#model-select', `registry:${entry.name}`);
      await page.selectOption('#device-select', 'cpu');
      const error = await expectError(page, '#load-button', TIMEOUT);
      assert.equal(error.code, 'integrity', JSON.stringify(error));
      assert.equal(error.shown, `A downloaded file is not the published one: ${file.path} from ${url} ` +
        `has ${served.length} bytes, expected ${file.bytes}; the file was not used`);
      assert.deepEqual(routed, [url], 'exactly one request, to the chosen model URL');
      assert.equal(await cachedSha256(page, url), null, 'the corrupted copy was dropped and nothing cached');
    } finally {
      await site.context.unroute(url);
    }
    // The page is still usable.
    await loadModel(page, { device: 'cpu' });
    assertMatchesNative(await scorePair(page), native, 'after a refused registry download');
  });

  test('the CSP blocks other hosts in the page and in the worker, before any request is made', async () => {
    const elsewhere = 'https://example.com/collect?x=1';
    const page_ = await page.evaluate(async (url) => {
      const violations = [];
      document.addEventListener('securitypolicyviolation', (e) => violations.push(`${e.violatedDirective} ${e.blockedURI}`));
      const fetched = await fetch(url).then(() => 'fetched', () => 'blocked');
      const image = await new Promise((resolve) => {
        const img = new Image();
        img.onload = () => resolve('loaded');
        img.onerror = () => resolve('blocked');
        img.src = url;
      });
      await new Promise((resolve) => setTimeout(resolve, 200)); // violation events are queued
      return { fetched, image, violations };
    }, elsewhere);
    assert.deepEqual(page_, {
      fetched: 'blocked', image: 'blocked',
      violations: [`connect-src ${elsewhere}`, `img-src ${elsewhere}`],
    });
    // The pool workers of a threaded build are blob: workers started by the detector's worker,
    // so they inherit its policy; they run only the module's pool loop and answer nothing.
    // A detector whose pool had workers may be listed after it was terminated: it answers
    // nothing either.
    const asked = [];
    for (const worker of detectorWorkers(workers)) {
      const fetched = await worker.evaluate((url) => fetch(url).then(() => 'fetched', () => 'blocked'), elsewhere)
        .catch((e) => (/has been closed/.test(e.message) ? 'terminated' : Promise.reject(e)));
      if (fetched !== 'terminated') {
        assert.equal(fetched, 'blocked', `the worker ${worker.url()} is bound by the page's CSP`);
      }
      asked.push(fetched);
    }
    assert.ok(asked.includes('blocked'), `a running detector answered (${asked})`);
    // Blocked by the policy, not by this harness: nothing reached the network layer.
    assert.deepEqual(site.offsite, []);
  });

  test('no request left 127.0.0.1 except the one to the chosen registry model', () => {
    assert.deepEqual(site.offsite, []);
  });
});

// The page end to end in headless Chromium, with the tiny random-weight model: maps equal the
// native CLI's, the overlay is drawn, nothing leaves 127.0.0.1, bad input is reported and the
// page stays usable, Cancel reloads from cache and keeps what was finished, and the page works
// offline after one visit.
//
//   node --test tests/browser/      (needs www/pkg from scripts/build-web.sh and a debug
//                                    `duoclip` binary, or DUOCLIP_BIN)

import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startSite, tempDir } from './harness.mjs';
import {
  IMAGES, OBJECT, TIMEOUT, WEBGPU_TIMEOUT, assertMatchesNative, counter, expectError, loadModel,
  nativeReference, pageResults, scorePair, waitFor,
} from './page-driver.mjs';
import { TINY, tinyManifest } from './tiny-model.mjs';

describe('duoclip page (tiny model)', { concurrency: false }, () => {
  let site;
  let page;
  let native;
  const timings = {};

  before(async () => {
    [native, site] = await Promise.all([nativeReference(), startSite()]);
    page = await site.context.newPage();
    const started = Date.now();
    await page.goto(site.url);
    await page.waitForFunction(() => document.body.dataset.state === 'idle');
    timings.pageLoadMs = Date.now() - started;
  });

  after(async () => {
    console.log(`browser timings: ${JSON.stringify(timings)}`);
    if (site?.consoleLines.length) console.log(`browser console:\n  ${site.consoleLines.join('\n  ')}`);
    await site?.close();
  });

  test('the native reference is a real map', () => {
    assert.equal(native.length, 2);
    for (const n of native) {
      assert.equal(n.map.length, n.width * n.height);
      assert.ok(Math.max(...n.map) > Math.min(...n.map), 'the native map is not constant');
    }
  });

  test('CPU (wasm): scores and maps equal the native CLI', async () => {
    // The page asked for the registry at start: that started the detector's worker, but no
    // thread pool (registry() may run on a build the model does not use; worker.js).
    await page.waitForFunction(() => window.__duoclip.registry);
    assert.deepEqual(page.workers().map((w) => w.url().endsWith('#duoclip-detector')), [true]);
    let started = Date.now();
    const { device, precision } = await loadModel(page, { device: 'cpu' });
    timings.cpuModelLoadMs = Date.now() - started;
    assert.equal(device, 'cpu');
    assert.equal(precision, 'f32');
    started = Date.now();
    const results = await scorePair(page);
    timings.cpuFirstPairMs = Date.now() - started;
    started = Date.now();
    await scorePair(page);
    timings.cpuWarmPairMs = Date.now() - started;
    timings.cpuPeakWasmMemoryMB = Math.round(
      await page.evaluate(() => window.__duoclip.wasmMemoryBytes) / 1e6);
    assertMatchesNative(results, native, 'cpu');
    // Chromium validates relaxed SIMD and the site is cross-origin isolated, so worker.js chose
    // the threaded relaxed build for the CPU (builds.test.mjs: the other builds).
    assert.equal(await page.evaluate(() => window.__duoclip.wasmBuild), 'relaxed-simd+threads');
    // One pool worker per logical core, and the page says so.
    const [threads, cores, badge] = await page.evaluate(() => [window.__duoclip.wasmThreads,
      navigator.hardwareConcurrency, document.getElementById('device-badge').textContent]);
    assert.equal(threads, cores);
    assert.equal(page.workers().length, 1 + cores, 'the detector and its pool');
    if (cores > 1) assert.match(badge, new RegExp(`^Running on the CPU \\(wasm, ${cores} threads\\)`));
  });

  test('the overlay is drawn where the map is high', async () => {
    const probe = await page.evaluate(async () => {
      const selected = Number(document.body.dataset.selected);
      const { map, width, height } = window.__duoclip.results[selected];
      const canvas = document.getElementById('overlay-canvas');
      let hi = 0;
      let lo = 0;
      for (let i = 0; i < map.length; i++) {
        if (map[i] > map[hi]) hi = i;
        if (map[i] < map[lo]) lo = i;
      }
      // Canvas pixel at the centre of a map cell (the map is stretched over the whole image).
      const at = (i) => [Math.floor(((i % width) + 0.5) * canvas.width / width),
        Math.floor((Math.floor(i / width) + 0.5) * canvas.height / height)];
      const set = (id, v) => {
        const el = document.getElementById(id);
        el.value = String(v);
        el.dispatchEvent(new Event('input'));
      };
      const pixel = ([x, y]) => [...canvas.getContext('2d').getImageData(x, y, 1, 1).data.slice(0, 3)];
      const read = (opacity, threshold) => {
        set('opacity', opacity);
        set('threshold', threshold);
        return { hi: pixel(at(hi)), lo: pixel(at(lo)) };
      };
      const plain = read(0, 0);
      const full = read(1, 0);
      const top = read(1, 0.999);
      set('opacity', 0.5);
      set('threshold', 0);
      return { plain, full, top };
    });
    const lum = ([r, g, b]) => 0.2126 * r + 0.7152 * g + 0.0722 * b;
    const moved = (a, b) => a.reduce((s, v, k) => s + Math.abs(v - b[k]), 0);
    assert.ok(moved(probe.full.hi, probe.plain.hi) > 30, `the map did not change the pixel at its peak: ${JSON.stringify(probe)}`);
    assert.ok(lum(probe.full.hi) > lum(probe.full.lo) + 50, `the peak is not brighter than the trough (inferno): ${JSON.stringify(probe)}`);
    assert.deepEqual(probe.top.lo, probe.plain.lo, 'above the threshold only: the trough shows the plain image');
    assert.ok(moved(probe.top.hi, probe.plain.hi) > 30, 'the peak is still drawn at a high threshold');
  });

  test('a non-image file is reported and the page stays usable', async () => {
    const dir = tempDir('duoclip-bad-');
    const notImage = path.join(dir, 'notes.png');
    writeFileSync(notImage, 'this is text, not a PNG\n');
    await page.setInputFiles('#image-a', notImage);
    await page.setInputFiles('#image-b', IMAGES[1]);
    const error = await expectError(page, '#score-button');
    rmSync(dir, { recursive: true, force: true });
    assert.equal(error.code, 'bad_image', JSON.stringify(error));
    assert.match(error.shown, /not an image/);
    assert.equal(error.state, 'ready');
    assertMatchesNative(await scorePair(page), native, 'cpu after a bad image');
  });

  test('wrong weights and an unconvertible registry model are reported; the page stays usable', async () => {
    await page.selectOption('#model-select', 'local');
    await page.setInputFiles('#model-files', IMAGES[0]);
    const error = await expectError(page, '#load-button');
    assert.equal(error.code, 'bad_weights', JSON.stringify(error));
    assert.match(error.shown, /cannot be used/);
    assert.equal(error.state, 'ready', 'the model loaded before is kept');
    // A registry model published as a PyTorch pickle: the API refuses it with what to do
    // (the page does not offer Load for it; page-ux.test.mjs).
    const pickle = await page.evaluate(async () => {
      const { Detector } = await import('./duoclip.js');
      return Detector.load({ model: 'vit-b-16-plus-240-laion400m-e32', device: 'cpu' })
        .then(() => null, (e) => ({ code: e.code, message: e.message }));
    });
    assert.equal(pickle?.code, 'not_in_browser', JSON.stringify(pickle));
    assert.match(pickle.message, /duoclip convert/);
    assert.match(pickle.message, /Local files/);
    await page.selectOption('#model-select', 'models/tiny/');
    await loadModel(page, { device: 'cpu' });
    assertMatchesNative(await scorePair(page), native, 'cpu after bad weights');
  });

  test('a bundle picked from disk (manifest + weights + anchors) scores like the served one', async () => {
    const [loads, errors] = [await counter(page, 'loads'), await counter(page, 'errors')];
    await page.selectOption('#model-select', 'local');
    await page.selectOption('#device-select', 'cpu');
    const { weights, anchors } = tinyManifest();
    await page.setInputFiles('#model-files',
      ['manifest.json', weights.file, anchors.file].map((f) => path.join(TINY, f)));
    await page.click('#load-button');
    await waitFor(page, 'loads', loads, errors, TIMEOUT);
    assertMatchesNative(await scorePair(page), native, 'cpu, bundle from files');
  });

  test('Cancel stops the work and reloads the model from the cache, not the network', async () => {
    const outcome = await page.evaluate(async () => {
      const { Detector } = await import('./duoclip.js');
      const [a, b] = ['image-a', 'image-b'].map((id) => document.getElementById(id).files[0]);
      const detector = await Detector.load({ model: 'models/tiny/', device: 'cpu' });
      const pending = detector.scorePair(a, b).then(() => 'finished', (e) => e.code);
      await detector.cancel();
      const code = await pending;
      const results = await detector.scorePair(a, b, { domain: 'object', object: 'bottle' });
      detector.dispose();
      return { code, scores: results.map((r) => r.score) };
    });
    assert.equal(outcome.code, 'cancelled');
    assert.equal(outcome.scores.length, 2);
    const downloads = site.served.filter((p) => p.endsWith('models/tiny/model.safetensors'));
    assert.equal(downloads.length, 1, `model.safetensors was served ${downloads.length} times; after the first, the Cache Storage copy must be used`);
  });

  test('Cancel in the middle of a set keeps and shows the images already scored', async () => {
    await loadModel(page, { device: 'cpu' });
    await page.check('input[name=mode][value=set]');
    // Known-good references score each image alone, so each result is final, and sent, at once.
    await page.setInputFiles('#references', [IMAGES[0]]);
    await page.selectOption('#domain', 'object');
    await page.fill('#object', OBJECT);
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.setInputFiles('#image-set', IMAGES);
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    const clean = Object.fromEntries((await pageResults(page)).map((r) => [r.name, r]));

    const many = Array.from({ length: 60 }, (_, i) => IMAGES[i % 2]);
    await page.setInputFiles('#image-set', many);
    await page.click('#score-button');
    await page.waitForFunction(() => window.__duoclip.finished >= 1, null, { timeout: TIMEOUT });
    await page.click('#cancel-button');
    await page.waitForFunction(() => document.body.dataset.state === 'ready' &&
      document.getElementById('score-status').textContent.startsWith('Cancelled'), null, { timeout: TIMEOUT });
    const kept = await pageResults(page);
    assert.ok(kept.length >= 1 && kept.length < many.length, `${kept.length} results kept of ${many.length}`);
    const status = await page.textContent('#score-status');
    assert.match(status, new RegExp(`^Cancelled; the model is loaded again\\. ${kept.length} of 60 images were ` +
      'scored before this; their results are shown below \\(not scored: image(_big)?\\.png, '));
    // The kept results are the finished ones, not approximations: equal to the clean run's.
    for (const r of kept) assertMatchesNative([r], [clean[r.name]], `kept after Cancel (${r.name})`, 0);
    assert.equal(await counter(page, 'errors'), errors, 'a Cancel is not an error');
  });

  test('the CSP allows exactly the registry models the browser can load', async () => {
    const { csp, models } = await page.evaluate(() => ({
      csp: document.querySelector('meta[http-equiv=Content-Security-Policy]').content,
      models: window.__duoclip.registry,
    }));
    const connect = /connect-src ([^;]+)/.exec(csp)[1].split(/\s+/);
    const urls = connect.filter((s) => /^https:\/\/[^/]+\/./.test(s)).sort();
    const expected = models.filter((m) => m.browser).flatMap((m) => m.files.flatMap((f) => f.urls)).sort();
    assert.deepEqual(urls, expected);
    assert.ok(connect.includes("'self'"));
  });

  test('precision: f16 on the CPU or without shader-f16, and unknown names, are refused with what is accepted', async () => {
    const refusals = await page.evaluate(async () => {
      const { Detector } = await import(new URL('duoclip.js', location.href).href);
      const refusal = (precision) => Detector.load({ model: 'models/tiny/', device: 'cpu', precision })
        .then((d) => { d.dispose(); return null; }, (e) => ({ code: e.code, message: e.message }));
      const gpu = await navigator.gpu?.requestAdapter();
      // SwiftShader, the adapter here, has no shader-f16; a GPU that has it would load in f16.
      const webgpuF16 = gpu && !gpu.features.has('shader-f16')
        ? await Detector.load({ model: 'models/tiny/', device: 'webgpu', precision: 'f16' })
          .then((d) => { d.dispose(); return null; }, (e) => ({ code: e.code, message: e.message }))
        : undefined;
      return [await refusal('f16'), await refusal('bf16'), webgpuF16];
    });
    assert.equal(refusals[0]?.code, 'bad_option', JSON.stringify(refusals[0]));
    assert.match(refusals[0].message, /precision.*f16 is for GPU devices/);
    assert.equal(refusals[1]?.code, 'bad_option', JSON.stringify(refusals[1]));
    assert.match(refusals[1].message, /precision must be auto, f32 or f16, not bf16/);
    timings.webgpuF16Refusal = refusals[2] === undefined ? 'no adapter without shader-f16' : 'checked';
    if (refusals[2] !== undefined) {
      assert.equal(refusals[2]?.code, 'bad_option', JSON.stringify(refusals[2]));
      assert.match(refusals[2].message, /f16 needs a GPU with 16-bit float shaders/);
    }
  });

  test('the embedding example works with the element and the module API', async () => {
    const example = await site.context.newPage();
    // The CPU: on software WebGPU the example would spend minutes compiling shaders.
    await example.goto(new URL('example.html?device=cpu', site.url).href);
    await example.waitForFunction(() => window.__example, null, { timeout: TIMEOUT });
    const result = await example.evaluate(() => window.__example);
    assert.equal(result.error, undefined, JSON.stringify(result));
    assert.equal(result.scores.length, 2);
    await example.setInputFiles('duoclip-detector input[type=file]', IMAGES);
    await example.waitForFunction(() => document.querySelector('duoclip-detector')
      .shadowRoot.querySelectorAll('canvas').length === 2, null, { timeout: TIMEOUT });
    await example.close();
  });

  test('after one visit the page and the model work offline', async () => {
    await page.evaluate(() => navigator.serviceWorker.ready);
    await site.context.setOffline(true);
    try {
      await page.reload();
      await page.waitForFunction(() => document.body.dataset.state === 'idle');
      await loadModel(page, { device: 'cpu' });
      assertMatchesNative(await scorePair(page), native, 'offline');
    } finally {
      await site.context.setOffline(false);
    }
  });

  test('auto: WebGPU on a hardware adapter, the CPU with a note on a software one', async () => {
    const fallback = await page.evaluate(async () => {
      const adapter = await navigator.gpu?.requestAdapter();
      return adapter ? Boolean(adapter.info?.isFallbackAdapter) : null;
    });
    const { device, note } = await loadModel(page, { device: 'auto', timeout: WEBGPU_TIMEOUT });
    if (fallback === false) {
      assert.equal(device, 'webgpu');
    } else {
      assert.equal(device, 'cpu');
      assert.ok(note, 'the page says why it runs on the CPU');
    }
    if (fallback === true) assert.match(note, /software fallback/);
  });

  test('WebGPU: scores and maps equal the native CLI (where an adapter exists)', async (t) => {
    let started = Date.now();
    const { device, note, precision } = await loadModel(page, { device: 'webgpu', timeout: WEBGPU_TIMEOUT });
    timings.webgpuModelLoadMs = Date.now() - started;
    if (device !== 'webgpu') {
      console.log(`WebGPU SKIPPED: the browser offers no WebGPU adapter here (${note})`);
      assert.ok(!process.env.DUOCLIP_REQUIRE_GPU, 'no WebGPU adapter, and DUOCLIP_REQUIRE_GPU is set (scripts/test.sh): a broken machine');
      t.skip(`no WebGPU adapter: ${note}`);
      return;
    }
    timings.webgpuPrecision = precision;
    assert.match(precision, /^f(16|32)$/);
    started = Date.now();
    const results = await scorePair(page, WEBGPU_TIMEOUT);
    timings.webgpuFirstPairMs = Date.now() - started;
    // The threaded builds have no WebGPU: a detector on WebGPU gets a one-thread build.
    assert.equal(await page.evaluate(() => window.__duoclip.wasmBuild), 'relaxed-simd');
    // f16 linear layers: the tolerance against f32 (as tests/precision.rs natively).
    // f16: the native f16 maps' measured error on lavapipe is 3.3e-6 (tests/precision.rs).
    assertMatchesNative(results, native, 'webgpu', 1e-4);
  });

  test('no request left 127.0.0.1', () => {
    assert.deepEqual(site.offsite, []);
  });
});


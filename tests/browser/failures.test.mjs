// Forced failures in the page (issue #7, item 3), with the tiny random-weight model:
// - the WebGPU device is destroyed mid-run: the run finishes on the CPU with the native CLI's
//   results and the page says what happened;
// - under `auto`, the WebGPU device is destroyed as soon as it exists: the model loads on the
//   CPU and the page says why;
// - the wasm memory runs out in the middle of a set: a clear "out of memory" message, the
//   images finished before are kept and shown, and the page scores again at once;
// - Detector.cancel() twice in a row (a double click on Cancel): one restart, one worker, and
//   the detector scores again (on an API-only page of its own, site-copy.mjs).
//
// The failures are forced from the test, not by a switch in the shipped page: Playwright
// evaluates code in the detector's worker (its global scope), which an ordinary visitor cannot
// do. Device loss: GPUAdapter.requestDevice is wrapped to capture the real GPUDevice, which is
// destroyed (`device.destroy()`) when the worker reports the first image done, or at once;
// for `auto` to choose WebGPU here the adapter's info is made to say it is not SwiftShader's
// software fallback (the only adapter on this machine). Out of memory:
// the wasm memory is grown from JavaScript to 16 MB short of its 4 GiB maximum, pages the
// Rust allocator never sees, so the next large allocation (decoding a 5000×5000 image) really
// fails inside the module, as it would in a tab that had used its memory up.

import assert from 'node:assert/strict';
import { rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { startSite, tempDir } from './harness.mjs';
import { openApiPage, siteCopy } from './site-copy.mjs';
import {
  BUILD_DIRS, IMAGES, OBJECT, TIMEOUT, WEBGPU_TIMEOUT, assertMatchesNative, counter, detectorWorkers,
  expectError, loadModel, nativeReference, pageResults, scorePair, waitFor,
} from './page-driver.mjs';
import { greyPng } from './png.mjs';

/**
 * In the worker: destroy every GPUDevice it creates once `afterImages` images are done, or as
 * soon as it is created when `afterImages` is 0.
 */
function installDeviceLoss(worker, afterImages) {
  return worker.evaluate((n) => {
    self.__lost = [];
    const devices = [];
    const requestDevice = GPUAdapter.prototype.requestDevice;
    GPUAdapter.prototype.requestDevice = async function wrapped(...args) {
      const device = await requestDevice.apply(this, args);
      devices.push(device);
      device.lost.then((info) => self.__lost.push(`${info.reason}: ${info.message}`));
      if (n === 0) device.destroy();
      return device;
    };
    const post = self.postMessage.bind(self);
    let destroyed = false;
    self.postMessage = (message, transfer) => {
      post(message, transfer);
      if (n > 0 && !destroyed && message.type === 'progress' && message.stage === 'score' && message.done >= n) {
        destroyed = true;
        for (const device of devices) device.destroy();
      }
    };
  }, afterImages);
}

/** In the worker: adapters report `isFallbackAdapter: false`, the rest of their info as is. */
function pretendHardwareAdapter(worker) {
  return worker.evaluate(() => {
    const requestAdapter = GPU.prototype.requestAdapter;
    GPU.prototype.requestAdapter = async function wrapped(...args) {
      const adapter = await requestAdapter.apply(this, args);
      if (!adapter) return adapter;
      const real = adapter.info;
      const info = {};
      for (const key of Object.keys(Object.getOwnPropertyDescriptors(Object.getPrototypeOf(real)))) {
        if (key !== 'constructor') info[key] = real[key];
      }
      info.isFallbackAdapter = false;
      Object.defineProperty(adapter, 'info', { value: info });
      return adapter;
    };
  });
}

/**
 * A page of its own, and the workers it starts: the first is the one its first model load
 * runs in (the page starts it to read the registry), so hooks installed there see that load.
 */
async function openPage(site) {
  const page = await site.context.newPage();
  const workers = [];
  page.on('worker', (w) => workers.push(w));
  await page.goto(site.url);
  await page.waitForFunction(() => document.body.dataset.state === 'idle' && window.__duoclip.registry);
  return { page, workers };
}

const hasWebGpuAdapter = (page) => page.evaluate(async () => Boolean(await navigator.gpu?.requestAdapter()));

/**
 * In the worker: grow the wasm memory to `headroomBytes` short of its maximum (4 GiB).
 * `glue` is the absolute URL of the chosen build's duoclip.js: importing it again in the worker gives the
 * module instance worker.js uses, and its init() the exports already instantiated.
 */
function exhaustWasmMemory(worker, glue, headroomBytes) {
  return worker.evaluate(async ([url, headroom]) => {
    const exports = await (await import(url)).default();
    const page = 65536;
    exports.memory.grow(65536 - exports.memory.buffer.byteLength / page - headroom / page);
    return exports.memory.buffer.byteLength;
  }, [glue, headroomBytes]);
}

describe('forced failures (tiny model)', { concurrency: false }, () => {
  let site;
  let page;
  let workers;
  let native;
  const dir = tempDir('duoclip-failures-');

  before(async () => {
    [native, site] = await Promise.all([nativeReference(), startSite()]);
    ({ page, workers } = await openPage(site));
  });

  after(async () => {
    if (site?.consoleLines.length) console.log(`browser console:\n  ${site.consoleLines.join('\n  ')}`);
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('WebGPU lost mid-run: the run finishes on the CPU with the same results, and the page says so', async (t) => {
    if (!(await hasWebGpuAdapter(page))) {
      console.log('device loss SKIPPED: the browser offers no WebGPU adapter here');
      assert.ok(!process.env.DUOCLIP_REQUIRE_GPU, 'no WebGPU adapter, and DUOCLIP_REQUIRE_GPU is set (scripts/test.sh): a broken machine');
      t.skip('no WebGPU adapter');
      return;
    }
    const [worker] = workers;
    await installDeviceLoss(worker, 1);
    const { device } = await loadModel(page, { device: 'webgpu', timeout: WEBGPU_TIMEOUT });
    assert.equal(device, 'webgpu');
    const results = await scorePair(page, WEBGPU_TIMEOUT);
    const lost = await worker.evaluate(() => self.__lost);
    assert.deepEqual(lost, ['destroyed: Device was destroyed.'], 'the real GPUDevice was destroyed mid-run');
    assertMatchesNative(results, native, 'after device loss');
    const shown = await page.evaluate(() => ({
      device: window.__duoclip.device,
      status: document.getElementById('score-status').textContent,
      badge: document.getElementById('device-badge').textContent,
    }));
    assert.equal(shown.device, 'cpu');
    assert.match(shown.status, /^Scored 2 image\(s\) in .* WebGPU failed while scoring \(.*Device was destroyed.*\); re-ran on the CPU\.$/);
    assert.match(shown.badge, /^Running on the CPU \(wasm\) — WebGPU failed while scoring/);
    // The next run stays on the CPU and still matches.
    assertMatchesNative(await scorePair(page), native, 'the run after device loss');
  });

  test('auto: WebGPU lost while the model is prepared, so it loads on the CPU and says why', async (t) => {
    if (!(await hasWebGpuAdapter(page))) {
      console.log('device loss at load SKIPPED: the browser offers no WebGPU adapter here');
      assert.ok(!process.env.DUOCLIP_REQUIRE_GPU, 'no WebGPU adapter, and DUOCLIP_REQUIRE_GPU is set (scripts/test.sh): a broken machine');
      t.skip('no WebGPU adapter');
      return;
    }
    const own = await openPage(site);
    try {
      await pretendHardwareAdapter(own.workers[0]);
      await installDeviceLoss(own.workers[0], 0);
      const { device, note } = await loadModel(own.page, { device: 'auto', timeout: WEBGPU_TIMEOUT });
      assert.deepEqual(await own.workers[0].evaluate(() => self.__lost), ['destroyed: Device was destroyed.']);
      assert.equal(device, 'cpu');
      assert.match(note, /^WebGPU failed while preparing the model \(the WebGPU warm-up pass failed: .*Device was destroyed\.\); running on the CPU$/);
      const badge = await own.page.evaluate(() => document.getElementById('device-badge').textContent);
      assert.equal(badge, `Running on the CPU (wasm) — ${note}`);
      assertMatchesNative(await scorePair(own.page), native, 'auto after device loss at load');
    } finally {
      await own.page.close();
    }
  });

  test('auto without a WebGPU adapter: the threaded CPU build, and the page says why', async () => {
    const own = await openPage(site);
    try {
      await own.workers[0].evaluate(() => {
        GPU.prototype.requestAdapter = async () => null;
      });
      const { device, note } = await loadModel(own.page, { device: 'auto' });
      assert.equal(device, 'cpu');
      assert.equal(note, 'running on the CPU: no WebGPU adapter');
      assert.equal(await own.page.evaluate(() => window.__duoclip.wasmBuild), 'relaxed-simd+threads');
      assertMatchesNative(await scorePair(own.page), native, 'auto without a WebGPU adapter');
    } finally {
      await own.page.close();
    }
  });

  test('out of memory in the middle of a set: a clear message, finished images kept, the page usable', async () => {
    const huge = path.join(dir, 'huge.png');
    writeFileSync(huge, greyPng(5000, 5000)); // 75 MB of pixels once decoded
    await loadModel(page, { device: 'cpu' });
    // Known-good references score each image alone, so each image's result is final at once.
    const scoreSet = async (files) => {
      const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
      await page.setInputFiles('#image-set', files);
      await page.click('#score-button');
      await waitFor(page, 'scores', scores, errors, TIMEOUT);
      return pageResults(page);
    };
    await page.check('input[name=mode][value=set]');
    await page.setInputFiles('#references', [IMAGES[0]]);
    await page.selectOption('#domain', 'object');
    await page.fill('#object', OBJECT);
    const clean = await scoreSet(IMAGES);
    assert.equal(clean.length, 2);

    // The glue of the build worker.js chose (pkg-threads-relaxed in a cross-origin isolated
    // Chromium): its instance, and so its memory, is the detector's.
    const build = await page.evaluate(() => window.__duoclip.wasmBuild);
    const glue = new URL(`${BUILD_DIRS[build]}/duoclip.js`, site.url).href;
    const memory = await exhaustWasmMemory(detectorWorkers(workers).at(-1), glue, 16 << 20);
    assert.ok(memory > 4.2e9, `the wasm memory was grown to ${memory} bytes`);
    await page.setInputFiles('#image-set', [...IMAGES, huge, IMAGES[0]]);
    const error = await expectError(page, '#score-button');
    assert.equal(error.code, 'out_of_memory', JSON.stringify(error));
    assert.match(error.shown, /^Out of memory: the browser could not give the detector 75 MB more memory \(its wasm memory was already 42\d\d MB;/);
    assert.match(error.shown, /2 of 4 images were scored before this; their results are shown below \(not scored: huge\.png, image\.png\)$/);
    assert.equal(error.state, 'ready');
    const kept = await pageResults(page);
    assert.deepEqual(kept.map((r) => r.name), ['image.png', 'image_big.png']);
    // The kept results are the finished ones, not approximations: equal to the clean run's.
    assertMatchesNative(kept, clean, 'kept after out of memory', 0);

    // The page is usable at once: a fresh worker reloaded the model (from the cache).
    assertMatchesNative(await scoreSet(IMAGES), clean, 'the run after out of memory', 0);
  });

  test('no request left 127.0.0.1', () => {
    assert.deepEqual(site.offsite, []);
  });
});

describe('Detector.cancel() twice in a row', () => {
  test('the second call returns the first restart; one worker is left, and it scores', async () => {
    const copy = siteCopy();
    const site = await startSite({ root: copy.root });
    try {
      const { page, detectors } = await openApiPage(site);
      const outcome = await page.evaluate(async () => {
        const detector = await window.duoclip.Detector.load({ model: 'models/tiny/', device: 'cpu' });
        const image = async (name) => (await fetch(`fixtures/${name}`)).blob();
        const [a, b] = [await image('image.png'), await image('image_big.png')];
        const score = async () => (await detector.scorePair(a, b, { domain: 'object', object: 'bottle' })).map((r) => r.score);
        const before = await score();
        const running = score().then(() => 'finished', (e) => e.code);
        const first = detector.cancel();
        const second = detector.cancel();
        await second;
        const later = detector.cancel(); // once the restart is done, a Cancel restarts again
        await later;
        return { running: await running, same: first === second, again: later !== first, before, after: await score() };
      });
      assert.equal(outcome.running, 'cancelled');
      assert.equal(outcome.same, true, 'the second cancel() returned the first one\'s restart');
      assert.equal(outcome.again, true);
      assert.equal(outcome.before.length, 2);
      assert.deepEqual(outcome.after, outcome.before, 'the restarted detector scores as before');
      // The load's worker and two restarts' (not three): only the last one still runs.
      await waitUntilClosed(detectors, 2);
      assert.deepEqual(detectors.map((d) => d.closed), [true, true, false]);
    } finally {
      await site.close();
      copy.remove();
    }
  });
});

/** Waits (up to 10 s) until `count` of the detector workers have closed. */
async function waitUntilClosed(detectors, count) {
  for (let waited = 0; waited < 10_000 && detectors.filter((d) => d.closed).length < count; waited += 100) {
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

// Driving the page (www/index.html) as a user would, and the native CLI's results it must
// match: shared by the page's tests and the failure tests.

import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import path from 'node:path';

import { REPO, maxAbsDiff, readNpy, runDuoclip, tempDir } from './harness.mjs';
import { tinyCliArgs } from './tiny-model.mjs';

// The browser's CPU builds (all four) against the native CLI, sized to what they achieve:
// measured max |Δ| 9e-8 in the maps and 0 in the scores (2026-12-02), against a map range of
// ~0.005 and a gap of ~3e-3 between the two fixture images' scores. WebGPU's f32 path gets
// 1e-4 (its own kernels), f32 or f16.
export const TOL = 1e-5;

/**
 * Those of `workers` (a page's, in start order) that are detectors (worker.js, whose URL
 * duoclip.js marks): a threaded build's pool workers are listed too, and answer nothing (their
 * thread runs the pool's loop).
 */
export function detectorWorkers(workers) {
  const detectors = workers.filter((w) => w.url().endsWith('#duoclip-detector'));
  assert.ok(detectors.length > 0, `none of the page's ${workers.length} workers is a detector`);
  return detectors;
}

/** The folder of www/ that holds each build worker.js may choose, by the name it reports. */
export const BUILD_DIRS = {
  'relaxed-simd+threads': 'pkg-threads-relaxed',
  'simd128+threads': 'pkg-threads',
  'relaxed-simd': 'pkg-relaxed',
  simd128: 'pkg',
};
export const IMAGES = ['openclip_tiny/image.png', 'openclip_tiny/image_big.png']
  .map((f) => path.join(REPO, 'tests', 'fixtures', f));
export const OBJECT = 'bottle';
export const TIMEOUT = 60_000;
// SwiftShader (software WebGPU) compiles every shader on the CPU: ~25 s to load, ~80 s for the
// first pair of the tiny model on 2 cores.
export const WEBGPU_TIMEOUT = 300_000;

/**
 * The CLI's maps and scores for the pair, the reference the browser must match; `what` says
 * what the images show (by default the object domain's bottle) and any other options.
 */
export async function nativeReference(what = ['--domain', 'object', '--object', OBJECT], images = IMAGES) {
  const out = tempDir('duoclip-native-');
  const cache = tempDir('duoclip-cache-');
  try {
    await runDuoclip([
      'score', ...tinyCliArgs(), ...what, '--out', out, ...images,
    ], { DUOCLIP_CACHE: cache });
    const scores = JSON.parse(readFileSync(path.join(out, 'scores.json'), 'utf8'));
    return scores.images.map((entry) => {
      const npy = readNpy(path.join(out, entry.map));
      return { score: entry.score, height: npy.shape[0], width: npy.shape[1], map: npy.data };
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
    rmSync(cache, { recursive: true, force: true });
  }
}

/** A new tab of `site` with the page started (its registry read, nothing loaded). */
export async function openPage(site) {
  const page = await site.context.newPage();
  await page.goto(site.url);
  await page.waitForFunction(() => document.body.dataset.state === 'idle');
  return page;
}

export const counter = (page, name) => page.evaluate((n) => window.__duoclip[n], name);

/** Waits until `name` grew past `from`, or an error was counted (then fails with it). */
export async function waitFor(page, name, from, errorsFrom, timeout) {
  await page.waitForFunction(([n, f, e]) => window.__duoclip[n] > f || window.__duoclip.errors > e,
    [name, from, errorsFrom], { timeout });
  const { errors, error } = await page.evaluate(() => window.__duoclip);
  assert.equal(errors, errorsFrom, `the page reported an error: ${JSON.stringify(error)}`);
}

/** Clicks `button` and returns the error the page reports (it must report one). */
export async function expectError(page, button, timeout = TIMEOUT) {
  const errors = await counter(page, 'errors');
  await page.click(button);
  await page.waitForFunction((e) => window.__duoclip.errors > e, errors, { timeout });
  // The page sets its state after showing the error: wait until it is no longer busy.
  await page.waitForFunction(() => !['scoring', 'loading'].includes(document.body.dataset.state),
    null, { timeout });
  return page.evaluate(() => ({
    ...window.__duoclip.error,
    shown: document.getElementById('error').hidden ? '' : document.getElementById('error').textContent,
    state: document.body.dataset.state,
  }));
}

export async function loadModel(page, { device, model = 'models/tiny/', timeout = TIMEOUT }) {
  const [loads, errors] = [await counter(page, 'loads'), await counter(page, 'errors')];
  await page.selectOption('#model-select', model);
  await page.selectOption('#device-select', device);
  await page.click('#load-button');
  await waitFor(page, 'loads', loads, errors, timeout);
  return page.evaluate(() => ({
    device: window.__duoclip.device, note: window.__duoclip.deviceNote, precision: window.__duoclip.precision,
  }));
}

/** The page's results as plain objects (maps as arrays), to compare in Node. */
export const pageResults = (page) =>
  page.evaluate(() => window.__duoclip.results.map((r) => ({ ...r, map: Array.from(r.map) })));

export async function scorePair(page, timeout = TIMEOUT) {
  const [a, b] = IMAGES;
  const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
  await page.check('input[name=mode][value=pair]');
  await page.setInputFiles('#image-a', a);
  await page.setInputFiles('#image-b', b);
  await page.fill('#object', OBJECT);
  await page.selectOption('#domain', 'object');
  await page.click('#score-button');
  await waitFor(page, 'scores', scores, errors, timeout);
  return pageResults(page);
}

export function assertMatchesNative(browser, native, where, tol = TOL) {
  assert.equal(browser.length, native.length, `${where}: one result per image`);
  for (const [i, b] of browser.entries()) {
    const n = native[i];
    assert.deepEqual([b.height, b.width], [n.height, n.width], `${where}: map ${i} shape`);
    assert.ok(Math.abs(b.score - n.score) <= tol, `${where}: score ${i} ${b.score} vs native ${n.score}`);
    const diff = maxAbsDiff(b.map, n.map);
    assert.ok(diff <= tol, `${where}: map ${i} differs from the native map by up to ${diff}`);
  }
  assertDistinguishable(native, tol, where);
}

/**
 * Results swapped between images must fail the comparison: each two references differ by more
 * than the tolerance in their score or somewhere in their map (near-identical slices of a
 * series may score alike and still differ in where their maps are high).
 */
function assertDistinguishable(native, tol, where) {
  for (const [i, a] of native.entries()) {
    for (const [j, b] of native.slice(i + 1).entries()) {
      const gap = Math.max(Math.abs(a.score - b.score), maxAbsDiff(a.map, b.map));
      assert.ok(gap > tol, `${where}: references ${i} and ${i + 1 + j} differ by ${gap} at most, too little to catch a swap`);
    }
  }
}

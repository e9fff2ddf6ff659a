// Verdicts in the page (issue #26): known-good references calibrate a threshold (each scored
// against the others), and each image gets a verdict, its margin and its regions — the same
// thresholds and verdicts as `duoclip calibrate` + `duoclip score --calibration` give for the
// same files; badges in the list, the rule in words, outlines on the overlay, all in the export.
//
//   node --test tests/browser/decisions.test.mjs

import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { runDuoclip, startSite, tempDir } from './harness.mjs';
import { IMAGES, OBJECT, TIMEOUT, TOL, counter, loadModel, openPage, pageResults, waitFor } from './page-driver.mjs';
import { png } from './png.mjs';
import { tinyCliArgs } from './tiny-model.mjs';

const GOOD_COUNT = 5;

/** Known-good images: one stripe pattern, shifted (alike, not identical). */
function writeGoods(dir) {
  return Array.from({ length: GOOD_COUNT }, (_, k) => {
    const file = path.join(dir, `good-${k}.png`);
    writeFileSync(file, png(48, 48, (x, y) => [((x + 3 * k) * 16) % 256, (y * 8) % 256, 120]));
    return file;
  });
}

const WHAT = ['--domain', 'object', '--object', OBJECT];
const cacheIn = (dir) => ({ DUOCLIP_CACHE: path.join(dir, 'cache') });

/** The CLI's thresholds and each image's verdict, margin and regions for the same files. */
async function nativeDecisions(goods, dir) {
  const calibration = path.join(dir, 'calibration.json');
  await runDuoclip(['calibrate', ...tinyCliArgs(), ...WHAT, '--out', calibration, ...goods], cacheIn(dir));
  return nativeScored(goods, calibration, dir);
}

/** `duoclip score --calibration` of the test images against the good ones. */
async function nativeScored(goods, calibration, dir) {
  const out = path.join(dir, 'scored');
  rmSync(out, { recursive: true, force: true });
  await runDuoclip(['score', ...tinyCliArgs(), ...WHAT, '--calibration', calibration,
    ...goods.flatMap((g) => ['--reference', g]), '--out', out, ...IMAGES], cacheIn(dir));
  const scores = JSON.parse(readFileSync(path.join(out, 'scores.json'), 'utf8'));
  return { thresholds: JSON.parse(readFileSync(calibration, 'utf8')).thresholds, images: scores.images };
}

describe('verdicts from known-good references (tiny model, CPU)', { concurrency: false }, () => {
  let site;
  let page;
  const dir = tempDir('duoclip-decisions-');
  let goods;

  before(async () => {
    goods = writeGoods(dir);
    site = await startSite();
    page = await openPage(site);
    await loadModel(page, { device: 'cpu' });
  });

  after(async () => {
    await site?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test('thresholds, verdicts and margins equal the CLI; badges, the rule and the export say them', async () => {
    const native = await nativeDecisions(goods, dir);
    await page.check('input[name=mode][value=set]');
    await page.setInputFiles('#image-set', IMAGES);
    await page.setInputFiles('#references', goods);
    await page.fill('#object', OBJECT);
    await page.check('#verdicts');
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    const thresholds = await page.evaluate(() => window.__duoclip.calibration);
    for (const key of ['image', 'band', 'pixel']) {
      assert.ok(Math.abs(thresholds[key] - native.thresholds[key]) <= TOL,
        `${key}: page ${thresholds[key]}, CLI ${native.thresholds[key]}`);
    }
    assert.equal(thresholds.good.count, GOOD_COUNT);
    assert.ok(Math.abs(thresholds.bound - 1 / (GOOD_COUNT + 1)) < 1e-12, `five good images bound false alarms by 1/6 only: ${thresholds.bound}`);
    const results = await pageResults(page);
    assert.equal(results.length, native.images.length);
    for (const [i, r] of results.entries()) {
      const n = native.images[i];
      assert.equal(r.verdict, n.verdict, `image ${i}: page ${r.verdict}, CLI ${n.verdict}`);
      assert.ok(Math.abs(r.margin - (r.score - thresholds.image)) <= 1e-6, `margin of image ${i}`);
      assert.ok(Math.abs(r.margin - n.margin) <= TOL, `image ${i}: margin ${r.margin} vs CLI ${n.margin}`);
      const peak = Math.max(...r.map);
      assert.equal(r.regions.length > 0, peak > thresholds.pixel, `image ${i}: regions exist iff the peak passes`);
    }
    const badges = await page.$$eval('#result-list .verdict', (els) => els.map((e) => e.textContent));
    assert.deepEqual([...badges].sort(), results.map((r) => r.verdict).sort(), 'one badge per image');
    assert.match(await page.textContent('#results-verdicts'), /set on 5 known-good image\(s\).*at most 17% \(5 known-good image\(s\) cannot bound it below 1\/6/);
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    const record = JSON.parse(readFileSync(await download.path(), 'utf8'));
    assert.deepEqual(record.calibration, thresholds);
    assert.deepEqual(record.images.map((im) => im.verdict), results.map((r) => r.verdict));
    assert.deepEqual(record.images.map((im) => im.regions.length), results.map((r) => r.regions.length));
  });

  test('regions above a pixel threshold within the maps equal the CLI\'s, and are outlined', async () => {
    // The calibration's pixel threshold moved into the first image's map, so that it has regions.
    const file = path.join(dir, 'calibration.json');
    const calibration = JSON.parse(readFileSync(file, 'utf8'));
    // Halfway across the widest gap between neighbouring values of its upper fifth: a value
    // within the CPU tolerance of the threshold would make the two builds' regions differ by
    // a pixel without either being wrong.
    const sorted = [...(await pageResults(page))[0].map].sort((a, b) => a - b);
    let at = Math.floor(sorted.length * 0.6);
    for (let k = at; k < Math.floor(sorted.length * 0.95); k++) {
      if (sorted[k + 1] - sorted[k] > sorted[at + 1] - sorted[at]) at = k;
    }
    assert.ok(sorted[at + 1] - sorted[at] > 2 * TOL, `no gap in the map wider than the tolerance: ${sorted[at + 1] - sorted[at]}`);
    calibration.thresholds.pixel = (sorted[at] + sorted[at + 1]) / 2;
    const moved = path.join(dir, 'calibration-moved.json');
    writeFileSync(moved, JSON.stringify(calibration));
    const native = await nativeScored(goods, moved, dir);
    const images = [...IMAGES, ...goods].map((f) => [...readFileSync(f)]);
    const results = await page.evaluate(async ([bytes, thresholds, count, object]) => {
      const { Detector } = await import('./duoclip.js');
      const detector = await Detector.load({ model: 'models/tiny/', device: 'cpu' });
      const blobs = bytes.map((b) => new Blob([new Uint8Array(b)], { type: 'image/png' }));
      const scored = await detector.scoreSet(blobs.slice(0, count), {
        domain: 'object', object, references: blobs.slice(count), calibration: thresholds,
      });
      detector.dispose();
      return scored.map(({ verdict, regions }) => ({ verdict, regions }));
    }, [images, calibration.thresholds, IMAGES.length, OBJECT]);
    assert.ok(results[0].regions.length > 0, 'the moved threshold leaves regions in the first map');
    for (const [i, r] of results.entries()) {
      const n = native.images[i].regions;
      assert.equal(r.regions.length, n.length, `image ${i}: ${r.regions.length} regions, CLI ${n.length}`);
      for (const [k, region] of r.regions.entries()) {
        for (const key of ['x', 'y', 'width', 'height', 'area']) assert.equal(region[key], n[k][key], `image ${i} region ${k} ${key}`);
        for (const key of ['share', 'peak', 'mean']) {
          assert.ok(Math.abs(region[key] - n[k][key]) <= TOL, `image ${i} region ${k} ${key}: ${region[key]} vs ${n[k][key]}`);
        }
      }
    }
  });

  test('verdicts without references: Score says what is missing', async () => {
    await page.setInputFiles('#references', []);
    await page.check('#verdicts');
    assert.match(await page.textContent('#score-why'), /Verdicts need known-good references/);
    assert.equal(await page.isDisabled('#score-button'), true);
    await page.uncheck('#verdicts');
  });
});

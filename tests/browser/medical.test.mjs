// Medical files in the page (issue #22): a NIfTI volume and DICOM files (one multi-frame, two
// single-frame; and a series of four single-frame files, shuffled) picked as a set are read by the wasm with the CLI's readers, each slice and frame
// scored, the maps equal to the CLI's; the slice scroller and strip chart step through a
// volume; the domain is suggested by a DICOM file; the JSON export names DICOM images by
// series/instance/frame, says what was withheld, and holds none of the patient's strings; and
// no request leaves 127.0.0.1.
//
//   node --test tests/browser/medical.test.mjs

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO, startSite } from './harness.mjs';
import {
  TIMEOUT, assertMatchesNative, counter, loadModel, nativeReference, openPage, pageResults, waitFor,
} from './page-driver.mjs';

const MEDICAL = path.join(REPO, 'tests', 'fixtures', 'medical');
const FILES = ['ct_oblique.nii.gz', 'multiframe_rle.dcm', 'ct_explicit.dcm', 'mr_implicit.dcm']
  .map((f) => path.join(MEDICAL, f));
const REFERENCE = JSON.parse(readFileSync(path.join(MEDICAL, 'reference.json'), 'utf8'));
const DOMAIN = 'liver-ct';

/** The labels the fixtures' reference (pydicom, nibabel) gives each file's images, in order. */
const expectedLabels = () => FILES.map((f) => REFERENCE[path.basename(f)].labels);

describe('DICOM and NIfTI in the page (tiny model, CPU)', { concurrency: false }, () => {
  let site;
  let page;
  let native;
  let results;

  before(async () => {
    [native, site] = await Promise.all([
      nativeReference(['--domain', DOMAIN, '--pairing', 'set'], FILES),
      startSite(),
    ]);
    page = await openPage(site);
    await loadModel(page, { device: 'cpu' });
  });

  after(async () => {
    await site?.close();
  });

  test('a volume and DICOM files picked as a set: every slice and frame, maps equal to the CLI', async () => {
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.check('input[name=mode][value=set]');
    await page.setInputFiles('#image-set', FILES);
    await page.selectOption('#domain', DOMAIN);
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    results = await pageResults(page);
    const labels = expectedLabels();
    assert.equal(results.length, labels.flat().length, 'one result per slice and frame');
    assert.deepEqual(results.map((r) => r.label), labels.flat(), 'labels in file order');
    assert.deepEqual(results.map((r) => r.fileIndex), labels.flatMap((l, f) => l.map(() => f)));
    assertMatchesNative(results, native, 'medical set');
    // A DICOM image is named by series, instance and frame alone; a volume's slice by file and slice.
    for (const r of results) {
      const expected = r.fileIndex === 0 ? `ct_oblique.nii.gz#${r.label}` : r.label;
      assert.equal(r.name, expected);
    }
    assert.deepEqual(site.offsite, [], 'nothing may leave 127.0.0.1');
  });

  test('the slice scroller and strip chart step through the volume; the worst slice is one click away', async () => {
    const volume = results.map((r, i) => [r, i]).filter(([r]) => r.fileIndex === 0).map(([, i]) => i);
    await page.click(`#result-list button[data-index="${volume[1]}"]`);
    await page.waitForFunction((i) => document.body.dataset.selected === String(i), volume[1]);
    assert.equal(await page.isVisible('#slices'), true, 'the scroller is shown for a volume');
    assert.equal(await page.getAttribute('#slice-range', 'max'), String(volume.length));
    assert.equal(await page.inputValue('#slice-range'), '2');
    const worst = volume.reduce((best, i) => (results[i].score > results[best].score ? i : best), volume[0]);
    await page.click('#slice-worst');
    await page.waitForFunction((i) => document.body.dataset.selected === String(i), worst);
    await page.focus('#slice-range');
    await page.keyboard.press('Home');
    await page.waitForFunction((i) => document.body.dataset.selected === String(i), volume[0]);
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction((i) => document.body.dataset.selected === String(i), volume[1]);
    const chart = await page.getAttribute('#slice-chart', 'aria-label');
    assert.match(chart, new RegExp(`highest ${results[worst].score.toFixed(4)} at ${results[worst].label}`));
    // A DICOM file of one frame has no scroller.
    const single = results.findIndex((r) => r.fileIndex === 2);
    await page.click(`#result-list button[data-index="${single}"]`);
    await page.waitForFunction((i) => document.body.dataset.selected === String(i), single);
    assert.equal(await page.isVisible('#slices'), false);
  });

  test('the JSON export names DICOM images by their numbers, says what was withheld, holds no PHI', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-json')]);
    const text = readFileSync(await download.path(), 'utf8');
    for (const secret of Object.values(REFERENCE.phi)) {
      for (const part of [secret, ...secret.split('^')]) {
        assert.ok(!text.toLowerCase().includes(part.toLowerCase()), `the export holds ${part}`);
      }
    }
    const record = JSON.parse(text);
    const dicom = record.images.filter((im) => im.label?.startsWith('series='));
    assert.equal(dicom.length, results.filter((r) => r.fileIndex > 0).length);
    for (const im of dicom) {
      assert.equal(im.file, im.label, 'a DICOM image is named by its label alone');
      assert.ok(im.withheld.includes('PatientName') && im.withheld.includes('PatientID'), `${im.file} withheld ${im.withheld}`);
    }
    const slice = record.images.find((im) => im.file.startsWith('ct_oblique.nii.gz#'));
    assert.match(slice.window.source, /^percentile 0\.5-99\.5$/, `a NIfTI without a window gets the percentile one: ${JSON.stringify(slice.window)}`);
    assert.ok(Number.isFinite(slice.window.centre) && slice.window.width > 0, JSON.stringify(slice.window));
  });

  test('a DICOM series given as shuffled single files is one stack in instance order, maps equal to the CLI', async () => {
    const series = [3, 1, 4, 2].map((n) => path.join(MEDICAL, `series_mr_${n}.dcm`));
    const expected = await nativeReference(['--domain', 'brain-mri', '--pairing', 'set'], series);
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.setInputFiles('#image-set', series);
    await page.selectOption('#domain', 'brain-mri');
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    const got = await pageResults(page);
    assertMatchesNative(got, expected, 'series');
    assert.deepEqual(got.map((r) => r.stack), [0, 0, 0, 0], 'one stack');
    const instances = got.map((r) => Number(/instance=(\d+)/.exec(r.label)[1]));
    assert.deepEqual(got.map((r) => r.slice), instances.map((i) => [...instances].sort((a, b) => a - b).indexOf(i)),
      'slices in InstanceNumber order');
    const first = got.findIndex((r) => r.slice === 0);
    await page.click(`#result-list button[data-index="${first}"]`);
    await page.waitForFunction((i) => document.body.dataset.selected === String(i), first);
    assert.equal(await page.getAttribute('#slice-range', 'max'), '4');
    await page.focus('#slice-range');
    await page.keyboard.press('ArrowRight');
    const second = got.findIndex((r) => r.slice === 1);
    await page.waitForFunction((i) => document.body.dataset.selected === String(i), second);
  });

  test('one volume alone makes a set of its slices: Score waits for the count, then scores them like the CLI', async () => {
    const expected = await nativeReference(['--domain', DOMAIN, '--pairing', 'set'], FILES.slice(0, 1));
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.setInputFiles('#image-set', FILES.slice(0, 1));
    await page.selectOption('#domain', DOMAIN);
    await page.waitForSelector('#score-button:not([disabled])');
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    assertMatchesNative(await pageResults(page), expected, 'one volume');
  });

  test('a chest X-ray DICOM suggests its domain, shown with the reason; a domain the user chose is kept', async () => {
    const fresh = await openPage(site);
    await loadModel(fresh, { device: 'cpu' });
    const xray = path.join(MEDICAL, 'cr_mono1_deflated.dcm');
    await fresh.check('input[name=mode][value=image]');
    await fresh.setInputFiles('#image-single', xray);
    await fresh.waitForFunction(() => document.getElementById('domain').value === 'chest-xray');
    assert.match(await fresh.textContent('#domain-source'), /from the file: DICOM Modality CR/);
    assert.equal(await fresh.inputValue('#object'), 'chest', "the domain's object comes with it");
    assert.equal(await fresh.textContent('#picked-list li'), 'DICOMcr_mono1_deflated.dcm1 image', 'badge, name, count');
    await fresh.selectOption('#domain', 'object');
    await fresh.setInputFiles('#image-single', []);
    await fresh.setInputFiles('#image-single', xray);
    await fresh.waitForFunction(() => /your choice is kept/.test(document.getElementById('domain-source').textContent));
    assert.equal(await fresh.inputValue('#domain'), 'object');
    await fresh.close();
  });
});

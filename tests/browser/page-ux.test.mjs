// The page as a first-time user meets it (issue #21), with the tiny model on the CPU: each bug
// that misled or stranded a user stays fixed (domain and object in step, the preset given back
// after single mode, a double Cancel, a failed load that keeps the working model, a drop that
// misses a zone, side by side for wide images, the model step's sizes and "convert first"),
// and the viewer, the colour scale and the exports do what they say.
//
//   node --test tests/browser/page-ux.test.mjs

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO, startSite, tempDir } from './harness.mjs';
import {
  IMAGES, TIMEOUT, assertMatchesNative, counter, expectError, loadModel, nativeReference, pageResults,
  scorePair, waitFor,
} from './page-driver.mjs';
import { png, pngSize } from './png.mjs';
import { tinyManifest } from './tiny-model.mjs';

const cargoVersion = () => /^version = "([^"]+)"/m.exec(readFileSync(path.join(REPO, 'Cargo.toml'), 'utf8'))[1];

/** Runs a download-producing click and returns the file's bytes. */
async function downloaded(page, selector) {
  const [download] = await Promise.all([page.waitForEvent('download'), page.click(selector)]);
  return { name: download.suggestedFilename(), bytes: readFileSync(await download.path()) };
}

describe('the page as a first-time user meets it (tiny model, CPU)', { concurrency: false }, () => {
  let site;
  let page;
  let native;
  const scratch = tempDir('duoclip-ux-');

  before(async () => {
    [native, site] = await Promise.all([nativeReference(), startSite()]);
    page = await site.context.newPage();
    await page.goto(site.url);
    await page.waitForFunction(() => window.__duoclip.registry && document.body.dataset.state === 'idle');
  });

  after(async () => {
    if (site?.consoleLines.length) console.log(`browser console:\n  ${site.consoleLines.join('\n  ')}`);
    await site?.close();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('the model step tells real sizes and blocks a model that needs converting, next to the button', async () => {
    const options = await page.$$eval('#model-select option', (os) => os.map((o) => [o.value, o.textContent]));
    const text = Object.fromEntries(options);
    assert.match(text['registry:openai-vit-b-16'], /598\.5 MB\)$/);
    assert.match(text['registry:openai-vit-l-14-336'], /about 1\.71 GB\)$/);
    assert.match(text['registry:vit-b-16-plus-240-laion400m-e32'], /convert first\)$/);
    await page.selectOption('#model-select', 'registry:vit-b-16-plus-240-laion400m-e32');
    assert.equal(await page.isDisabled('#load-button'), true, 'Load is refused for a model the browser cannot read');
    assert.match(await page.textContent('#load-why'), /must be converted/);
    const notes = await page.textContent('#model-notes');
    assert.match(notes, /command-line program/);
    assert.match(notes, /Local files/);
    assert.doesNotMatch(notes, /--\w/, 'no program options in the page');
    await page.selectOption('#model-select', 'models/tiny/');
    assert.equal(await page.isDisabled('#load-button'), false);
    assert.match(await page.textContent('#score-why'), /Load a model first/);
  });

  test('scores after a load; the loaded model, its sha256 and the test-model warning stay in view', async () => {
    await loadModel(page, { device: 'cpu' });
    const loaded = await page.textContent('#model-loaded');
    assert.match(loaded, new RegExp(`sha256 ${tinyManifest().weights.sha256}`));
    assert.match(loaded, /random weights/);
    assertMatchesNative(await scorePair(page), native, 'cpu');
    assert.equal(await page.isHidden('#results-notice'), false);
    assert.match(await page.textContent('#results-notice'), /mean nothing/);
    assert.match(await page.textContent('#scale-hint'), /Higher is more anomalous/);
  });

  test('a download can be stopped; the model loaded before stays in use', async () => {
    await page.evaluate(() => caches.delete('duoclip-models-v1')); // so that Load downloads
    let release;
    const held = new Promise((resolve) => { release = resolve; });
    await page.route('**/models/tiny/model.safetensors', async (route) => {
      await held; // the download hangs until Stop is pressed
      await route.continue();
    });
    try {
      await page.click('#load-button');
      await page.waitForSelector('#load-cancel:not([hidden])');
      assert.equal(await page.isDisabled('#score-button'), true);
      await page.click('#load-cancel');
      await page.waitForFunction(() => document.body.dataset.state === 'ready');
      assert.match(await page.textContent('#model-status'), /^Loading stopped\. tiny is still loaded\./);
      assert.equal(await page.isHidden('#load-cancel'), true);
    } finally {
      release();
      await page.unroute('**/models/tiny/model.safetensors');
    }
    assertMatchesNative(await scorePair(page), native, 'after a stopped load');
  });

  test('a changed model menu is marked "not loaded" and Score waits for a Load', async () => {
    await page.selectOption('#model-select', 'registry:openai-vit-b-16');
    assert.equal(await page.isHidden('#model-stale'), false);
    assert.equal(await page.isDisabled('#score-button'), true);
    assert.match(await page.textContent('#score-why'), /not loaded/);
    await page.selectOption('#model-select', 'models/tiny/');
    assert.equal(await page.isHidden('#model-stale'), true);
    assert.equal(await page.isDisabled('#score-button'), false);
  });

  test('a failed load keeps the model that worked', async () => {
    await page.selectOption('#model-select', 'local');
    await page.setInputFiles('#model-files', IMAGES[0]);
    const error = await expectError(page, '#load-button');
    assert.equal(error.code, 'bad_weights');
    // The browser's list of what it reads offers no PyTorch file (it reads none).
    assert.match(error.shown, /a PyTorch \.pt\/\.bin file must first be converted/, error.shown);
    assert.equal(error.state, 'ready', 'the tiny model is still loaded');
    assert.match(await page.textContent('#model-status'), /tiny is still loaded/);
    await page.selectOption('#model-select', 'models/tiny/');
    await page.selectOption('#device-select', 'cpu');
    assertMatchesNative(await scorePair(page), native, 'after a failed load');
  });

  test('the domain brings its own object: brain MRI scores as the CLI does with --domain brain-mri', async () => {
    await page.selectOption('#domain', 'brain-mri');
    assert.equal(await page.inputValue('#object'), 'brain');
    assert.equal(await page.isHidden('#medical-note'), false, 'the research-use statement is shown');
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    assertMatchesNative(await pageResults(page), await nativeReference(['--domain', 'brain-mri']), 'brain-mri');
    await page.selectOption('#domain', 'object');
    assert.equal(await page.inputValue('#object'), '', 'the MRI object does not stay for industrial parts');
    assert.equal(await page.isHidden('#medical-note'), true);
    await page.fill('#object', 'bottle');
  });

  test('single mode uses the text-only preset and gives the chosen one back', async () => {
    await page.click('details summary'); // the method options
    await page.selectOption('#preset', 'product');
    await page.check('input[name=mode][value=image]');
    assert.equal(await page.inputValue('#preset'), 'anovl');
    assert.match(await page.textContent('#preset-note'), /anovl \(text prompts only\) while single mode is on/);
    await page.check('input[name=mode][value=pair]');
    assert.equal(await page.inputValue('#preset'), 'product');
    await page.click('details summary');
  });

  test('a drop that misses the drop zones is taken, not opened by the browser', async () => {
    const url = page.url();
    const outcome = await page.evaluate(async () => {
      const before = await (await fetch('models/tiny/manifest.json')).text(); // any small file
      const transfer = new DataTransfer();
      transfer.items.add(new File([before], 'dropped.png', { type: 'image/png' }));
      const drop = new DragEvent('drop', { dataTransfer: transfer, bubbles: true, cancelable: true });
      document.querySelector('header').dispatchEvent(drop);
      await new Promise((r) => setTimeout(r, 100));
      return { prevented: drop.defaultPrevented, a: document.getElementById('image-a').files[0]?.name };
    });
    assert.equal(outcome.prevented, true, 'the browser would have navigated to the file');
    assert.equal(outcome.a, 'dropped.png', 'the image went to the first pair slot');
    assert.equal(page.url(), url);
    assert.equal(await page.evaluate(() => document.body.dataset.state), 'done');
  });

  test('a dropped folder is read to the end (readEntries answers in batches of 100), a paste fills a slot', async () => {
    const outcome = await page.evaluate(async () => {
      const { droppedFiles } = await import('./inputs.js');
      // A folder of 250 files and a subfolder, as Chromium's entries API hands it out.
      const file = (name) => ({ isFile: true, file: (ok) => ok(new File(['x'], name, { type: 'image/png' })) });
      const folder = (children) => ({
        isFile: false,
        createReader: () => {
          let at = 0;
          return { readEntries: (ok) => { ok(children.slice(at, at + 100)); at += 100; } };
        },
      });
      const inner = folder([file('inner-1.png'), file('inner-2.png')]);
      const top = folder([...Array.from({ length: 250 }, (_, i) => file(`f-${i}.png`)), inner]);
      const files = await droppedFiles({ items: [{ webkitGetAsEntry: () => top }], files: [] });
      document.getElementById('clear-images').click();
      for (const name of ['first.png', 'second.png']) {
        const transfer = new DataTransfer();
        transfer.items.add(new File([name], name, { type: 'image/png' }));
        document.querySelector('main').dispatchEvent(new ClipboardEvent('paste', { clipboardData: transfer, bubbles: true }));
      }
      const slot = (id) => document.getElementById(id).files[0]?.name;
      return { count: files.length, last: files.at(-1).name, a: slot('image-a'), b: slot('image-b') };
    });
    assert.deepEqual(outcome, { count: 252, last: 'inner-2.png', a: 'first.png', b: 'second.png' });
    assert.equal(await page.locator('#picked-list li').count(), 2, 'the chosen images are shown');
  });

  test('side by side: a wide image gets two half-width panes on one row, zoom is shared', async () => {
    const wide = path.join(scratch, 'wide.png');
    writeFileSync(wide, png(1200, 300, (x, y) => [x % 256, y % 256, (x + y) % 256]));
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.setInputFiles('#image-a', wide);
    await page.setInputFiles('#image-b', IMAGES[1]);
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    await page.click('#result-list button:has-text("wide.png")');
    await page.selectOption('#layout', 'two-up');
    const boxes = await page.evaluate(() => ['views-area', 'original-canvas', 'overlay-canvas']
      .map((id) => document.getElementById(id).getBoundingClientRect().toJSON()));
    const [area, left, right] = boxes;
    assert.equal(Math.round(left.top), Math.round(right.top), `one row: ${JSON.stringify(boxes)}`);
    assert.ok(Math.abs(left.width - right.width) < 1, 'equal panes');
    assert.ok(left.width > area.width * 0.45 && right.right <= area.right + 1, `half each: ${JSON.stringify(boxes)}`);
    const centre = (id) => page.evaluate((i) => {
      const c = document.getElementById(i);
      return [...c.getContext('2d').getImageData(c.width / 4, c.height / 2, 1, 1).data];
    }, id);
    const [before] = [await centre('original-canvas')];
    await page.focus('#views-area');
    await page.keyboard.press('+');
    await page.keyboard.press('+');
    assert.notDeepEqual(await centre('original-canvas'), before, 'zoom changed the left pane');
    await page.keyboard.press('0');
    assert.deepEqual(await centre('original-canvas'), before, 'Fit gives the first view back');
    await page.selectOption('#layout', 'overlay');
  });

  test('next/previous and the arrow keys follow the list, sorted by score', async () => {
    await page.check('input[name=mode][value=set]');
    const set = [0, 1, 2, 3].map((i) => {
      const file = path.join(scratch, `part-${i}.png`);
      writeFileSync(file, png(40, 40, (x, y) => [(x * (i + 1)) % 256, (y * 7 + i * 40) % 256, 90]));
      return file;
    });
    const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
    await page.setInputFiles('#image-set', set);
    await page.click('#score-button');
    await waitFor(page, 'scores', scores, errors, TIMEOUT);
    const results = await pageResults(page);
    const byScore = results.map((r, i) => [r.score, i]).sort((a, b) => b[0] - a[0]).map(([, i]) => i);
    const selected = () => page.evaluate(() => Number(document.body.dataset.selected));
    assert.equal(await selected(), byScore[0], 'the highest score is shown first');
    await page.focus('#views-area');
    for (const expected of byScore.slice(1)) {
      await page.keyboard.press('ArrowRight');
      await page.waitForFunction((e) => Number(document.body.dataset.selected) === e, expected);
    }
    assert.equal(await page.isDisabled('#next-result'), true, 'the last one has no next');
    await page.click('#prev-result');
    await page.waitForFunction((e) => Number(document.body.dataset.selected) === e, byScore.at(-2));
    const current = await page.getAttribute('#result-list [aria-current=true]', 'data-index');
    assert.equal(Number(current), byScore.at(-2), 'the list marks the shown image (aria-current)');
    assert.match(await page.getAttribute('#overlay-canvas', 'aria-label'), /image score 0\.\d{4}; highest map values near/);
  });

  test('a fixed colour scale (0 to 1) next to the per-run one', async () => {
    await page.selectOption('#scale', 'fixed');
    assert.deepEqual([await page.textContent('#legend-low'), await page.textContent('#legend-high')], ['0.000', '1.000']);
    await page.selectOption('#scale', 'custom');
    await page.fill('#scale-low', '0.2');
    await page.fill('#scale-high', '0.3');
    assert.deepEqual([await page.textContent('#legend-low'), await page.textContent('#legend-high')], ['0.200', '0.300']);
    await page.selectOption('#scale', 'run');
    const [lo, hi] = await page.evaluate(() => {
      const all = window.__duoclip.results.flatMap((r) => Array.from(r.map));
      return [Math.min(...all), Math.max(...all)];
    });
    assert.equal(await page.textContent('#legend-low'), lo.toFixed(3));
    assert.equal(await page.textContent('#legend-high'), hi.toFixed(3));
  });

  test('exports say what made them: JSON, CSV, PNG with its legend band, and all of it as a ZIP', async () => {
    const results = await pageResults(page);
    const sha = tinyManifest().weights.sha256;
    const json = JSON.parse((await downloaded(page, '#export-json')).bytes.toString('utf8'));
    assert.equal(json.version, cargoVersion());
    assert.ok(Math.abs(Date.parse(json.created) - Date.now()) < 120_000, json.created);
    assert.deepEqual(json.model, { name: 'tiny', sha256: sha });
    assert.equal(json.device, 'cpu');
    assert.equal(json.options.domain, 'object');
    assert.equal(json.colour_scale.mode, 'run');
    assert.equal(typeof json.threshold.value, 'number');
    assert.deepEqual(json.images.map((i) => [i.file, i.score]), results.map((r) => [r.name, r.score]));
    assert.deepEqual(json.images[0].map, results[0].map);

    const csv = (await downloaded(page, '#export-csv')).bytes.toString('utf8').trim().split('\r\n');
    assert.equal(csv[0], 'file,score,rank,map_min,map_max,width,height');
    assert.equal(csv.length, results.length + 1);
    const first = csv[1].split(',');
    assert.equal(first[0], results[0].name);
    assert.equal(Number(first[1]), results[0].score);
    assert.equal(Number(first[4]), Math.max(...results[0].map));

    const shown = await page.evaluate(() => Number(document.body.dataset.selected));
    const overlay = await downloaded(page, '#export-png');
    const [w, h] = pngSize(overlay.bytes);
    assert.equal(w, 480, 'a 40 px image is scaled up so that the band is legible');
    assert.ok(h > w, `the legend band is below the image: ${w}×${h}`);
    assert.match(overlay.name, new RegExp(`^${results[shown].name.replace('.png', '')}-overlay\\.png$`));

    const archive = await downloaded(page, '#export-all');
    const zipFile = path.join(scratch, 'all.zip');
    writeFileSync(zipFile, archive.bytes);
    const listing = JSON.parse(execFileSync('python3', ['-c', `
import json, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
assert z.testzip() is None
print(json.dumps({"names": z.namelist(), "scores": json.loads(z.read("scores.json"))["images"][0]["score"]}))`, zipFile]));
    assert.deepEqual(listing.names, ['scores.json', 'scores.csv', ...results.map((r) => `overlays/${r.name.replace('.png', '')}-overlay.png`)]);
    assert.equal(listing.scores, results[0].score);
  });

  test('errors speak of the page\'s fields, not of program options', async () => {
    await page.check('input[name=mode][value=pair]');
    await page.setInputFiles('#image-a', IMAGES[0]);
    await page.selectOption('#domain', 'custom');
    await page.fill('#domain-phrases', '');
    try {
      const empty = await expectError(page, '#score-button');
      assert.equal(empty.code, 'bad_option', JSON.stringify(empty));
      assert.match(empty.shown, /^A setting is not accepted: "Domain phrases" is empty/, empty.shown);
      // One the model refuses: nine phrases, one more than it takes.
      await page.fill('#domain-phrases', 'a, b, c, d, e, f, g, h, i');
      const refused = await expectError(page, '#score-button');
      assert.equal(refused.code, 'bad_option', JSON.stringify(refused));
      assert.doesNotMatch(refused.shown, /--[a-z]|domainPhrases/, refused.shown);
      assert.match(refused.shown, /9 phrases; it needs 1 to 8/, refused.shown);
    } finally {
      await page.selectOption('#domain', 'object');
      await page.fill('#object', 'bottle');
    }
  });

  test('a double Cancel leaves a loaded model and a usable page', async () => {
    await page.check('input[name=mode][value=set]');
    await page.setInputFiles('#image-set', Array.from({ length: 40 }, (_, i) => IMAGES[i % 2]));
    const errors = await counter(page, 'errors');
    await page.click('#score-button');
    await page.waitForFunction(() => document.body.dataset.state === 'scoring');
    await page.evaluate(() => {
      const cancel = document.getElementById('cancel-button');
      cancel.click();
      cancel.click();
    });
    await page.waitForFunction(() => document.body.dataset.state === 'ready', null, { timeout: TIMEOUT });
    assert.equal(await counter(page, 'errors'), errors, 'a Cancel is not an error');
    assert.match(await page.textContent('#score-status'), /^Cancelled; the model is loaded again/);
    assert.equal(await page.isDisabled('#score-button'), false);
    await page.check('input[name=mode][value=pair]');
    assertMatchesNative(await scorePair(page), native, 'after a double Cancel');
  });
});

// The page for people who use a keyboard, a screen reader or a phone (issue #21): an axe-core
// audit of every state (empty, model loaded, results, a volume's slice scroller, error) in light and dark mode with no
// serious or critical violation; a keyboard-only run from model choice to export; and at
// 390 px (an iPhone's width) no horizontal scroll, 16 px control text and 44 px targets.
//
//   node --test tests/browser/accessibility.test.mjs

import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';

import { REPO, startSite } from './harness.mjs';
import { IMAGES, TIMEOUT, counter, expectError, loadModel, scorePair, waitFor } from './page-driver.mjs';

const axeSource = createRequire(import.meta.url)('axe-core').source;
const MEDICAL = ['ct_oblique.nii.gz', 'cr_mono1_deflated.dcm'].map((f) => path.join(REPO, 'tests', 'fixtures', 'medical', f));

/** axe-core's serious and critical violations of the page as it is now (WCAG 2.x A and AA). */
async function audit(page) {
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa', 'best-practice'] },
    });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(' ')) }));
  });
  return violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
}

/** Every control a user can see and touch: its text size and target size. */
const controls = (page) => page.evaluate(() => [...document.querySelectorAll('button, select, input, fieldset label, summary')]
  .filter((el) => el.getClientRects().length && getComputedStyle(el).visibility !== 'hidden')
  .map((el) => {
    const rect = (el.type === 'radio' || el.type === 'checkbox' ? el.closest('label') : el).getBoundingClientRect();
    return { id: el.id || el.textContent.trim().slice(0, 30), type: el.type ?? el.tagName, font: parseFloat(getComputedStyle(el).fontSize), w: rect.width, h: rect.height };
  }));

describe('accessibility and the phone', { concurrency: false }, () => {
  let site;

  before(async () => {
    site = await startSite();
  });

  after(async () => {
    if (site?.consoleLines.length) console.log(`browser console:\n  ${site.consoleLines.join('\n  ')}`);
    await site?.close();
  });

  for (const colorScheme of ['light', 'dark']) {
    test(`axe-core: no serious or critical violation in any state (${colorScheme})`, async () => {
      const page = await site.context.newPage();
      await page.emulateMedia({ colorScheme });
      await page.goto(site.url);
      await page.waitForFunction(() => window.__duoclip.registry && document.body.dataset.state === 'idle');
      const found = { empty: await audit(page) };
      await page.selectOption('#model-select', 'local');
      await page.setInputFiles('#model-files', IMAGES[0]);
      await expectError(page, '#load-button');
      found.error = await audit(page);
      await page.selectOption('#model-select', 'models/tiny/');
      await loadModel(page, { device: 'cpu' });
      found.loaded = await audit(page);
      await page.check('input[name=mode][value=set]');
      const [scores, errors] = [await counter(page, 'scores'), await counter(page, 'errors')];
      await page.setInputFiles('#image-set', IMAGES);
      await page.setInputFiles('#references', IMAGES); // verdict badges and the rule in words
      await page.check('#verdicts');
      await page.click('#score-button');
      await waitFor(page, 'scores', scores, errors, TIMEOUT);
      await page.selectOption('#layout', 'two-up');
      assert.equal(await page.locator('#result-list .verdict').count(), 2);
      found.results = await audit(page);
      await page.uncheck('#verdicts');
      await page.setInputFiles('#references', []);
      // A volume and a DICOM file: the picked list's format badges, the domain's reason, the
      // slice scroller and strip chart.
      const [volumeScores, volumeErrors] = [await counter(page, 'scores'), await counter(page, 'errors')];
      await page.setInputFiles('#image-set', MEDICAL);
      await page.waitForFunction(() => document.getElementById('picked-list').textContent.includes('slices'));
      await page.click('#score-button');
      await waitFor(page, 'scores', volumeScores, volumeErrors, TIMEOUT);
      await page.click('#result-list button[data-index="0"]'); // the volume's first slice
      await page.waitForSelector('#slices:not([hidden])');
      found.volume = await audit(page);
      await page.close();
      for (const [state, violations] of Object.entries(found)) {
        assert.deepEqual(violations, [], `${state} (${colorScheme}): ${JSON.stringify(violations, null, 1)}`);
      }
    });
  }

  test('keyboard only: choose the model, load, pick images, score, browse and export', async () => {
    const page = await site.context.newPage();
    await page.goto(site.url);
    await page.waitForFunction(() => window.__duoclip.registry && document.body.dataset.state === 'idle');
    const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.name || '');
    /** Tab (forwards) until the element `id` has the focus; a page that traps focus fails. */
    const tabTo = async (id) => {
      for (let i = 0; i < 80; i++) {
        if ((await focused()) === id) return;
        await page.keyboard.press('Tab');
      }
      assert.fail(`Tab never reached #${id}`);
    };
    await tabTo('model-select');
    await page.keyboard.press('Home'); // the first entry: the test model
    assert.equal(await page.inputValue('#model-select'), 'models/tiny/');
    await tabTo('device-select');
    await page.keyboard.press('End'); // CPU
    assert.equal(await page.inputValue('#device-select'), 'cpu');
    const loads = await counter(page, 'loads');
    await tabTo('load-button');
    await page.keyboard.press('Enter');
    await waitFor(page, 'loads', loads, 0, TIMEOUT);
    for (const [id, file] of [['image-a', IMAGES[0]], ['image-b', IMAGES[1]]]) {
      await tabTo(id);
      const [chooser] = await Promise.all([page.waitForEvent('filechooser'), page.keyboard.press('Space')]);
      await chooser.setFiles(file);
    }
    const scores = await counter(page, 'scores');
    await tabTo('score-button');
    await page.keyboard.press('Enter');
    await waitFor(page, 'scores', scores, 0, TIMEOUT);
    const first = await page.evaluate(() => document.body.dataset.selected);
    await tabTo('views-area');
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction((f) => document.body.dataset.selected !== f, first);
    await tabTo('export-json');
    const [download] = await Promise.all([page.waitForEvent('download'), page.keyboard.press('Enter')]);
    assert.equal(download.suggestedFilename(), 'duoclip-scores.json');
    await page.close();
  });

  test('at 390 px: no horizontal scroll, 16 px control text, 44 px targets', async () => {
    const page = await site.context.newPage();
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(site.url);
    await page.waitForFunction(() => window.__duoclip.registry && document.body.dataset.state === 'idle');
    await loadModel(page, { device: 'cpu' });
    await scorePair(page);
    for (const layout of ['overlay', 'two-up']) {
      await page.selectOption('#layout', layout);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `${layout}: the page is ${width} px wide at a 390 px viewport`);
    }
    const small = (await controls(page)).filter((c) => c.font < 16 || c.h < 44 || c.w < 44);
    assert.deepEqual(small, [], `controls under 16 px text or 44×44 px: ${JSON.stringify(small)}`);
    await page.close();
  });
});

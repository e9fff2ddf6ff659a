// A copy of the site that a test may change without touching www/: every entry of www/ linked
// (no gigabytes copied), plus api.html, a page of its own that only publishes the module API
// (window.duoclip), so that the API's tests do not depend on the demo page's markup.

import { copyFileSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { REPO, WWW, tempDir } from './harness.mjs';

const API_PAGE = `<!doctype html>
<meta charset="utf-8">
<title>duoclip API under test</title>
<link rel="icon" href="data:,">
<script type="module">
  import * as duoclip from './duoclip.js';
  window.duoclip = duoclip;
</script>
`;

/** The fixture images, served under fixtures/. */
export const FIXTURES = path.join(REPO, 'tests', 'fixtures', 'openclip_tiny');

/**
 * Links www/'s entries into a fresh folder, except `omit` (names); `buildId` rewrites
 * build-id.js's id (a rebuild, as far as the service worker can tell). Returns the folder and
 * helpers to restore an omitted entry and remove the copy.
 */
export function siteCopy({ omit = [], buildId } = {}) {
  const root = tempDir('duoclip-site-');
  for (const name of readdirSync(WWW)) {
    if (!omit.includes(name)) symlinkSync(path.join(WWW, name), path.join(root, name));
  }
  symlinkSync(FIXTURES, path.join(root, 'fixtures'));
  writeFileSync(path.join(root, 'api.html'), API_PAGE);
  const copy = {
    root,
    /** Gives the copy another build id, as a rebuild would (the file lists stay). */
    setBuildId(id) {
      const file = path.join(root, 'build-id.js');
      const text = readFileSync(path.join(WWW, 'build-id.js'), 'utf8');
      rmSync(file, { force: true });
      writeFileSync(file, text.replace(/DUOCLIP_BUILD = '[^']*'/, `DUOCLIP_BUILD = '${id}'`));
    },
    restore(name) {
      copyFileSync(path.join(WWW, name), path.join(root, name));
    },
    remove() {
      rmSync(root, { recursive: true, force: true });
    },
  };
  if (buildId) copy.setBuildId(buildId);
  return copy;
}

/**
 * Opens the copy's api.html; `detectors` lists the detector workers it starts (worker.js, which
 * duoclip.js marks; not a threaded build's pool workers), each with `closed` once it ended.
 */
export async function openApiPage(site) {
  const page = await site.context.newPage();
  const detectors = [];
  page.on('worker', (w) => {
    if (!w.url().endsWith('#duoclip-detector')) return;
    const entry = { closed: false };
    w.on('close', () => { entry.closed = true; });
    detectors.push(entry);
  });
  await page.goto(new URL('api.html', site.url).href);
  await page.waitForFunction(() => window.duoclip);
  return { page, detectors };
}

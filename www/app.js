// The page: wires the model step, the image inputs and the results view to duoclip.js.
// Everything heavy happens in the worker; this file gathers inputs and reports progress.
//
// For tests and scripts the page publishes its state in window.__duoclip and on <body>:
// data-state (starting|idle|loading|ready|scoring|done), data-loads, data-scores, data-errors
// (counters that only grow), data-finished (images of the current run whose result is in),
// data-device.

import { version } from './duoclip.js';
import { FileFacts } from './file-facts.js';
import { chosenImages, missingImages, mode, wireInputs } from './inputs.js';
import { ModelStep } from './model-step.js';
import { ResultsView } from './results-view.js';

const $ = (id) => document.getElementById(id);
const hook = (window.__duoclip = {
  state: 'starting', loads: 0, scores: 0, errors: 0, error: null, device: null,
  deviceNote: null, results: [], registry: null, timings: {}, finished: 0,
});
/** The run in progress (scoreImages' promise), so that Cancel can report what it kept. */
let scoring = null;
let cancelling = null;
const view = new ResultsView();
const model = new ModelStep({
  onLoaded: (detector, ms) => {
    hook.timings.modelLoadMs = ms;
    showDevice(detector);
    if (!detector.hasTextTower) {
      // Without a text tower only the bundle's precomputed prompts can be used.
      $('model-notes').textContent = 'This bundle has no text tower; it has prompts for: ' +
        (detector.anchorSets.map((a) => `${a.domain} / ${a.object}`).join(', ') || 'nothing') + '.';
    }
    count('loads');
    facts.refresh();
  },
  onState: (busy) => setState(busy ? 'loading' : model.detector ? 'ready' : 'idle'),
  onError: showError,
  announce: (text) => { $('model-status').textContent = text; },
});

const facts = new FileFacts({
  detector: () => model.detector, onError: showError, onDomain: () => syncObject(),
  onFacts: () => {
    syncPreset();
    updateScoreButton();
  },
});

function setState(state) {
  hook.state = state;
  document.body.dataset.state = state;
  // No new model while a run or a Cancel's reload holds the current one.
  model.busy = state === 'scoring' || (state === 'loading' && !model.loading);
  model.refresh();
  updateScoreButton();
}

const missing = () => missingImages((f) => facts.images(f));

/** Score is enabled when it can run; otherwise the reason is written next to it. */
function updateScoreButton() {
  const busy = ['loading', 'scoring', 'starting'].includes(hook.state);
  const why = hook.state === 'scoring' ? 'Scoring is running.'
    : hook.state === 'loading' ? 'Wait for the model to load.'
      : !model.detector ? 'Load a model first (step 1).'
        : model.isStale() ? 'The model chosen in step 1 is not loaded: click Load model, or choose the loaded one again.'
          : $('verdicts').checked && !$('references').files.length
            ? 'Verdicts need known-good references: pick them, or clear "Verdicts".'
          : missing() ? `${missing().replace(/^./, (c) => c.toUpperCase())}.` : '';
  $('score-button').disabled = busy || Boolean(why);
  $('score-why').textContent = why;
  $('cancel-button').disabled = hook.state !== 'scoring' || Boolean(cancelling);
}

function count(name) {
  hook[name] += 1;
  document.body.dataset[name] = String(hook[name]);
}

// The page's own words for each error code; option names in the model's messages are written
// as the page's field labels, not as program options.
const EXPLAIN = {
  bad_image: 'This file cannot be read (duoclip reads PNG, JPEG, TIFF, WebP, BMP, DICOM and NIfTI)',
  bad_weights: 'These model files cannot be used',
  bad_option: 'A setting is not accepted',
  no_text_tower: 'This model has no text tower and no precomputed prompts for this domain and object',
  device: 'The graphics device failed',
  out_of_memory: 'Out of memory',
  network: 'A download failed',
  integrity: 'A downloaded file is not the published one',
  not_in_browser: 'This model needs converting first',
  cancelled: 'Cancelled',
};
const FIELD_LABELS = {
  domainPhrases: 'Domain phrases', object: 'Object', domain: 'Domain', preset: 'Preset',
  views: 'Views', tta: 'Test-time adaptation', seed: 'Seed', references: 'Known-good references',
  window: 'Window',
};

/** "option domain: … domainPhrases …" → '"Domain": … "Domain phrases" …'. */
function pageWords(message) {
  const label = (key) => (FIELD_LABELS[key] ? `"${FIELD_LABELS[key]}"` : key);
  return message
    .replace(/^option (\w+):/, (_, key) => `${label(key)}:`)
    .replace(/`(\w+)`|\b([a-z]+[A-Z]\w*)\b/g, (whole, quoted, camel) => label(quoted ?? camel));
}

function showError(e) {
  const code = e?.code ?? 'internal';
  hook.error = { code, message: String(e?.message ?? e) };
  count('errors');
  const box = $('error');
  box.textContent = `${EXPLAIN[code] ?? 'Something went wrong'}: ${pageWords(hook.error.message)}`;
  box.hidden = false;
  // Next to what failed: a model error under the Load button, anything else where it is.
  (hook.state === 'loading' ? $('model-section') : $('images-section')).after(box);
}

function clearError() {
  $('error').hidden = true;
}

function showDevice(detector) {
  Object.assign(hook, {
    device: detector.device, deviceNote: detector.deviceNote, precision: detector.precision,
    wasmMemoryBytes: detector.wasmMemoryBytes, wasmHeapInUseBytes: detector.wasmHeapInUseBytes,
    wasmBuild: detector.wasmBuild, wasmThreads: detector.wasmThreads,
  });
  document.body.dataset.device = detector.device;
  const badge = $('device-badge');
  badge.hidden = false;
  const threads = detector.wasmThreads > 1 ? `, ${detector.wasmThreads} threads` : '';
  badge.textContent = `Running on ${detector.device === 'webgpu' ? `WebGPU (${detector.precision})` : `the CPU (wasm${threads})`}` +
    (detector.deviceNote ? ` — ${detector.deviceNote}` : '');
}

// ---------------------------------------------------------------- options

/** The domain's own object (data-object) replaces the field's value when the domain changes. */
function syncObject() {
  const option = $('domain').selectedOptions[0];
  const own = option.dataset.object;
  const object = $('object');
  if (own) object.value = own;
  else if (Object.values(domainObjects()).includes(object.value)) object.value = '';
  object.placeholder = own ? `default: ${own}` : 'e.g. metal_nut';
  $('custom-domain').hidden = $('domain').value !== 'custom';
  $('medical-note').hidden = !('medical' in option.dataset);
}

const domainObjects = () => Object.fromEntries([...$('domain').options]
  .filter((o) => o.dataset.object).map((o) => [o.value, o.dataset.object]));

/**
 * Single mode has no partner image: unless known-good references are given, the text-only
 * preset is the one that works there. The user's preset comes back when they leave it.
 */
let presetBeforeSingle = null;
function syncPreset() {
  // A volume's slices (a file's frames) are each other's references: not alone.
  const single = mode() === 'image' && !$('references').files.length &&
    !($('image-single').files[0] && facts.images($('image-single').files[0]) > 1);
  const preset = $('preset');
  if (single && presetBeforeSingle === null) {
    presetBeforeSingle = preset.value;
    preset.value = 'anovl';
  } else if (!single && presetBeforeSingle !== null) {
    preset.value = presetBeforeSingle;
    presetBeforeSingle = null;
  }
  const note = $('preset-note');
  note.hidden = !single;
  note.textContent = 'One image without references has nothing to compare with: the preset is ' +
    'anovl (text prompts only) while single mode is on.';
}

function scoreOptions() {
  const domain = $('domain').value;
  const opts = {
    preset: $('preset').value,
    domain,
    views: Number($('views').value),
    tta: $('tta').value,
    seed: Number($('seed').value),
    window: $('window').value,
  };
  const object = $('object').value.trim();
  if (object) opts.object = object;
  if (domain === 'custom') {
    opts.domainPhrases = $('domain-phrases').value.split(',').map((p) => p.trim()).filter(Boolean);
    if (!opts.domainPhrases.length) {
      throw Object.assign(new Error('"Domain phrases" is empty: say what kind of images these are, e.g. ' +
        '"ultrasound image, sonogram"'), { code: 'bad_option' });
    }
  }
  const refs = [...$('references').files];
  if (refs.length) opts.references = refs;
  return opts;
}

// ---------------------------------------------------------------- scoring

function setFinished(n) {
  hook.finished = n;
  document.body.dataset.finished = String(n);
}

function scoreProgress({ stage, done, total }) {
  const bar = $('score-progress');
  bar.hidden = false;
  if (stage === 'prompts') {
    // Once per model and object: afterwards the anchors come from this browser's cache.
    $('score-status').textContent = 'Embedding the prompts for this domain and object (once; then kept in this browser)…';
    bar.removeAttribute('value');
    bar.setAttribute('aria-valuetext', 'embedding the prompts');
    return;
  }
  if ($('score-status').textContent.startsWith('Embedding')) $('score-status').textContent = 'Scoring…';
  bar.max = total || 1;
  bar.value = done;
  bar.setAttribute('aria-valuetext', `${done} of ${total} images`);
}

/** Scores the chosen images; after a Cancel, resolves to a note on the results it kept. */
async function scoreImages() {
  clearError();
  setState('scoring');
  setFinished(0);
  $('score-status').textContent = 'Scoring…';
  const started = performance.now();
  const detector = model.detector;
  let files = [];
  let opts = {};
  try {
    files = chosenImages((f) => facts.images(f));
    opts = scoreOptions();
    opts.onProgress = scoreProgress;
    if ($('verdicts').checked) opts.calibration = await calibrate(detector, opts);
    const finished = new Set(); // a WebGPU failure's rerun on the CPU sends results again
    opts.onResult = ({ index }) => setFinished(finished.add(index).size);
    const m = mode();
    const results = m === 'pair' ? await detector.scorePair(files[0], files[1], opts)
      : m === 'set' ? await detector.scoreSet(files, opts)
        : await detector.scoreImage(files[0], opts);
    const elapsed = performance.now() - started;
    hook.timings.lastScoreMs = elapsed;
    hook.timings.firstScoreMs ??= elapsed;
    const shown = await showResults(results.map((r) => named(r, files)), opts);
    $('score-status').textContent = `Scored ${shown} image(s) in ${(elapsed / 1000).toFixed(1)} s` +
      (detector.fallbackNote ? ` — ${detector.fallbackNote}` : '.');
    count('scores');
    setState('done');
    return '';
  } catch (e) {
    $('score-status').textContent = '';
    // What finished before the failure or the Cancel (e.g. the first images of a set too large
    // for the memory) is kept and shown: hours of work are not thrown away with the last image.
    const kept = (e?.partial ?? []).map((r) => named(r, files));
    let note = '';
    if (kept.length) {
      await showResults(kept, opts);
      const done = new Set(kept.map((r) => r.fileIndex));
      const missed = files.filter((_, i) => !done.has(i)).map((f) => f.name);
      // Counted in files where a file holds several images (a volume's slices).
      const several = kept.length !== done.size || files.some((f) => facts.images(f) > 1);
      note = `${several ? `${kept.length} image(s) from ${done.size} of ${files.length} files`
        : `${kept.length} of ${files.length} images`} were scored before this; their results are ` +
        `shown below (not scored: ${missed.slice(0, 3).join(', ')}` +
        `${missed.length > 3 ? ` and ${missed.length - 3} more` : ''})`;
    }
    // A Cancel reports itself (cancel() restarts the worker and owns the state meanwhile).
    if (e?.code === 'cancelled') return note;
    if (note) e.message = `${e.message.replace(/\.$/, '')}. ${note}`;
    showError(e);
    setState(model.detector ? 'ready' : 'idle');
    return '';
  } finally {
    $('score-progress').hidden = true;
  }
}

/**
 * A result with its file and name: the file's name, with the image's label for a file of
 * several images ("scan.nii.gz#k=12"); a DICOM image by its label alone (series, instance,
 * frame), since a DICOM file's name may carry the patient's.
 */
function named({ file, ...r }, files) {
  const name = r.private ? r.label : r.label ? `${files[file].name}#${r.label}` : files[file].name;
  return { ...r, name, file: files[file], fileIndex: file };
}

/** Thresholds for verdicts: the known-good references scored against each other. */
async function calibrate(detector, opts) {
  const { references, ...setting } = opts;
  if (!references?.length) {
    throw Object.assign(new Error('verdicts need known-good references: pick them, or clear "Verdicts"'),
      { code: 'bad_option' });
  }
  $('score-status').textContent = `Calibrating on ${references.length} known-good image(s)…`;
  const thresholds = await detector.calibrate(references, setting);
  $('score-status').textContent = 'Scoring…';
  return thresholds;
}

/** Shows results (each with its name and file) in the view and in window.__duoclip. */
async function showResults(results, opts) {
  const detector = model.detector;
  const { onProgress, onResult, references, calibration, ...shown } = opts;
  const testModel = Boolean(detector.manifest?.test_model);
  await view.show(results.map(({ index, ...r }) => r), {
    version: hook.version,
    model: { name: model.loaded.name, sha256: model.loaded.sha256 },
    device: detector.device,
    precision: detector.precision,
    options: { ...shown, references: (references ?? []).map((f) => f.name) },
    calibration: calibration ?? null,
    modelLine: `Scored with ${model.loaded.name} (weights sha256 ${model.loaded.sha256 ?? 'unknown'}) on ` +
      `${detector.device === 'webgpu' ? 'WebGPU' : 'the CPU'}, domain ${shown.domain}` +
      `${shown.object ? `, object ${shown.object}` : ''}, preset ${shown.preset}.`,
    notice: testModel ? 'These maps come from the test model, whose weights are random: they mean nothing. ' +
      'Load a real model in step 1 to find anomalies.' : null,
  });
  hook.results = results.map(({ name, score, width, height, map, label, fileIndex, stack, slice, verdict, margin, regions }) =>
    ({ name, score, width, height, map, label, fileIndex, stack, slice, verdict, margin, regions }));
  hook.calibration = calibration ?? null;
  showDevice(detector);
  return results.length;
}

/** Stops the run; a second press while the first one restarts the worker does nothing more. */
async function cancel() {
  if (!model.detector || cancelling || hook.state !== 'scoring') return;
  $('score-status').textContent = 'Cancelling: restarting the worker and reloading the model…';
  cancelling = model.detector.cancel();
  setState('loading');
  try {
    await cancelling;
    const kept = await scoring;
    $('score-status').textContent = `Cancelled; the model is loaded again.${kept ? ` ${kept}.` : ''}`;
    setState('ready');
  } catch (e) {
    showError(e);
    model.forget();
    setState('idle');
  } finally {
    cancelling = null;
    updateScoreButton();
  }
}

// ---------------------------------------------------------------- wiring

function wire() {
  $('score-button').addEventListener('click', () => { scoring = scoreImages(); });
  $('cancel-button').addEventListener('click', cancel);
  $('domain').addEventListener('change', syncObject);
  for (const id of ['model-select', 'device-select', 'model-files']) {
    $(id).addEventListener('change', updateScoreButton);
  }
  for (const radio of document.querySelectorAll('input[name=mode]')) {
    radio.addEventListener('change', () => {
      $('pair-inputs').hidden = mode() !== 'pair';
      $('set-inputs').hidden = mode() !== 'set';
      $('single-inputs').hidden = mode() !== 'image';
      syncPreset();
    });
  }
  $('references').addEventListener('change', syncPreset);
  $('verdicts').addEventListener('change', updateScoreButton);
  $('window').addEventListener('change', () => facts.refresh());
  wireInputs((note) => {
    updateScoreButton();
    facts.refresh();
    if (note) $('score-status').textContent = note;
  });
}

async function start() {
  try {
    hook.registry = await model.fillRegistry();
    hook.version = await version();
  } catch (e) {
    showError(e);
  }
  model.describe();
}

wire();
syncObject();
model.describe();
setState('idle');
hook.timings.pageReadyMs = performance.now();
start();
if ('serviceWorker' in navigator) {
  // Offline use after the first visit; a failure here only costs that. The worker script and
  // what it imports (build-id.js) are always asked of the server, not of the HTTP cache: a
  // host's max-age must not hold back a rebuilt site.
  navigator.serviceWorker.register('sw.js', { updateViaCache: 'none' })
    .then(() => navigator.serviceWorker.ready)
    .then(isolateByReloading)
    .catch(() => {});
}

/**
 * On a host that sends no isolation headers the service worker adds them (sw.js), which counts
 * from the next load: the page reloads once for it — only while nothing has been started (no
 * model, no image), so nothing of the user's is lost — and not again if the browser still
 * refuses isolation (then the one-thread builds serve).
 */
function isolateByReloading() {
  const key = 'duoclip-isolation-reload';
  if (self.crossOriginIsolated) return;
  if (sessionStorage.getItem(key)) return;
  const picked = [...document.querySelectorAll('input[type=file]')].some((input) => input.files.length > 0);
  const untouched = document.body.dataset.state === 'idle' && !model.detector && !picked;
  if (!untouched) return;
  sessionStorage.setItem(key, '1');
  location.reload();
}

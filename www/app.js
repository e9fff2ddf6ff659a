// The page: wires the form to duoclip.js and the results view. Everything heavy happens in the
// worker; this file only gathers inputs and reports progress.
//
// For tests and scripts the page publishes its state in window.__duoclip and on <body>:
// data-state (starting|idle|loading|ready|scoring|done), data-loads, data-scores, data-errors
// (counters that only grow), data-finished (images of the current run whose result is in),
// data-device.

import { Detector, DuoclipError, registry } from './duoclip.js';
import { ResultsView } from './results-view.js';

const $ = (id) => document.getElementById(id);
const hook = (window.__duoclip = {
  state: 'starting', loads: 0, scores: 0, errors: 0, error: null, device: null,
  deviceNote: null, results: [], registry: null, timings: {}, finished: 0,
});
let detector = null;
/** The run in progress (scoreImages' promise), so that Cancel can report what it kept. */
let scoring = null;
const view = new ResultsView();

function setState(state) {
  hook.state = state;
  document.body.dataset.state = state;
  const busy = state === 'loading' || state === 'scoring' || state === 'starting';
  $('load-button').disabled = busy;
  $('score-button').disabled = busy || !detector;
  $('cancel-button').disabled = !busy || !detector;
}

function count(name) {
  hook[name] += 1;
  document.body.dataset[name] = String(hook[name]);
}

function showError(e) {
  const code = e?.code ?? 'internal';
  hook.error = { code, message: String(e?.message ?? e) };
  count('errors');
  const box = $('error');
  box.textContent = `${explain(code)}: ${hook.error.message}`;
  box.hidden = false;
}

function explain(code) {
  return {
    bad_image: 'This file is not an image duoclip can read (PNG or JPEG)',
    bad_weights: 'These model files cannot be used',
    bad_option: 'An option is not accepted',
    no_text_tower: 'This model has no text tower and no precomputed prompts for this domain/object',
    device: 'The graphics device failed',
    out_of_memory: 'Out of memory',
    network: 'A download failed',
    integrity: 'A downloaded file is not the published one',
    not_in_browser: 'This model needs converting first',
    cancelled: 'Cancelled',
  }[code] ?? 'Something went wrong';
}

function clearError() {
  $('error').hidden = true;
}

const mb = (n) => `${(n / 1e6).toFixed(1)} MB`;

function progressReporter(bar, status) {
  return ({ stage, file, done, total, cached }) => {
    bar.hidden = false;
    bar.max = total || 1;
    bar.value = done;
    if (stage === 'download') {
      status.textContent = cached
        ? `${file}: read from the browser's cache`
        : `Downloading ${file}: ${mb(done)}${total ? ` of ${mb(total)}` : ''}`;
    } else if (stage === 'verify') {
      status.textContent = `Checking ${file} (sha256)…`;
    } else if (stage === 'init') {
      status.textContent = done < total
        ? 'Preparing the model (on WebGPU the first run compiles shaders; this can take a while)…'
        : 'Model ready.';
    } else if (stage === 'score') {
      status.textContent = `Scoring: ${done} of ${total}`;
    }
  };
}

// ---------------------------------------------------------------- model

async function fillRegistry() {
  try {
    hook.registry = await registry();
  } catch (e) {
    showError(e);
    return;
  }
  const select = $('model-select');
  const local = select.querySelector('option[value=local]');
  for (const entry of hook.registry) {
    const option = document.createElement('option');
    option.value = `registry:${entry.name}`;
    option.textContent = `${entry.name} (${entry.arch}${entry.browser ? '' : ', convert first'})`;
    select.insertBefore(option, local);
  }
}

function describeChoice() {
  const value = $('model-select').value;
  $('local-model').hidden = value !== 'local';
  const notes = $('model-notes');
  if (value.startsWith('registry:')) {
    const entry = hook.registry.find((e) => `registry:${e.name}` === value);
    const size = entry.files.reduce((n, f) => n + (f.bytes ?? 0), 0);
    notes.textContent = entry.browser
      ? `${entry.arch}, ${entry.imageSize} px, ${mb(size)} download (once; then cached), licence ${entry.license}.`
      : `${entry.arch}: the published file is not loadable in a browser. Convert it once with ` +
        `"duoclip convert --model ${entry.name} --fp16 --out DIR", then choose "Local files" and ` +
        "pick the bundle's manifest.json, model.safetensors and anchors.safetensors.";
  } else if (value === 'local') {
    notes.textContent = 'Files you pick are read locally; nothing is uploaded.';
  } else {
    notes.textContent = 'A tiny model with random weights, for trying the page: its maps are meaningless.';
  }
}

function chosenModel() {
  const value = $('model-select').value;
  if (value === 'local') {
    const files = [...$('model-files').files];
    if (!files.length) throw new DuoclipError('bad_option', 'pick a weights file or a bundle\'s files first');
    return files;
  }
  return value.startsWith('registry:') ? value.slice('registry:'.length) : value;
}

async function loadModel() {
  clearError();
  detector?.dispose();
  detector = null;
  hook.device = null;
  setState('loading');
  const started = performance.now();
  try {
    detector = await Detector.load({
      model: chosenModel(),
      device: $('device-select').value,
      onProgress: progressReporter($('model-progress'), $('model-status')),
    });
    hook.timings.modelLoadMs = performance.now() - started;
    showDevice();
    $('model-status').textContent = `Loaded ${detector.modelLabel} on ${detector.device} ` +
      `in ${(hook.timings.modelLoadMs / 1000).toFixed(1)} s.` +
      (detector.manifest?.test_model ? ' Test model: random weights, maps are meaningless.' : '');
    if (!detector.hasTextTower) {
      // Without a text tower only the bundle's precomputed prompts can be used.
      $('model-notes').textContent = 'This bundle has no text tower; it has prompts for: ' +
        (detector.anchorSets.map((a) => `${a.domain} / ${a.object}`).join(', ') || 'nothing') + '.';
    }
    count('loads');
    setState('ready');
  } catch (e) {
    $('model-status').textContent = 'No model loaded.';
    showError(e);
    setState('idle');
  }
}

function showDevice() {
  hook.device = detector.device;
  hook.deviceNote = detector.deviceNote;
  hook.precision = detector.precision;
  hook.wasmMemoryBytes = detector.wasmMemoryBytes;
  hook.wasmHeapInUseBytes = detector.wasmHeapInUseBytes;
  hook.wasmBuild = detector.wasmBuild;
  hook.wasmThreads = detector.wasmThreads;
  document.body.dataset.device = detector.device;
  const badge = $('device-badge');
  badge.hidden = false;
  const threads = detector.wasmThreads > 1 ? `, ${detector.wasmThreads} threads` : '';
  badge.textContent = `Running on ${detector.device === 'webgpu' ? `WebGPU (${detector.precision})` : `the CPU (wasm${threads})`}` +
    (detector.deviceNote ? ` — ${detector.deviceNote}` : '');
}

// ---------------------------------------------------------------- images

const mode = () => document.querySelector('input[name=mode]:checked').value;
const isImageFile = (f) => /^image\/(png|jpeg)$/.test(f.type) || /\.(png|jpe?g)$/i.test(f.name);

function chosenImages() {
  const m = mode();
  if (m === 'pair') {
    const files = [$('image-a').files[0], $('image-b').files[0]];
    if (!files[0] || !files[1]) throw new DuoclipError('bad_option', 'pick image A and image B');
    return files;
  }
  if (m === 'image') {
    const file = $('image-single').files[0];
    if (!file) throw new DuoclipError('bad_option', 'pick an image');
    return [file];
  }
  const picked = [...$('image-set').files, ...[...$('image-folder').files].filter(isImageFile)];
  if (picked.length < 2) throw new DuoclipError('bad_option', 'a set needs at least 2 images');
  return picked;
}

function scoreOptions() {
  const domain = $('domain').value;
  const opts = {
    preset: $('preset').value,
    domain,
    views: Number($('views').value),
    tta: $('tta').value,
    seed: Number($('seed').value),
  };
  const object = $('object').value.trim();
  if (object) opts.object = object;
  if (domain === 'custom') {
    opts.domainPhrases = $('domain-phrases').value.split(',').map((p) => p.trim()).filter(Boolean);
  }
  const refs = [...$('references').files];
  if (refs.length) opts.references = refs;
  return opts;
}

function setFinished(n) {
  hook.finished = n;
  document.body.dataset.finished = String(n);
}

/** Scores the chosen images; after a Cancel, resolves to a note on the results it kept. */
async function scoreImages() {
  clearError();
  setState('scoring');
  setFinished(0);
  const started = performance.now();
  let files = [];
  let opts = {};
  try {
    files = chosenImages();
    opts = scoreOptions();
    opts.onProgress = progressReporter($('score-progress'), $('score-status'));
    const finished = new Set(); // a WebGPU failure's rerun on the CPU sends results again
    opts.onResult = ({ index }) => setFinished(finished.add(index).size);
    const m = mode();
    const results = m === 'pair' ? await detector.scorePair(files[0], files[1], opts)
      : m === 'set' ? await detector.scoreSet(files, opts)
        : await detector.scoreImage(files[0], opts);
    const elapsed = performance.now() - started;
    hook.timings.lastScoreMs = elapsed;
    hook.timings.firstScoreMs ??= elapsed;
    const shown = await showResults(results.map((r, i) => ({ ...r, name: files[i].name, file: files[i] })), opts);
    $('score-status').textContent = `Scored ${shown} image(s) in ${(elapsed / 1000).toFixed(1)} s` +
      (detector.fallbackNote ? ` — ${detector.fallbackNote}` : '.');
    count('scores');
    setState('done');
    return '';
  } catch (e) {
    $('score-status').textContent = '';
    // What finished before the failure or the Cancel (e.g. the first images of a set too large
    // for the memory) is kept and shown: hours of work are not thrown away with the last image.
    const kept = (e?.partial ?? []).map((r) => ({ ...r, name: files[r.index].name, file: files[r.index] }));
    let note = '';
    if (kept.length) {
      await showResults(kept, opts);
      const done = new Set(kept.map((r) => r.index));
      const missed = files.filter((_, i) => !done.has(i)).map((f) => f.name);
      note = `${kept.length} of ${files.length} images were scored before this; their results are ` +
        `shown below (not scored: ${missed.slice(0, 3).join(', ')}` +
        `${missed.length > 3 ? ` and ${missed.length - 3} more` : ''})`;
    }
    // A Cancel reports itself (cancel() restarts the worker and owns the state meanwhile).
    if (e?.code === 'cancelled') return note;
    if (note) e.message = `${e.message.replace(/\.$/, '')}. ${note}`;
    showError(e);
    setState(detector ? 'ready' : 'idle');
    return '';
  }
}

/** Shows results (each with its name and file) in the view and in window.__duoclip. */
async function showResults(results, opts) {
  const items = await Promise.all(results.map(async ({ file, index, ...r }) => ({
    ...r, bitmap: await displayBitmap(file, r),
  })));
  const { onProgress, references, ...shown } = opts;
  view.show(items, {
    tool: 'duoclip', model: detector.modelLabel, device: detector.device,
    options: { ...shown, references: (references ?? []).map((f) => f.name) },
  });
  hook.results = items.map(({ name, score, width, height, map }) => ({ name, score, width, height, map }));
  showDevice();
  return items.length;
}

/** The picture under the map; if the browser cannot decode it, a grey field of the map's size. */
async function displayBitmap(file, result) {
  try {
    return await createImageBitmap(file);
  } catch {
    const canvas = new OffscreenCanvas(result.width, result.height);
    const ctx = canvas.getContext('2d');
    ctx.fillStyle = '#777';
    ctx.fillRect(0, 0, result.width, result.height);
    return canvas.transferToImageBitmap();
  }
}

async function cancel() {
  if (!detector) return;
  $('cancel-button').disabled = true;
  $('score-status').textContent = 'Cancelling: restarting the worker and reloading the model…';
  setState('loading');
  try {
    await detector.cancel();
    const kept = await scoring;
    $('score-status').textContent = `Cancelled; the model is loaded again.${kept ? ` ${kept}.` : ''}`;
    setState('ready');
  } catch (e) {
    showError(e);
    detector = null;
    setState('idle');
  }
}

// ---------------------------------------------------------------- wiring

function wireDrops() {
  for (const zone of document.querySelectorAll('.drop')) {
    const input = zone.querySelector('input');
    const name = zone.querySelector('.file-name');
    const showNames = () => {
      const files = [...input.files];
      name.textContent = files.length ? files.map((f) => f.name).slice(0, 3).join(', ') +
        (files.length > 3 ? ` and ${files.length - 3} more` : '') : name.dataset.empty;
    };
    name.dataset.empty = name.textContent;
    input.addEventListener('change', showNames);
    zone.addEventListener('dragover', (e) => {
      e.preventDefault();
      zone.classList.add('over');
    });
    zone.addEventListener('dragleave', () => zone.classList.remove('over'));
    zone.addEventListener('drop', (e) => {
      e.preventDefault();
      zone.classList.remove('over');
      const dropped = [...e.dataTransfer.files];
      // Two files dropped on a pair slot fill both slots.
      if (dropped.length === 2 && (input.id === 'image-a' || input.id === 'image-b')) {
        setFiles($('image-a'), [dropped[0]]);
        setFiles($('image-b'), [dropped[1]]);
        return;
      }
      setFiles(input, input.multiple ? dropped : dropped.slice(0, 1));
    });
  }
}

function setFiles(input, files) {
  const transfer = new DataTransfer();
  for (const f of files) transfer.items.add(f);
  input.files = transfer.files;
  input.dispatchEvent(new Event('change'));
}

function wire() {
  $('model-select').addEventListener('change', describeChoice);
  $('load-button').addEventListener('click', loadModel);
  $('score-button').addEventListener('click', () => { scoring = scoreImages(); });
  $('cancel-button').addEventListener('click', cancel);
  $('domain').addEventListener('change', () => {
    $('custom-domain').hidden = $('domain').value !== 'custom';
  });
  for (const radio of document.querySelectorAll('input[name=mode]')) {
    radio.addEventListener('change', () => {
      $('pair-inputs').hidden = mode() !== 'pair';
      $('set-inputs').hidden = mode() !== 'set';
      $('single-inputs').hidden = mode() !== 'image';
      // One image has no partner to compare with: the text-only preset is the one that works.
      if (mode() === 'image' && !$('references').files.length) $('preset').value = 'anovl';
    });
  }
  wireDrops();
}

wire();
describeChoice();
setState('idle');
hook.timings.pageReadyMs = performance.now();
fillRegistry();
if ('serviceWorker' in navigator) {
  // Offline use after the first visit; a failure here only costs that.
  navigator.serviceWorker.register('sw.js').catch(() => {});
}

// Section 1 of the page, the model: what each choice is (its real download size, or why it must
// be converted first and where a converted bundle comes from), loading it with progress that can
// be stopped, and which model is loaded — its name and sha256 stay in view, and a selection
// that differs from it is marked "not loaded". A failed load keeps the model that worked.

import { Detector, DuoclipError, registry, sha256 } from './duoclip.js';

const $ = (id) => document.getElementById(id);
const mb = (n) => (n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`);

/** The download a registry entry costs: exact where every size is known, else "about". */
export function downloadSize(entry) {
  const exact = entry.files.every((f) => f.bytes != null);
  const total = entry.files.reduce((n, f) => n + (f.bytes ?? f.approxBytes ?? 0), 0);
  if (exact) return mb(total);
  return total > 0 ? `about ${mb(total)}` : 'size not published';
}

export class ModelStep {
  /** hooks: { onLoaded(detector), onState(busy), onError(e), announce(text) } */
  constructor(hooks) {
    this.hooks = hooks;
    this.entries = [];
    this.detector = null;
    this.loaded = null; // { value, device, name, sha256 } of the detector in use
    this.loading = null; // AbortController of the load in progress
    this.busy = false; // the page is scoring: no load now
    $('model-select').addEventListener('change', () => this.describe());
    $('device-select').addEventListener('change', () => this.describe());
    $('model-files').addEventListener('change', () => this.describe());
    $('load-button').addEventListener('click', () => this.load());
    $('load-cancel').addEventListener('click', () => this.loading?.abort());
  }

  async fillRegistry() {
    this.entries = await registry();
    const select = $('model-select');
    const local = select.querySelector('option[value=local]');
    for (const entry of this.entries) {
      const option = document.createElement('option');
      option.value = `registry:${entry.name}`;
      option.textContent = `${entry.name} (${entry.arch}, ${entry.browser ? downloadSize(entry) : 'convert first'})`;
      select.insertBefore(option, local);
    }
    return this.entries;
  }

  #entry(value = $('model-select').value) {
    return this.entries.find((e) => `registry:${e.name}` === value);
  }

  /** Why Load cannot run now ('' when it can). */
  #blocked() {
    const value = $('model-select').value;
    const entry = this.#entry(value);
    if (entry && !entry.browser) return 'This model must be converted before a browser can load it (see above).';
    if (value === 'local' && !$('model-files').files.length) return 'Pick the model files first.';
    return '';
  }

  /** Describes the selection, and whether it is the loaded model. */
  describe() {
    const value = $('model-select').value;
    $('local-model').hidden = value !== 'local';
    const entry = this.#entry(value);
    $('model-notes').textContent = entry ? entryNotes(entry)
      : value === 'local' ? 'Files you pick are read on this machine; nothing is uploaded.'
        : 'A tiny model with random weights, for trying the page: its maps are meaningless.';
    this.refresh();
  }

  /** Load's availability and the "not loaded" mark, after any change. */
  refresh() {
    const why = this.loading ? '' : this.busy ? 'Wait until scoring has finished or is cancelled.' : this.#blocked();
    $('load-button').disabled = Boolean(this.loading) || Boolean(why);
    $('load-why').textContent = why;
    const stale = $('model-stale');
    stale.hidden = !this.loaded || !this.isStale();
    if (!stale.hidden) {
      stale.textContent = `Not loaded: the model or device chosen above differs from the loaded one ` +
        `(${this.loaded.name} on ${this.loaded.deviceChoice}). Click Load model to use it; until then ` +
        'nothing is scored.';
    }
  }

  /** Whether the menus no longer show what is loaded (then Score must wait for a Load). */
  isStale() {
    if (!this.loaded) return false;
    const value = $('model-select').value;
    const files = value === 'local' ? [...$('model-files').files].map((f) => `${f.name}:${f.size}`).join('|') : '';
    return value !== this.loaded.value || $('device-select').value !== this.loaded.deviceChoice ||
      files !== this.loaded.files;
  }

  async load() {
    const controller = new AbortController();
    this.loading = controller;
    this.hooks.onState(true);
    $('load-cancel').hidden = false;
    this.refresh();
    this.hooks.announce('Loading the model…');
    const started = performance.now();
    const choice = this.#choice();
    try {
      const detector = await Detector.load({
        model: choice.model, device: choice.deviceChoice, signal: controller.signal,
        onProgress: (p) => this.#progress(p),
      });
      if (controller.signal.aborted) {
        detector.dispose();
        throw new DuoclipError('cancelled', 'loading was stopped');
      }
      this.detector?.dispose(); // only now: a failed or stopped load keeps the model that works
      this.detector = detector;
      this.loaded = { ...choice, name: detector.modelLabel, sha256: await this.#sha256(choice, detector) };
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      this.hooks.announce(`Loaded ${detector.modelLabel} on ${detector.device === 'webgpu' ? 'WebGPU' : 'the CPU'} in ${seconds} s.`);
      this.#showLoaded();
      this.hooks.onLoaded(detector, performance.now() - started);
    } catch (e) {
      const kept = this.detector ? `${this.loaded.name} is still loaded.` : 'No model loaded.';
      this.hooks.announce(e?.code === 'cancelled' ? `Loading stopped. ${kept}` : `Loading failed. ${kept}`);
      if (e?.code !== 'cancelled') this.hooks.onError(e);
    } finally {
      this.loading = null;
      this.lastStage = null;
      $('load-cancel').hidden = true;
      $('model-progress-row').hidden = true;
      this.hooks.onState(false);
      this.refresh();
    }
  }

  #choice() {
    const value = $('model-select').value;
    const files = value === 'local' ? [...$('model-files').files] : [];
    return {
      value,
      deviceChoice: $('device-select').value,
      files: files.map((f) => `${f.name}:${f.size}`).join('|'),
      model: value === 'local' ? files : value.startsWith('registry:') ? value.slice('registry:'.length) : value,
    };
  }

  /** The weights' sha256: as the registry or bundle promised (and the download proved), else computed. */
  async #sha256(choice, detector) {
    const entry = this.#entry(choice.value);
    const promised = entry?.files.find((f) => /\.safetensors$/i.test(f.path))?.sha256 ?? detector.manifest?.weights?.sha256;
    if (promised) return promised;
    const weights = Array.isArray(choice.model) ? choice.model.find((f) => /\.safetensors$/i.test(f.name)) : null;
    return weights ? sha256(await weights.arrayBuffer()) : null;
  }

  /** After a failure that left no usable detector: nothing is loaded any more. */
  forget() {
    this.detector?.dispose();
    this.detector = null;
    this.loaded = null;
    $('model-loaded').hidden = true;
    $('model-status').textContent = 'No model loaded.';
    this.refresh();
  }

  /** The loaded model stays in view (name, device, sha256) whatever the menus show. */
  #showLoaded() {
    const { name, sha256: sha } = this.loaded;
    const box = $('model-loaded');
    box.hidden = false;
    box.textContent = `In use: ${name} on ${this.detector.device === 'webgpu' ? 'WebGPU' : 'the CPU'}; ` +
      `weights sha256 ${sha ?? 'unknown'}` +
      (this.detector.manifest?.test_model ? '. Test model: random weights, its maps are meaningless.' : '.');
  }

  /** Progress goes to the bar and a plain text next to it; only stage changes are announced. */
  #progress({ stage, file, done, total, cached, approximate }) {
    $('model-progress-row').hidden = false;
    const bar = $('model-progress');
    bar.max = total || 1;
    bar.value = Math.min(done, total || 1);
    const text = stage === 'download'
      ? cached ? `${file}: read from this browser's cache`
        : `Downloading ${file}: ${mb(done)}${total ? ` of ${approximate ? 'about ' : ''}${mb(total)}` : ''}`
      : stage === 'verify' ? `Checking ${file} (sha256)…`
        : done < total ? 'Preparing the model (on WebGPU the first run compiles shaders; this can take a while)…'
          : 'Model ready.';
    $('model-progress-text').textContent = text;
    bar.setAttribute('aria-valuetext', text);
    const key = `${stage}:${file ?? ''}`;
    if (key !== this.lastStage) {
      this.lastStage = key;
      this.hooks.announce(text);
    }
  }
}

function entryNotes(entry) {
  if (entry.browser) {
    return `${entry.arch}, ${entry.imageSize} px input, ${downloadSize(entry)} download (once; then kept ` +
      `in this browser), licence ${entry.license}.`;
  }
  return `${entry.arch}: the published weights are a PyTorch file that a browser cannot read safely. ` +
    'Converting it means someone with the duoclip command-line program on a computer runs its ' +
    `"convert" command for ${entry.name} once; that writes a browser bundle (manifest.json, ` +
    'model.safetensors, anchors.safetensors), which you then open here with "Local files".';
}

// <duoclip-detector>: duoclip as an element for other web tools.
//
//   <script type="module" src="duoclip-detector.js"></script>
//   <duoclip-detector model="models/tiny/" device="auto" domain="object" object="bottle">
//   </duoclip-detector>
//
// The element shows a file picker (1 image: text prompts only; 2: a pair; 3 or more: a set)
// and draws each image with its anomaly map. Scripts can call `await element.score(images)`
// (Blobs, ImageBitmaps or URLs) and listen for `duoclip-ready`, `duoclip-result` (detail: the
// results, in input order) and `duoclip-error` (detail: the error with its `code`).
// Attributes: model (required), device, domain, object, preset, opacity (0..1).

import { Detector } from './duoclip.js';
import { drawOverlay, mapRange } from './heatmap.js';
import { resultBitmap } from './result-image.js';

const STYLES = new URL('./duoclip-detector.css', import.meta.url).href;

class DuoclipDetectorElement extends HTMLElement {
  #detector = null;
  #loading = null;

  connectedCallback() {
    if (this.shadowRoot) return;
    const root = this.attachShadow({ mode: 'open' });
    const link = document.createElement('link');
    link.rel = 'stylesheet';
    link.href = STYLES;
    const picker = document.createElement('input');
    picker.type = 'file';
    picker.multiple = true;
    picker.accept = 'image/*,application/dicom,.dcm,.dicom,.nii,.gz,.tif,.tiff,.webp,.bmp';
    picker.setAttribute('aria-label', 'images to score');
    picker.addEventListener('change', () => {
      if (picker.files.length) this.score([...picker.files]).catch(() => {});
    });
    this.status = document.createElement('p');
    this.status.className = 'status';
    this.gallery = document.createElement('div');
    this.gallery.className = 'gallery';
    root.append(link, picker, this.status, this.gallery);
    this.detector().catch(() => {});
  }

  /** The element's Detector, loaded once from the `model` attribute. */
  detector() {
    this.#loading ??= (async () => {
      const model = this.getAttribute('model');
      this.#say('Loading the model…');
      this.#detector = await Detector.load({
        model,
        device: this.getAttribute('device') ?? 'auto',
        onProgress: ({ stage, done, total }) => {
          if (stage === 'download' && total) this.#say(`Downloading the model: ${Math.round((100 * done) / total)}%`);
        },
      });
      this.#say(`Ready (${this.#detector.device}). Pick images.`);
      this.dispatchEvent(new CustomEvent('duoclip-ready', { detail: { device: this.#detector.device } }));
      return this.#detector;
    })().catch((e) => {
      this.#loading = null;
      this.#fail(e);
      throw e;
    });
    return this.#loading;
  }

  /** Scores 1 (text only), 2 (pair) or more (set) images and draws the maps. */
  async score(images) {
    const detector = await this.detector();
    const opts = {};
    for (const key of ['domain', 'object', 'preset']) {
      if (this.hasAttribute(key)) opts[key] = this.getAttribute(key);
    }
    this.#say(`Scoring ${images.length} image(s)…`);
    try {
      const results = images.length === 1 ? await detector.scoreImage(images[0], opts)
        : images.length === 2 ? await detector.scorePair(images[0], images[1], opts)
          : await detector.scoreSet(images, opts);
      await this.#draw(images, results);
      this.#say(`Scores: ${results.map((r) => r.score.toFixed(4)).join(', ')}`);
      this.dispatchEvent(new CustomEvent('duoclip-result', { detail: results }));
      return results;
    } catch (e) {
      this.#fail(e);
      throw e;
    }
  }

  async #draw(images, results) {
    const range = mapRange(results);
    const opacity = Number(this.getAttribute('opacity') ?? 0.5);
    const canvases = await Promise.all(results.map(async (result, i) => {
      const canvas = document.createElement('canvas');
      // A file of several images (a volume) gives several results; DICOM, NIfTI and TIFF
      // come with the picture the model saw, which a browser could not draw from the file.
      const bitmap = result.display ? await resultBitmap(result) : await toBitmap(images[result.file]);
      drawOverlay(canvas, bitmap, result, { range, opacity, threshold: 0 });
      canvas.title = `score ${result.score.toFixed(4)}`;
      return canvas;
    }));
    this.gallery.replaceChildren(...canvases);
  }

  #say(text) {
    if (this.status) this.status.textContent = text;
  }

  #fail(e) {
    this.#say(`Error (${e.code ?? 'internal'}): ${e.message}`);
    this.dispatchEvent(new CustomEvent('duoclip-error', { detail: e }));
  }

  disconnectedCallback() {
    this.#detector?.dispose();
    this.#detector = null;
    this.#loading = null;
  }
}

async function toBitmap(image) {
  if (image instanceof ImageBitmap) return image;
  if (typeof image === 'string' || image instanceof URL) {
    const response = await fetch(image);
    return createImageBitmap(await response.blob());
  }
  return createImageBitmap(image instanceof ArrayBuffer || ArrayBuffer.isView(image) ? new Blob([image]) : image);
}

customElements.define('duoclip-detector', DuoclipDetectorElement);

// The results panel: a viewer for one image at a time (the map over the image, or image and map
// side by side, with one zoom and pan for both), the list of scored images with thumbnails,
// sorted by score, next/previous with the arrow keys, the colour scale and the exports. It knows
// nothing of the detector: app.js hands it finished results. Only the image on screen is held
// decoded; thumbnails are drawn small when they scroll into view and their pixels let go.

import { drawLegend, mapCanvas, mapRange, scaleRange } from './heatmap.js';
import { exportAll, exportCsv, exportJson, exportPng } from './export.js';
import { resultBitmap } from './result-image.js';
import { SliceStrip } from './slice-strip.js';
import { ViewerCanvas } from './viewer-canvas.js';

const $ = (id) => document.getElementById(id);
const THUMB = 64;

export class ResultsView {
  constructor() {
    // { name, score, width, height, map, file, fileIndex, label?, window?, withheld?, display? },
    // in input order (a volume's slices in file order)
    this.items = [];
    this.order = []; // indices into items, in the list's order
    this.selected = 0;
    this.meta = {};
    this.bitmap = null; // the selected image, decoded; closed when another is shown
    this.panes = [new ViewerCanvas($('original-canvas')), new ViewerCanvas($('overlay-canvas'))];
    this.slices = new SliceStrip((index) => this.select(index));
    // Drawn a little before they scroll into view, so that scrolling meets finished thumbnails.
    this.thumbs = new IntersectionObserver((entries) => this.#drawThumbs(entries), { rootMargin: '300px' });
    this.#wire();
  }

  #wire() {
    for (const id of ['opacity', 'threshold', 'layout', 'scale', 'scale-low', 'scale-high']) {
      $(id).addEventListener('input', () => this.render());
    }
    $('sort').addEventListener('input', () => this.#fillList());
    $('prev-result').addEventListener('click', () => this.step(-1));
    $('next-result').addEventListener('click', () => this.step(1));
    $('zoom-in').addEventListener('click', () => this.#zoom(1.5));
    $('zoom-out').addEventListener('click', () => this.#zoom(1 / 1.5));
    $('zoom-fit').addEventListener('click', () => this.#zoom(0));
    $('export-png').addEventListener('click', () => this.#export(() => exportPng(this.#current(), this.bitmap, this.settings, this.meta)));
    $('export-json').addEventListener('click', () => this.#export(() => exportJson(this.items, this.settings, this.meta)));
    $('export-csv').addEventListener('click', () => this.#export(() => exportCsv(this.items, this.settings)));
    $('export-all').addEventListener('click', () => this.#export(() => exportAll(this.items, this.settings, this.meta)));
    document.addEventListener('keydown', (e) => this.#key(e));
    const area = $('views-area');
    area.addEventListener('wheel', (e) => {
      e.preventDefault();
      this.#zoom(e.deltaY < 0 ? 1.25 : 0.8, e);
    }, { passive: false });
    this.#wirePan(area);
    new ResizeObserver(() => this.render()).observe(area);
  }

  #wirePan(area) {
    let last = null;
    area.addEventListener('pointerdown', (e) => {
      last = [e.clientX, e.clientY];
      area.setPointerCapture(e.pointerId);
    });
    area.addEventListener('pointermove', (e) => {
      if (!last) return;
      this.panes[1].pan(e.clientX - last[0], e.clientY - last[1]);
      this.panes[0].view = this.panes[1].view;
      last = [e.clientX, e.clientY];
      this.render();
    });
    const stop = () => { last = null; };
    area.addEventListener('pointerup', stop);
    area.addEventListener('pointercancel', stop);
  }

  /** Arrow keys step through the list; + − 0 zoom; not while typing or choosing in a field. */
  #key(e) {
    if (!this.items.length || $('results-section').hidden || e.altKey || e.ctrlKey || e.metaKey) return;
    if (e.target.closest?.('input, select, textarea')) return;
    const actions = {
      ArrowLeft: () => this.step(-1), ArrowRight: () => this.step(1),
      '+': () => this.#zoom(1.5), '=': () => this.#zoom(1.5), '-': () => this.#zoom(1 / 1.5), 0: () => this.#zoom(0),
    };
    const action = actions[e.key];
    if (!action) return;
    e.preventDefault();
    action();
  }

  /** items: one per image, in input order; meta: what produced them (for the exports). */
  async show(items, meta) {
    this.items = items;
    this.meta = meta;
    $('results-section').hidden = false;
    $('results-model').textContent = meta.modelLine ?? '';
    const notice = $('results-notice');
    notice.hidden = !meta.notice;
    notice.textContent = meta.notice ?? '';
    $('results-verdicts').hidden = !meta.calibration;
    $('results-verdicts').textContent = meta.calibration ? verdictRule(meta.calibration) : '';
    this.#fillList();
    const best = this.order[0] ?? 0;
    await this.select($('sort').value === 'input' ? this.#highest() : best);
  }

  #highest() {
    return this.items.reduce((best, it, i) => (it.score > this.items[best].score ? i : best), 0);
  }

  clear() {
    this.items = [];
    this.bitmap?.close();
    this.bitmap = null;
    $('result-list').replaceChildren();
    $('results-section').hidden = true;
  }

  get settings() {
    const custom = [Number($('scale-low').value), Number($('scale-high').value)];
    const mode = $('scale').value;
    return {
      mode,
      range: scaleRange(mode, this.items, custom),
      opacity: Number($('opacity').value),
      threshold: Number($('threshold').value),
    };
  }

  #current() {
    return this.items[this.selected];
  }

  /** Shows item `index`: decodes its image, lets go of the previous one. */
  async select(index) {
    const item = this.items[index];
    if (!item) return;
    this.selected = index;
    const bitmap = await decode(item);
    if (this.selected !== index) {
      bitmap.close(); // another selection arrived while this one decoded
      return;
    }
    this.bitmap?.close();
    this.bitmap = bitmap;
    for (const pane of this.panes) pane.fit();
    this.render();
  }

  /** Next (+1) or previous (−1) in the list's order. */
  step(by) {
    const at = this.order.indexOf(this.selected);
    const next = this.order[Math.min(Math.max(at + by, 0), this.order.length - 1)];
    if (next !== undefined && next !== this.selected) this.select(next);
  }

  #zoom(factor, event) {
    const pane = this.panes[1];
    // Both panes show the same view: the point under the pointer, in whichever pane it is.
    const at = event && this.panes.map((p) => p.pointAt(event)).find(Boolean);
    if (factor === 0) pane.fit();
    else pane.zoom(factor, at);
    this.panes[0].view = pane.view;
    this.render();
  }

  render() {
    const item = this.#current();
    if (!item || !this.bitmap) return;
    const settings = this.settings;
    $('scale-custom').hidden = settings.mode !== 'custom';
    const twoUp = $('layout').value === 'two-up';
    $('views-area').classList.toggle('two-up', twoUp);
    $('original-canvas').hidden = !twoUp;
    const map = mapCanvas(item, settings.range, settings.opacity, settings.threshold);
    const [original, overlay] = this.panes;
    const columns = twoUp ? 2 : 1;
    if (twoUp) original.draw(this.bitmap, null, columns);
    overlay.draw(this.bitmap, settings.opacity > 0 ? map : null, columns, item);
    this.#describe(item, settings);
    drawLegend($('legend'), settings.threshold);
    this.slices.show(this.items, this.selected);
    this.#markList();
    document.body.dataset.selected = String(this.selected);
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered ?? 0) + 1);
  }

  /** The words next to the pictures: what is shown, for eyes and for screen readers. */
  #describe(item, { mode, range: [lo, hi], threshold }) {
    const from = lo + threshold * (hi - lo);
    $('legend-low').textContent = lo.toFixed(3);
    $('legend-high').textContent = hi.toFixed(3);
    $('threshold-value').textContent = `≥ ${from.toFixed(3)}`;
    $('threshold').setAttribute('aria-valuetext', `map values from ${from.toFixed(3)} are coloured`);
    const rank = this.#rank(this.selected);
    const n = this.items.length;
    const [min, max] = mapRange([item]);
    // A live region: rewritten only when its words change (a slider's move must not re-announce).
    setText($('result-summary'), `${item.name}: image score ${item.score.toFixed(4)}` +
      (item.verdict ? ` — ${item.verdict} (${signed(item.margin)} from the threshold; ` +
        `${item.regions.length} region(s) above the pixel threshold)` : '') +
      (n > 1 ? `, rank ${rank} of ${n} (1 = highest)` : '') +
      ` — its map runs ${min.toFixed(3)} … ${max.toFixed(3)}; colours span ${lo.toFixed(3)} … ` +
      `${hi.toFixed(3)} (${mode === 'run' ? "this run's range" : mode === 'fixed' ? 'fixed 0 to 1' : 'your range'}).`);
    const label = `${item.name}, image score ${item.score.toFixed(4)}; highest map values ${where(item)}`;
    $('overlay-canvas').setAttribute('aria-label', `Anomaly map over ${label}`);
    $('original-canvas').setAttribute('aria-label', `${item.name} without the map`);
    const at = this.order.indexOf(this.selected);
    $('result-position').textContent = `${at + 1} of ${n}`;
    $('prev-result').disabled = at <= 0;
    $('next-result').disabled = at >= n - 1;
  }

  #rank(index) {
    return 1 + this.items.filter((it) => it.score > this.items[index].score).length;
  }

  #fillList() {
    const sort = $('sort').value;
    const indices = this.items.map((_, i) => i);
    if (sort === 'score-desc') indices.sort((a, b) => this.items[b].score - this.items[a].score || a - b);
    if (sort === 'score-asc') indices.sort((a, b) => this.items[a].score - this.items[b].score || a - b);
    this.order = indices;
    this.thumbs.disconnect();
    const list = $('result-list');
    list.replaceChildren(...indices.map((i) => this.#listEntry(i)));
    for (const canvas of list.querySelectorAll('canvas')) this.thumbs.observe(canvas);
    list.hidden = this.items.length < 2;
    this.#markList();
  }

  #listEntry(i) {
    const item = this.items[i];
    const li = document.createElement('li');
    const button = document.createElement('button');
    button.type = 'button';
    button.dataset.index = String(i);
    const thumb = document.createElement('canvas');
    thumb.width = THUMB;
    thumb.height = THUMB;
    thumb.dataset.index = String(i);
    thumb.setAttribute('aria-hidden', 'true');
    const text = document.createElement('span');
    text.textContent = `${item.name} — ${item.score.toFixed(4)}`;
    button.append(thumb, text);
    if (item.verdict) {
      const badge = document.createElement('span');
      badge.className = `verdict verdict-${item.verdict}`;
      badge.textContent = item.verdict;
      button.append(badge);
    }
    button.addEventListener('click', () => this.select(i));
    li.append(button);
    return li;
  }

  #markList() {
    for (const button of $('result-list').querySelectorAll('button')) {
      const on = Number(button.dataset.index) === this.selected;
      button.closest('li').classList.toggle('selected', on);
      if (on) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
    }
  }

  /** Thumbnails as they scroll into view: the image decoded small, the map over it. */
  async #drawThumbs(entries) {
    for (const { target, isIntersecting } of entries) {
      if (!isIntersecting || target.dataset.drawn) continue;
      target.dataset.drawn = '1';
      this.thumbs.unobserve(target);
      const item = this.items[Number(target.dataset.index)];
      const bitmap = await decode(item, THUMB);
      const ctx = target.getContext('2d');
      ctx.drawImage(bitmap, 0, 0, THUMB, THUMB);
      bitmap.close();
      const { range, threshold } = this.settings;
      ctx.drawImage(mapCanvas(item, range, 0.6, threshold), 0, 0, THUMB, THUMB);
    }
  }

  async #export(write) {
    try {
      await write();
    } catch (e) {
      $('result-summary').textContent = `Export failed: ${e.message}`;
    }
  }
}

// Decoded images alive now, on <body data-decoded> for the memory test: the view holds one.
let decoded = 0;
const counted = (bitmap) => {
  decoded += 1;
  document.body.dataset.decoded = String(decoded);
  const close = bitmap.close.bind(bitmap);
  bitmap.close = () => {
    decoded -= 1;
    document.body.dataset.decoded = String(decoded);
    close();
  };
  return bitmap;
};

/** The image under a map (at most `size` px wide); a grey field of the map's size if undecodable. */
async function decode(item, size) {
  return counted(await resultBitmap(item, size));
}

const signed = (x) => `${x >= 0 ? '+' : '−'}${Math.abs(x).toFixed(4)}`;
const percent = (p) => `${(100 * p).toFixed(p < 0.1 ? 1 : 0)}%`;

/** The calibration in words: the threshold, what it promises, and the band. */
function verdictRule({ image, band, pixel, false_alarm: alpha, bound, good }) {
  const weaker = bound > alpha
    ? ` (${good.count} known-good image(s) cannot bound it below 1/${good.count + 1}; add more for ${percent(alpha)})`
    : '';
  return `Verdicts: "anomalous" above ${(image + band).toFixed(4)}, "ok" below ${(image - band).toFixed(4)}, ` +
    `"uncertain" between — the threshold ${image.toFixed(4)} is set on ${good.count} known-good image(s) ` +
    `(scores ${good.min.toFixed(4)} … ${good.max.toFixed(4)}) so that a good image exceeds it with probability ` +
    `at most ${percent(bound)}${weaker}. Outlined regions: map values above ${pixel.toFixed(4)}.`;
}

function setText(element, text) {
  if (element.textContent !== text) element.textContent = text;
}

/** Where the map peaks, in words ("near the top left"): the text alternative of the overlay. */
function where({ map, width, height }) {
  let peak = 0;
  for (let i = 1; i < map.length; i++) if (map[i] > map[peak]) peak = i;
  const row = ['top', 'middle', 'bottom'][Math.min(2, Math.floor((3 * Math.floor(peak / width)) / height))];
  const col = ['left', 'centre', 'right'][Math.min(2, Math.floor((3 * (peak % width)) / width))];
  return row === 'middle' && col === 'centre' ? 'near the centre' : `near the ${row} ${col}`;
}

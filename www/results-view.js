// The results panel: overlay canvas, legend, per-image list and exports. Knows nothing of the
// detector; app.js hands it finished results.

import { drawLegend, drawOverlay, mapRange } from './heatmap.js';

const $ = (id) => document.getElementById(id);

export class ResultsView {
  constructor() {
    this.items = []; // { name, score, width, height, map, bitmap }
    this.range = [0, 1];
    this.selected = 0;
    this.meta = {};
    for (const id of ['opacity', 'threshold', 'side-by-side']) {
      $(id).addEventListener('input', () => this.render());
    }
    $('export-png').addEventListener('click', () => this.exportPng());
    $('export-json').addEventListener('click', () => this.exportJson());
  }

  /** items: one per image, in input order; meta: what produced them (for the JSON export). */
  show(items, meta) {
    this.items = items;
    this.meta = meta;
    this.range = mapRange(items);
    this.selected = items.reduce((best, it, i) => (it.score > items[best].score ? i : best), 0);
    this.#fillList();
    $('results-section').hidden = false;
    this.render();
  }

  clear() {
    this.items = [];
    $('results-section').hidden = true;
  }

  get settings() {
    return {
      range: this.range,
      opacity: Number($('opacity').value),
      threshold: Number($('threshold').value),
    };
  }

  render() {
    const item = this.items[this.selected];
    if (!item) return;
    const settings = this.settings;
    const sideBySide = $('side-by-side').checked;
    const original = $('original-canvas');
    original.hidden = !sideBySide;
    if (sideBySide) drawOverlay(original, item.bitmap, item, { ...settings, opacity: 0 });
    drawOverlay($('overlay-canvas'), item.bitmap, item, settings);
    drawLegend($('legend'), settings.threshold);
    const [lo, hi] = this.range;
    $('legend-low').textContent = lo.toFixed(3);
    $('legend-high').textContent = hi.toFixed(3);
    $('threshold-value').textContent = `≥ ${(lo + settings.threshold * (hi - lo)).toFixed(3)}`;
    $('result-summary').textContent =
      `${item.name}: image score ${item.score.toFixed(4)} — map ${item.width}×${item.height}, ` +
      `values ${lo.toFixed(3)} … ${hi.toFixed(3)} over this run`;
    for (const [i, li] of [...$('result-list').children].entries()) {
      li.classList.toggle('selected', i === this.selected);
    }
    document.body.dataset.selected = String(this.selected);
    document.body.dataset.rendered = String(Number(document.body.dataset.rendered ?? 0) + 1);
  }

  #fillList() {
    const list = $('result-list');
    list.replaceChildren(...this.items.map((item, i) => {
      const li = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      button.textContent = `${item.name} — ${item.score.toFixed(4)}`;
      button.addEventListener('click', () => {
        this.selected = i;
        this.render();
      });
      li.append(button);
      return li;
    }));
    list.hidden = this.items.length < 2;
  }

  exportPng() {
    const item = this.items[this.selected];
    $('overlay-canvas').toBlob((blob) => download(blob, `${stem(item.name)}-overlay.png`), 'image/png');
  }

  exportJson() {
    const doc = {
      ...this.meta,
      map_range: this.range,
      images: this.items.map(({ name, score, width, height, map }) =>
        ({ file: name, score, width, height, map: Array.from(map) })),
    };
    download(new Blob([JSON.stringify(doc)], { type: 'application/json' }), 'duoclip-scores.json');
  }
}

const stem = (name) => name.replace(/\.[^.]*$/, '').replace(/[^\w.-]/g, '_') || 'image';

function download(blob, name) {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

// A volume's slices (a DICOM file's frames, a DICOM series' files) in the results: a slider
// through them in slice order and a strip chart of their scores, so that the worst slices are
// one click away. Shown when the image on screen belongs to such a stack (the wasm's `stack`
// and `slice` of each result).

const $ = (id) => document.getElementById(id);

export class SliceStrip {
  /** `select(index)` shows result `index` (an index into the results, not the slice). */
  constructor(select) {
    this.select = select;
    this.members = []; // result indices of the shown stack's images, in slice order
    $('slice-range').addEventListener('input', (e) => this.#go(Number(e.target.value) - 1));
    $('slice-worst').addEventListener('click', () => this.#go(this.#worst()));
    $('slice-chart').addEventListener('click', (e) => {
      const rect = e.target.getBoundingClientRect();
      this.#go(Math.floor(((e.clientX - rect.left) / rect.width) * this.members.length));
    });
  }

  /**
   * Shows the strip of the stack (a volume, a file's frames, a DICOM series' files) that result
   * `selected` belongs to, in slice order; hidden for an image that stands alone.
   */
  show(items, selected) {
    const stack = items[selected]?.stack;
    this.items = items;
    this.members = items.map((_, i) => i).filter((i) => items[i].stack === stack)
      .sort((a, b) => items[a].slice - items[b].slice);
    $('slices').hidden = this.members.length < 2;
    if (this.members.length < 2) return;
    const at = this.members.indexOf(selected);
    const range = $('slice-range');
    range.max = String(this.members.length);
    range.value = String(at + 1);
    const label = items[selected].label ?? `${at + 1}`;
    range.setAttribute('aria-valuetext', `${label}, ${at + 1} of ${this.members.length}`);
    $('slice-where').textContent = `${label} (${at + 1} of ${this.members.length})`;
    this.#draw(at);
  }

  #go(at) {
    const index = this.members[Math.min(Math.max(at, 0), this.members.length - 1)];
    if (index !== undefined) this.select(index);
  }

  #worst() {
    const scores = this.members.map((i) => this.items[i].score);
    return scores.indexOf(Math.max(...scores));
  }

  /** One bar per slice, its height the slice's score between the file's lowest and highest. */
  #draw(at) {
    const canvas = $('slice-chart');
    const width = Math.max(canvas.clientWidth, 1);
    canvas.width = width * devicePixelRatio;
    canvas.height = canvas.clientHeight * devicePixelRatio;
    const ctx = canvas.getContext('2d');
    ctx.scale(devicePixelRatio, devicePixelRatio);
    const height = canvas.clientHeight;
    const scores = this.members.map((i) => this.items[i].score);
    const lo = Math.min(...scores);
    const span = Math.max(...scores) - lo || 1;
    const style = getComputedStyle(canvas);
    const bar = width / scores.length;
    ctx.clearRect(0, 0, width, height);
    scores.forEach((s, k) => {
      ctx.fillStyle = k === at ? style.getPropertyValue('--accent') : style.getPropertyValue('--muted');
      const h = 4 + ((s - lo) / span) * (height - 4);
      ctx.fillRect(k * bar, height - h, Math.max(bar - 1, 1), h);
    });
    const worst = this.#worst();
    const name = (k) => this.items[this.members[k]].label ?? `${k + 1}`;
    canvas.setAttribute('aria-label', `Scores of the ${scores.length} slices, in order: ` +
      `highest ${scores[worst].toFixed(4)} at ${name(worst)}, lowest ${lo.toFixed(4)}; ` +
      `${name(at)} is shown (${scores[at].toFixed(4)}).`);
  }
}

// What the chosen DICOM, NIfTI and TIFF files hold, asked of the wasm (the same readers as the
// CLI) as soon as they are picked and a model is loaded: how many images each holds, shown next
// to its name; a file that cannot be read, said at once; and the prompt domain the file
// suggests (DICOM's Modality and Body Part Examined), chosen for the user unless they chose
// one themselves, with the reason shown.

import { currentFiles, isMedicalFile, notePicked } from './inputs.js';

const $ = (id) => document.getElementById(id);
const INSPECTED_MAX = 64; // a folder of thousands of slices: the first ones tell enough

export class FileFacts {
  /**
   * `detector()`: the loaded Detector or null; `onDomain()`: the domain was changed here;
   * `onFacts()`: a file's image count is known.
   */
  constructor({ detector, onError, onDomain, onFacts }) {
    Object.assign(this, { detector, onError, onDomain, onFacts });
    this.known = new WeakMap(); // File → window → what inspect() said
    this.userDomain = false; // set once the user picks a domain themselves
    this.generation = 0;
    $('domain').addEventListener('change', () => { this.userDomain = true; });
  }

  /** Inspects the chosen files not inspected yet; a newer call makes an older one stop. */
  async refresh() {
    const detector = this.detector();
    const generation = ++this.generation;
    if (!detector) return;
    const files = currentFiles().filter(isMedicalFile).slice(0, INSPECTED_MAX);
    if (!files.length) $('domain-source').textContent = '';
    let suggested = false;
    for (const file of files) {
      // The window decides which slices are background, so it is part of the answer's key.
      const window = $('window').value;
      if (!this.known.has(file)) this.known.set(file, new Map());
      let facts = this.known.get(file).get(window);
      if (!facts) {
        try {
          facts = await detector.inspect(file, { window });
        } catch (e) {
          if (generation === this.generation) this.onError(e);
          return;
        }
        this.known.get(file).set(window, facts);
      }
      if (generation !== this.generation) return;
      notePicked(file, count(facts));
      this.onFacts();
      if (facts.domain && !suggested) {
        suggested = true;
        this.#suggest(facts.domain);
      }
    }
  }

  /** How many images `file` holds, where inspected (a volume's slices), else 1. */
  images(file) {
    return this.known.get(file)?.get($('window').value)?.images ?? 1;
  }

  #suggest({ name, because }) {
    const option = [...$('domain').options].find((o) => o.value === name);
    if (!option) return;
    const words = option.textContent;
    if (this.userDomain && $('domain').value !== name) {
      $('domain-source').textContent = `The file suggests ${words} (${because}); your choice is kept.`;
      return;
    }
    if ($('domain').value !== name) {
      $('domain').value = name;
      this.onDomain();
    }
    $('domain-source').textContent = `Domain ${words}, from the file: ${because}. Choose another above if ` +
      'that is wrong.';
  }
}

function count({ images, labels }) {
  const what = labels[0]?.startsWith('series=') ? (images === 1 ? 'image' : 'frames')
    : images === 1 ? 'image' : 'slices';
  return `${images} ${what}`;
}

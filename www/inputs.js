// The images to score: the mode (pair, set, single), the file inputs and their drop zones,
// drops and pastes anywhere on the page (a drop that misses a zone must not navigate away and
// lose the loaded model), folders read in full, and the chosen images shown small with a way
// to clear them.

const $ = (id) => document.getElementById(id);
const PREVIEW = 48;
const PREVIEW_MAX = 24; // shown as thumbnails; the rest are counted

export const mode = () => document.querySelector('input[name=mode]:checked').value;
// What duoclip reads (the wasm recognises each format from its bytes): the raster formats, and
// DICOM, whose files often have no extension at all (IM0001, 1.2.840….).
const READ = /\.(png|jpe?g|tiff?|webp|bmp|dcm|dicom|nii|nii\.gz)$/i;
const SKIP = /^(\.|DICOMDIR$)|\.(txt|json|xml|csv|html?|pdf|md|ini|db|zip)$/i;
export const isImageFile = (f) => /^image\//.test(f.type) || f.type === 'application/dicom' ||
  READ.test(f.name) || (!/\.[a-z0-9]{1,5}$/i.test(f.name) && !SKIP.test(f.name));
/** Files a browser cannot draw itself: their previews are the wasm's, after scoring. */
export const isMedicalFile = (f) => /\.(dcm|dicom|nii|nii\.gz|tiff?)$/i.test(f.name) ||
  f.type === 'application/dicom' || (!/^image\//.test(f.type) && !READ.test(f.name));

/**
 * The files each mode scores, in order; what is missing is said in words. `imagesIn(file)`:
 * how many images a file holds where known (a volume's slices make a set on their own).
 */
export function chosenImages(imagesIn = () => 1) {
  const m = mode();
  if (m === 'pair') {
    const files = [$('image-a').files[0], $('image-b').files[0]];
    if (!files[0] || !files[1]) throw Object.assign(new Error('pick image A and image B'), { code: 'bad_option' });
    return files;
  }
  if (m === 'image') {
    const file = $('image-single').files[0];
    if (!file) throw Object.assign(new Error('pick an image'), { code: 'bad_option' });
    return [file];
  }
  const picked = [...$('image-set').files, ...[...$('image-folder').files].filter(isImageFile)];
  const images = picked.reduce((n, f) => n + imagesIn(f), 0);
  if (images < 2) throw Object.assign(new Error('a set needs at least 2 images'), { code: 'bad_option' });
  return picked;
}

/** Whether the current mode has what it needs (for the Score button's reason). */
export function missingImages(imagesIn) {
  try {
    chosenImages(imagesIn);
    return '';
  } catch (e) {
    return e.message;
  }
}

export function setFiles(input, files) {
  const transfer = new DataTransfer();
  for (const f of files) transfer.items.add(f);
  input.files = transfer.files;
  input.dispatchEvent(new Event('change', { bubbles: true }));
}

/**
 * Files into the current mode's inputs: a pair fills A then B (two at once fill both), a set
 * adds to what it has, single takes the first. `zone` is the input a drop landed on, if any.
 */
export function place(files, zone) {
  const images = files.filter(isImageFile);
  if (!images.length) return 0;
  const m = zone ? { 'image-a': 'pair', 'image-b': 'pair', 'image-set': 'set', 'image-single': 'image' }[zone.id] : mode();
  if (m === 'set' || zone?.id === 'image-folder') {
    setFiles($('image-set'), [...$('image-set').files, ...images]);
  } else if (m === 'image') {
    setFiles($('image-single'), images.slice(0, 1));
  } else if (images.length >= 2) {
    setFiles($('image-a'), [images[0]]);
    setFiles($('image-b'), [images[1]]);
  } else {
    const target = zone ?? (!$('image-a').files.length || $('image-b').files.length ? $('image-a') : $('image-b'));
    setFiles(target, images);
  }
  return images.length;
}

/** Every file of a drop, folders read to the end (readEntries answers in batches). */
export async function droppedFiles(dataTransfer) {
  const entries = [...dataTransfer.items].map((item) => item.webkitGetAsEntry?.()).filter(Boolean);
  if (!entries.length) return [...dataTransfer.files];
  const files = [];
  const walk = async (entry) => {
    if (entry.isFile) {
      files.push(await new Promise((resolve, reject) => entry.file(resolve, reject)));
      return;
    }
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
      if (!batch.length) break;
      for (const child of batch) await walk(child);
    }
  };
  for (const entry of entries) await walk(entry);
  return files.sort((a, b) => a.name.localeCompare(b.name, undefined, { numeric: true }));
}

/** The chosen images as small previews (object URLs, revoked when the list changes). */
export function showPicked() {
  const list = $('picked-list');
  for (const img of list.querySelectorAll('img')) URL.revokeObjectURL(img.src);
  const files = currentFiles();
  $('picked').hidden = files.length === 0;
  const items = files.slice(0, PREVIEW_MAX).map((file) => {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.textContent = file.name;
    name.dataset.file = file.name;
    li.append(isMedicalFile(file) ? formatBadge(file) : preview(file), name);
    return li;
  });
  if (files.length > PREVIEW_MAX) {
    const more = document.createElement('li');
    more.textContent = `and ${files.length - PREVIEW_MAX} more (${files.length} images)`;
    items.push(more);
  }
  list.replaceChildren(...items);
}

function preview(file) {
  const img = document.createElement('img');
  img.src = URL.createObjectURL(file);
  img.alt = '';
  img.width = PREVIEW;
  img.height = PREVIEW;
  img.loading = 'lazy';
  img.decoding = 'async';
  return img;
}

/** A browser cannot draw DICOM, NIfTI or TIFF: the format's name stands in for the picture. */
function formatBadge(file) {
  const badge = document.createElement('span');
  badge.className = 'format-badge';
  badge.setAttribute('aria-hidden', 'true');
  badge.textContent = /\.nii(\.gz)?$/i.test(file.name) ? 'NIfTI' : /\.tiff?$/i.test(file.name) ? 'TIFF' : 'DICOM';
  return badge;
}

/** After inspecting a file: how many images it holds, under its name in the list. */
export function notePicked(file, text) {
  for (const span of $('picked-list').querySelectorAll('span[data-file]')) {
    if (span.dataset.file !== file.name) continue;
    const note = span.nextElementSibling ?? span.parentElement.appendChild(document.createElement('span'));
    note.className = 'count';
    note.textContent = text;
  }
}

export function currentFiles() {
  const m = mode();
  if (m === 'pair') return [$('image-a').files[0], $('image-b').files[0]].filter(Boolean);
  if (m === 'image') return [...$('image-single').files];
  return [...$('image-set').files, ...[...$('image-folder').files].filter(isImageFile)];
}

export function clearImages() {
  for (const id of ['image-a', 'image-b', 'image-set', 'image-folder', 'image-single']) setFiles($(id), []);
}

/** Each zone lists its files' names; drops and pastes land anywhere, never navigate. */
export function wireInputs(onChange) {
  for (const zone of document.querySelectorAll('.drop')) {
    const input = zone.querySelector('input');
    const name = zone.querySelector('.file-name');
    name.dataset.empty = name.textContent;
    input.addEventListener('change', () => {
      const files = [...input.files];
      name.textContent = files.length ? files.map((f) => f.name).slice(0, 3).join(', ') +
        (files.length > 3 ? ` and ${files.length - 3} more` : '') : name.dataset.empty;
    });
  }
  document.addEventListener('change', (e) => {
    if (e.target.closest?.('#images-section')) {
      showPicked();
      onChange();
    }
  });
  wireDrops(onChange);
  document.addEventListener('paste', (e) => {
    if (e.target.closest?.('input[type=text], input[type=number], textarea')) return;
    const files = [...(e.clipboardData?.files ?? [])];
    if (files.length && place(files)) e.preventDefault();
  });
  $('clear-images').addEventListener('click', clearImages);
}

function wireDrops(onChange) {
  const zoneOf = (e) => e.target.closest?.('.drop');
  document.addEventListener('dragover', (e) => {
    e.preventDefault(); // a drop anywhere is ours: the browser must not open the file instead
    for (const z of document.querySelectorAll('.drop.over')) z.classList.toggle('over', z === zoneOf(e));
    zoneOf(e)?.classList.add('over');
  });
  document.addEventListener('dragleave', (e) => zoneOf(e)?.classList.remove('over'));
  document.addEventListener('drop', async (e) => {
    e.preventDefault();
    const zone = zoneOf(e);
    zone?.classList.remove('over');
    if (zone?.closest('#model-section')) return;
    const files = await droppedFiles(e.dataTransfer);
    const placed = place(files, zone?.querySelector('input'));
    const skipped = files.length - placed;
    onChange(skipped ? `${skipped} dropped file(s) are not images duoclip reads (PNG, JPEG, TIFF, WebP, BMP, ` +
      'DICOM, NIfTI) and were left out' : '');
  });
}

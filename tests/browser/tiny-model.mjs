// The shipped test bundle (www/models/tiny/) as the native CLI must be told to read it: the
// manifest records what the weights file cannot say, and the CLI takes it as flags.

import { readFileSync } from 'node:fs';
import path from 'node:path';

import { WWW } from './harness.mjs';

export const TINY = path.join(WWW, 'models', 'tiny');

export function tinyManifest() {
  return JSON.parse(readFileSync(path.join(TINY, 'manifest.json'), 'utf8'));
}

/** `--model ... --vision-heads ...`: the CLI options that load the bundle's weights as the page does. */
export function tinyCliArgs() {
  const { weights, architecture: arch } = tinyManifest();
  const args = ['--model', path.join(TINY, weights.file),
    '--vision-heads', String(arch.vision_heads), '--act', arch.act,
    '--image-size', String(arch.image_size)];
  if (arch.text_heads != null) args.push('--text-heads', String(arch.text_heads));
  return args;
}

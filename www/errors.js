// DuoclipError, the one error type of the browser API. A module of its own so that duoclip.js
// and model-files.js both throw it without importing each other.

export class DuoclipError extends Error {
  constructor(code, message) {
    super(message);
    this.name = 'DuoclipError';
    this.code = code;
  }
}

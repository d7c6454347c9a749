/**
 * Filesystem checks at the door: every input path is looked at with stat before anything opens it, so
 * a named pipe never blocks a read, a folder where a file belongs (or the reverse) is named as such, and
 * an unwritable output folder is an error, never a hang. Every error names the path, the problem and
 * the fix in plain words (no raw `EISDIR: illegal operation ...` texts).
 */
import {
  accessSync,
  constants,
  lstatSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  statSync,
  unlinkSync,
  writeFileSync,
  type Stats,
} from 'node:fs';
import { dirname, join, resolve } from 'node:path';

/** A filesystem error code (ENOENT, EACCES, ...) of a thrown error, or undefined. */
function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

const REASONS: Record<string, string> = {
  ENOENT: 'it does not exist',
  EACCES: 'permission denied',
  EPERM: 'operation not permitted',
  EROFS: 'the file system is read-only',
  ENOSPC: 'the disk is full',
  EDQUOT: 'the disk quota is exceeded',
  ELOOP: 'a loop of symbolic links',
  ENOTDIR: 'a part of the path is a file, not a folder',
  EISDIR: 'it is a folder',
  ENAMETOOLONG: 'the name is too long',
  EIO: 'an input/output error of the device',
  EMFILE: 'too many open files',
  ENXIO: 'no such device',
};

/** Plain words for a filesystem error (the errno name only as a last resort). */
export function fsReason(err: unknown): string {
  const code = codeOf(err);
  if (code && REASONS[code]) return REASONS[code];
  return code ? `error ${code}` : err instanceof Error ? err.message : String(err);
}

/** What a stat result is, in words ("a folder", "a named pipe (FIFO)", ...). */
export function kindOf(st: Stats): string {
  if (st.isFile()) return 'a regular file';
  if (st.isDirectory()) return 'a folder';
  if (st.isFIFO()) return 'a named pipe (FIFO)';
  if (st.isSocket()) return 'a socket';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  return 'not a regular file';
}

/** stat(path) following links; null when nothing is there; other failures become a clear error. */
function statOrNull(path: string, role: string): Stats | null {
  try {
    return statSync(path, { throwIfNoEntry: false }) ?? null;
  } catch (err) {
    const code = codeOf(err);
    if (code === 'ENOENT') return null;
    const fix =
      code === 'ELOOP'
        ? 'fix or remove the link'
        : code === 'EACCES' || code === 'EPERM'
          ? 'check the permissions of its folders'
          : `check the path of the ${role}`;
    throw new Error(`${path}: cannot look at the ${role} (${fsReason(err)}): ${fix}`);
  }
}

function isLink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/**
 * Checks that `path` is a regular file the process may read (not a folder, FIFO, socket or device; a FIFO
 * is never opened) and returns its size in bytes. `howToGet` is added to a "file not found" error.
 */
export function checkRegularFile(path: string, role: string, howToGet?: string): number {
  const st = statOrNull(path, role);
  if (!st) {
    if (isLink(path))
      throw new Error(`${path}: is a symbolic link to nothing (its target does not exist): fix or remove the link`);
    throw new Error(`${path}: file not found${howToGet ? `. ${howToGet}` : ` (the ${role})`}`);
  }
  if (st.isDirectory())
    throw new Error(
      `${path}: is a folder, but the ${role} must be a file: pass the file itself, not the folder holding it`,
    );
  if (!st.isFile())
    throw new Error(
      `${path}: is ${kindOf(st)}, but the ${role} must be a regular file: copy the data into a file and pass that`,
    );
  try {
    accessSync(path, constants.R_OK);
  } catch (err) {
    throw new Error(
      `${path}: cannot read the ${role} (${fsReason(err)}): give the user running odc read permission (chmod a+r)`,
    );
  }
  return st.size;
}

/** Reads a regular file after checkRegularFile; errors name the file and the problem. */
export function readRegularFile(path: string, role: string, howToGet?: string): Uint8Array {
  checkRegularFile(path, role, howToGet);
  try {
    return new Uint8Array(readFileSync(path));
  } catch (err) {
    throw new Error(`${path}: cannot read the ${role} (${fsReason(err)})`);
  }
}

/** True when something (of any kind) is at path; stat failures other than "not there" throw clearly. */
export function pathExists(path: string, role: string): boolean {
  return statOrNull(path, role) !== null;
}

/**
 * Checks that `path` is a folder the process may list. A missing folder is an error unless
 * `allowMissing` (callers that report the missing files inside it instead); returns whether it exists.
 */
export function checkFolder(
  path: string,
  role: string,
  options: { howToGet?: string; allowMissing?: boolean } = {},
): boolean {
  const st = statOrNull(path, role);
  if (!st) {
    if (options.allowMissing) return false;
    throw new Error(`${path}: ${role} not found${options.howToGet ? `. ${options.howToGet}` : ''}`);
  }
  if (!st.isDirectory())
    throw new Error(
      `${path}: is ${kindOf(st)}, but the ${role} must be a folder: pass the folder that holds the files`,
    );
  return true;
}

/** The names in a folder (checked with checkFolder first); errors name the folder. */
export function listFolder(path: string, role: string): string[] {
  checkFolder(path, role);
  try {
    return readdirSync(path);
  } catch (err) {
    throw new Error(
      `${path}: cannot list the ${role} (${fsReason(err)}): give the user running odc read and execute permission on it`,
    );
  }
}

/**
 * Creates `dir` (and missing parents) if needed and proves it writable by writing and removing a small
 * probe file. Parents are made one level at a time: Node 20's recursive mkdir loops forever under /proc.
 * The probe is synchronous: a timer racing an asynchronous write failed healthy folders whenever the
 * runtime's I/O threads were busy, and a mount that hangs would hang the checkpoint writes anyway.
 */
export function ensureWritableFolder(dir: string, role: string): void {
  const target = resolve(dir);
  const missing: string[] = [];
  for (let p = target; ; p = dirname(p)) {
    const st = statOrNull(p, role);
    if (st) {
      if (!st.isDirectory()) {
        throw new Error(
          `${p}: is ${kindOf(st)}, so the ${role} ${dir} cannot be ${p === target ? 'used' : 'created inside it'}: pick another folder`,
        );
      }
      break;
    }
    missing.unshift(p);
    if (dirname(p) === p) break;
  }
  for (const p of missing) {
    try {
      mkdirSync(p);
    } catch (err) {
      if (codeOf(err) === 'EEXIST' && statOrNull(p, role)?.isDirectory()) continue;
      // mkdir fails with ENOENT where a file system refuses new folders (e.g. /proc)
      const reason = codeOf(err) === 'ENOENT' ? 'this file system does not allow new folders there' : fsReason(err);
      throw new Error(`${dir}: cannot create the ${role} (${p}: ${reason}): pick a folder you can write to`);
    }
  }
  const probe = join(target, `.odc-write-probe-${process.pid}`);
  try {
    writeFileSync(probe, 'odc');
    unlinkSync(probe);
  } catch (err) {
    throw new Error(`${dir}: the ${role} is not writable (${fsReason(err)}): pick a folder you can write to`);
  }
}

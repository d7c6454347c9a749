/**
 * The README's "Settings" section is generated from SETTINGS: this module knows where it sits between
 * two marker comments, so `npm run docs:config` can rewrite it and a test can fail when it is stale.
 */
import { settingsTable } from '../config/settings.ts';

export const BEGIN_MARKER =
  '<!-- settings table: generated from src/config/settings.ts by `npm run docs:config`; do not edit -->';
export const END_MARKER = '<!-- end of settings table -->';

/** The README text with its settings table replaced by the one SETTINGS gives. */
export function withSettingsTable(readme: string): string {
  const begin = readme.indexOf(BEGIN_MARKER);
  const end = readme.indexOf(END_MARKER);
  if (begin < 0 || end < begin)
    throw new Error(`README.md lacks the settings table markers (${BEGIN_MARKER} ... ${END_MARKER})`);
  return `${readme.slice(0, begin + BEGIN_MARKER.length)}\n${settingsTable()}\n${readme.slice(end)}`;
}
